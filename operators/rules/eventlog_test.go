package rules

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/dwellhq/dwell/operators"
)

func TestEventLog(t *testing.T) {
	out := &Outcome{State: Errored, Reason: ReasonRuleError, Detail: `rule "b": when: x is a string, not a number`,
		Fired: []string{"a"}, Actions: []ActionRecord{{"a", ActTag}, {"a", ActSchedule}}, Unregistered: true}
	e := &LogEntry{EventID: "e1", Type: "add-to-cart", Key: "p1", Time: 1_767_225_600_000, Topic: "events", Partition: 3,
		Offset: 42, State: out.State, Outcome: out, ConfigVersion: "v7", ProcessingMicros: 12}
	got := string(AppendLogJSON(nil, e))
	want := `{"event_id":"e1","type":"add-to-cart","key":"p1","time":"2026-01-01T00:00:00.000Z","topic":"events",` +
		`"partition":3,"offset":42,"state":"error","rules":["a"],"actions":["a/tag","a/schedule"],"reason":"rule-error",` +
		`"detail":"rule \"b\": when: x is a string, not a number","unregistered":true,"config_version":"v7","processing_us":12}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !json.Valid([]byte(got)) {
		t.Fatal("not JSON")
	}
	late := string(AppendLogJSON(nil, &LogEntry{EventID: "e2", Type: "x", Key: "p", Time: 0, Topic: "t", State: Late}))
	if late != `{"event_id":"e2","type":"x","key":"p","time":"1970-01-01T00:00:00.000Z","topic":"t","partition":0,"offset":0,"state":"late"}` {
		t.Fatal(late)
	}
	for _, c := range []struct {
		level string
		state LogState
		want  bool
	}{
		{"all", Processed, true}, {"errors", Processed, false}, {"errors", Errored, true},
		{"errors", DeadLettered, true}, {"errors", Late, false}, {"none", Errored, false},
	} {
		l, err := ParseLogLevel(c.level)
		if err != nil || l.Logs(c.state) != c.want {
			t.Errorf("%s logs %s: %v, %v", c.level, c.state, l.Logs(c.state), err)
		}
	}
	if _, err := ParseLogLevel("some"); err == nil {
		t.Error("ParseLogLevel(some) did not fail")
	}
	for _, s := range []LogState{Processed, Errored, Ignored, DeadLettered, Late, Transferred} {
		if back, ok := ParseLogState(s.String()); !ok || back != s {
			t.Errorf("ParseLogState(%s) = %v, %v", s, back, ok)
		}
	}
}

// TestEventLogAllocs pins the allocation-free event log: the pipeline writes one record per
// event at level all.
func TestEventLogAllocs(t *testing.T) {
	apply, out, env := typicalApply(t)
	apply()
	e := LogEntry{EventID: env.Event.ID, Type: env.Event.Type, Key: env.Key, Time: env.Event.Time, Topic: "events",
		Partition: 3, Offset: 42, State: out.State, Outcome: out, ConfigVersion: "v7", ProcessingMicros: 12}
	buf := AppendLogJSON(nil, &e)
	if !json.Valid(buf) {
		t.Fatalf("not JSON: %s", buf)
	}
	if n := testing.AllocsPerRun(100, func() { buf = AppendLogJSON(buf[:0], &e) }); n != 0 {
		t.Errorf("AppendLogJSON: %v allocations per record", n)
	}
}

// TestAppendJSONString checks the word-at-a-time escaping against the plain byte loop, for
// every byte value at every offset of a word and across word boundaries.
func TestAppendJSONString(t *testing.T) {
	ref := func(s string) string {
		var b []byte
		for i := 0; i < len(s); {
			c := s[i]
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r':
				b = append(b, `\r`...)
			case c == '\t':
				b = append(b, `\t`...)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			case c < utf8.RuneSelf:
				b = append(b, c)
			default:
				r, size := utf8.DecodeRuneInString(s[i:])
				if r == utf8.RuneError && size == 1 {
					b = append(b, "\ufffd"...)
				} else {
					b = append(b, s[i:i+size]...)
				}
				i += size
				continue
			}
			i++
		}
		return `"` + string(b) + `"`
	}
	check := func(s string) {
		if got, want := string(appendJSONString(nil, s)), ref(s); got != want {
			t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
	base := "abcdefghijklmnopqrstuvwx"
	for c := range 256 {
		for i := range 17 {
			check(base[:i] + string(rune(0)) + base[i:])
			check(base[:i] + string([]byte{byte(c)}) + base[i:])
			check(base[:i] + string([]byte{byte(c), 0x80 | byte(c)&0x3f}) + base[i:])
		}
	}
	for _, s := range []string{"", "é", "日本語のテキスト、長めです", "a\u2028b", "~~~~~~~~\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f", "        !!!!!!!!"} {
		check(s)
	}
}

// TestAppendTime: the event log's time formatting writes what operators.AppendTime writes.
func TestAppendTime(t *testing.T) {
	check := func(ms int64) {
		if got, want := string(appendTime(nil, ms)), string(operators.AppendTime(nil, ms)); got != want {
			t.Fatalf("appendTime(%d) = %s, want %s", ms, got, want)
		}
	}
	for _, ms := range []int64{0, 1, 999, 1000, 86_399_999, 86_400_000, 951_782_400_000, 1_767_225_600_000, 4_107_542_400_000,
		maxFastTime - 1, maxFastTime, maxFastTime + 1, -1, -86_400_001, 1 << 50} {
		check(ms)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// Every day to 2200, then days a random stride apart to year 10000.
	for day := int64(0); day*86_400_000 < maxFastTime+3*86_400_000; {
		check(day*86_400_000 + rng.Int64N(86_400_000))
		if day < 84_000 {
			day++
		} else {
			day += 1 + rng.Int64N(60)
		}
	}
}
