package operators

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzSeeds are added in code; testdata/fuzz/FuzzDecode holds more, one per field and reason.
var fuzzSeeds = []string{
	`{"id":"e1","type":"Page View","time":"2026-01-01T00:00:00.123+01:00","profile":"p1","session":{"id":"s1","n":[1]},` +
		`"source":"web","properties":{"a":[1,2.5e-3,null]},"context":{"page":{"url":"https://e.com/"},"device":{"type":"mobile"}},` +
		`"traits":{"plan":"pro"},"tags":["a"],"options":{"ephemeral":true}}`,
	`{"type":"click","time":1767225600123.9,"id":"a\nb\u00e9\ud83d\ude00\ud800"}`,
	`{"type":"a","type":"b","context":{"device":"d"},"context":null,"time":5,"time":null}`,
	`{"type":42,}`,
	`{"type":"page-view","profile":"p1","time":`,
	"{\"type\":\"a\",\"profile\":\"p\xff1\"}",
	`[1,2,3]`,
	``,
	`{"type":"a","profile":"p","time":"9999-12-31T23:59:59.999Z"}`,
	`{"type":"a","profile":"p","time":"10000-01-01T00:00:00Z"}`,
	`{"type":"a","profile":"p","time":"0000-01-01T00:00:00Z"}`,
	`{"type":"a","profile":"p","time":253402300800000}`,
}

// fuzzDecoders are a decoder with the default limits and one with small ones, so that too-large
// and too-deep are in easy reach.
func fuzzDecoders() [2]*Decoder {
	return [2]*Decoder{
		testDecoder(),
		NewDecoder((&Config{MaxEventBytes: 256, MaxDepth: 4, MaxIDBytes: 8}).EnsureDefaults()),
	}
}

// FuzzDecode: Decode never panics; it rejects whatever json.Valid rejects, and for a syntax
// reason; an accepted event has valid UTF-8 byte fields and valid JSON raw fields, re-encodes as
// valid JSON, and says what encoding/json says (checkDecode has the details).
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	decs := fuzzDecoders()
	f.Fuzz(func(t *testing.T, b []byte) {
		for i, d := range decs {
			for _, ts := range []int64{ts0, NoTimestamp} {
				var ev Event
				err := d.Decode(&Record{Topic: "in", Value: b, Timestamp: ts}, &ev)
				if !json.Valid(b) && (err == nil || !isSyntaxReason(err.Reason)) {
					t.Fatalf("decoder %d: Decode(%q) = %v, but json.Valid is false", i, b, err)
				}
				if err == nil {
					checkEventInvariants(t, string(b), &ev) // UTF-8, raw JSON, AppendJSON output valid
				}
				// The full comparison with encoding/json.
				checkDecode(t, d, b, ts)
			}
		}
	})
}

// strictRFC3339 matches the timestamps that both time.Parse(time.RFC3339Nano) and ParseTime are
// meant to read; its groups are the zone's hours and minutes.
var strictRFC3339 = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-](\d{2}):(\d{2}))$`)

// FuzzParseTime: an accepted timestamp is in range and round-trips through AppendTime; ParseTime
// agrees with its specification refParseTime and, wherever time.Parse(time.RFC3339Nano) reads
// the input, with time.Parse.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-01-01T00:00:00Z", "2024-02-29 23:59:59,5-0530", "2100-02-29T00:00:00Z", "2026-01-01T1:00:00Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, ok := ParseTime([]byte(s))
		if ref, refOK := refParseTime(s); ok != refOK || ok && ms != ref {
			t.Fatalf("ParseTime(%q) = %d, %v; refParseTime says %d, %v", s, ms, ok, ref, refOK)
		}
		if ok {
			if ms < 0 || ms > maxTime {
				t.Fatalf("ParseTime(%q) = %d: out of range", s, ms)
			}
			back := AppendTime(nil, ms)
			if ms2, ok2 := ParseTime(back); !ok2 || ms2 != ms {
				t.Fatalf("ParseTime(%q) = %d, AppendTime = %q, which parses as %d, %v", s, ms, back, ms2, ok2)
			}
			if want := time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z"); string(back) != want {
				t.Fatalf("AppendTime(%d) = %q, want %q", ms, back, want)
			}
		}
		tp, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return
		}
		um := tp.UnixMilli()
		if ok && um != ms {
			t.Fatalf("ParseTime(%q) = %d, time.Parse says %d", s, ms, um)
		}
		// time.Parse also reads a one-digit hour and zone offsets of +24:00 or minute 60,
		// which RFC 3339 does not allow; apart from those, and times out of range, ParseTime
		// must read what time.Parse reads.
		if m := strictRFC3339.FindStringSubmatch(s); !ok && m != nil && m[1] <= "23" && m[2] <= "59" &&
			um >= 0 && um <= maxTime {
			t.Fatalf("ParseTime(%q) rejects, time.Parse says %d", s, um)
		}
	})
}

// TestFuzzDecodeCorpus checks that the seed corpus in testdata/fuzz/FuzzDecode reaches every
// dead-letter reason and acceptance, so that fuzzing starts from every path.
func TestFuzzDecodeCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzDecode/*")
	if err != nil || len(files) < 15 {
		t.Fatalf("%d seed files, %v", len(files), err)
	}
	seen := map[Reason]bool{}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
			t.Fatalf("%s: not a corpus file for FuzzDecode", name)
		}
		v, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, d := range fuzzDecoders() {
			for _, ts := range []int64{ts0, NoTimestamp} {
				seen[checkDecode(t, d, []byte(v), ts)] = true
			}
		}
	}
	for _, r := range append(DecodeReasons(), "") {
		if !seen[r] {
			t.Errorf("no seed gives %q", r)
		}
	}
}

// FuzzTimeGuard: whatever one record between two ordinary events says, and whatever its record
// timestamp and the wall clock, the watermark moves at most MaxTimeJump past where the ordinary
// events put it, and never more than MaxFutureSkew past a known wall clock; every output up to
// the shutdown-flush ends is valid JSON with four-digit years; a time-too-far dead letter is an
// event that decodes.
func FuzzTimeGuard(f *testing.F) {
	for _, s := range []string{
		`{"type":"a","profile":"p","time":"9999-12-31T23:59:59Z"}`,
		`{"type":"a","profile":"p","time":"9999-12-31T11:59:59.999Z"}`,
		`{"type":"a","profile":"q","session":"s","time":"5000-01-01T00:00:00Z"}`,
		`{"type":"a","time":253402300799999}`,
		`{"type":"a","profile":"p","time":"2026-01-01T23:59:00Z"}`,
		`{"type":"a","profile":"p"}`,
	} {
		f.Add([]byte(s), int64(NoTimestamp), int64(0), false)
		f.Add([]byte(s), ts0+3600_000, int64(60_000), true)
		f.Add([]byte(s), int64(253402300799999), int64(-3600_000), true)
	}
	f.Fuzz(func(t *testing.T, value []byte, recTS, wallOffset int64, live bool) {
		var out fuzzOutputs
		cfg := (&Config{}).EnsureDefaults()
		s, err := NewSessionizer(*cfg, 0, &out)
		if err != nil {
			t.Fatal(err)
		}
		wall := ts0 + wallOffset%(48*3600_000)
		if live {
			s.SetWallClock(time.UnixMilli(wall))
		}
		ordinary := func(off int64, ms int64) {
			s.Process(&Record{Topic: "in", Offset: off, Value: []byte(`{"type":"a","profile":"p","session":"s","time":` + strconv.FormatInt(ms, 10) + `}`), Timestamp: NoTimestamp})
		}
		ordinary(0, ts0-60_000)
		before := s.Watermark()
		s.Process(&Record{Topic: "in", Offset: 1, Value: value, Timestamp: recTS})
		if w := s.Watermark(); w > before && w-before > cfg.MaxTimeJump.Milliseconds() && (!live || w > wall+skewMS) {
			t.Fatalf("watermark moved from %d to %d", before, w)
		}
		if w := s.Watermark(); live && w > max(before, wall+skewMS) {
			t.Fatalf("watermark %d is past the wall clock %d plus the skew", w, wall)
		}
		ordinary(2, ts0)
		s.Flush()
		for _, o := range out.lines {
			if !json.Valid([]byte(o)) || fiveDigitYear.MatchString(o) {
				t.Fatalf("output %s", o)
			}
		}
		if out.tooFar && testDecoder().Decode(&Record{Value: value, Timestamp: recTS}, new(Event)) != nil {
			t.Fatalf("time-too-far for %q, which does not decode", value)
		}
	})
}

type fuzzOutputs struct {
	lines  []string
	tooFar bool
}

func (f *fuzzOutputs) Emit(o *Output) {
	if o.Kind == KindDead {
		f.tooFar = f.tooFar || o.Reason == ReasonTimeTooFar && o.Record.Offset == 1 // the fuzzed record
		return
	}
	f.lines = append(f.lines, string(AppendJSON(nil, o)))
}

// tracardiBatch is a /track payload as Tracardi's JavaScript tracker sends it.
const tracardiBatch = `{"source":{"id":"3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"},"session":{"id":"3b3e1a72"},` +
	`"profile":{"id":"a0b1c2d3"},"context":{"browser":{"local":{"browser":{"name":"Netscape"}}},` +
	`"page":{"url":"https://shop.example.com/cart","title":"Cart"}},"properties":{},` +
	`"events":[{"type":"page-view","properties":{},"options":{}},{"type":"add-to-cart","properties":{"sku":"SKU-42"}},` +
	`{"properties":{}},{"type":"purchase","id":"o7","time":"2026-01-01T00:00:01Z"},7],"options":{}}`

// FuzzDecodeBatch: whatever a record in the batch shape holds, each element either fails
// alone with a reason and its index, or becomes an event whose value (ev.Raw) is
// self-contained: decoded again on its own, as the reorder buffer's restore does, it is the
// same event. Elements are deterministic.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{tracardiBatch, `{"profile":"p","events":[]}`, `{"events":[{"type":"a","events":[1]}]}`,
		`{"time":5,"session":"s","events":[{"type":"x"},{"type":"y","time":"2026-01-01T00:00:00Z"}]}`, `{"events":[{}, null, "x"]}`} {
		f.Add([]byte(s))
	}
	decs := fuzzDecoders()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, d := range decs {
			for _, ts := range []int64{ts0, NoTimestamp} {
				checkDecode(t, d, b, ts) // checkBatch for batches
			}
		}
	})
}
