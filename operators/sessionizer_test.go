package operators

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// base is time zero of the scripts: t=31m means 2026-01-01T00:31:00Z.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// lines collects outputs as text, one per line.
type lines struct {
	b   strings.Builder
	raw bool
}

var hexID = regexp.MustCompile(`"([0-9a-f]{8})[0-9a-f]{24}"`)

func (l *lines) Emit(o *Output) {
	js := string(AppendJSON(nil, o))
	if !l.raw {
		js = hexID.ReplaceAllString(js, `"$1"`)
	}
	fmt.Fprintf(&l.b, "%s: %s\n", o.Kind, js)
}

func parseRel(t *testing.T, s string) int64 {
	t.Helper()
	if s == "0" {
		return base.UnixMilli()
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("bad time %q: %v", s, err)
	}
	return base.Add(d).UnixMilli()
}

// TestScripts runs the datadriven scripts in testdata/. Commands:
//
//	config [visit_gap=D] [session_timeout=D] [max_visit=D] [max_session=D] [ttl=D] [ooo=D]
//	       [idle=D] [skew=D] [jump=D] [lateness=D] [end=a,b] [disable=t1,t2] [max_types=N] [max_sessions=N]
//	event [p=PROFILE] [s=SESSION] [t=REL] [type=T] [id=ID] [url=U] [src=S] [eph] [ts=REL] [offset=N]
//	record [ts=REL] [offset=N]   (input: one raw record value per line)
//	tick wall=REL                (idle advancement with the wall clock at REL)
//	flush
//	stats
//
// In type= and end=, '_' stands for a space. Times are relative to 2026-01-01T00:00:00Z, as Go durations (31m, 1h2s, -3s).
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/sessionizer", func(t *testing.T, path string) {
		var out lines
		var s *Sessionizer
		offset := int64(0)
		newS := func(cfg Config) {
			var err error
			s, err = NewSessionizer(cfg, 0, &out)
			if err != nil {
				t.Fatal(err)
			}
		}
		newS(Config{})
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			out.b.Reset()
			args := map[string]string{}
			for _, a := range d.CmdArgs {
				args[a.Key] = strings.Join(a.Vals, ",")
			}
			dur := func(k string) time.Duration {
				if v, ok := args[k]; ok {
					dd, err := time.ParseDuration(v)
					if err != nil {
						t.Fatalf("%s: %v", k, err)
					}
					return dd
				}
				return 0
			}
			switch d.Cmd {
			case "config":
				cfg := Config{
					VisitGap: dur("visit_gap"), SessionTimeout: dur("session_timeout"),
					MaxVisitDuration: dur("max_visit"), MaxSessionDuration: dur("max_session"),
					ProfileTTL: dur("ttl"), MaxOutOfOrderness: dur("ooo"), IdleTimeout: dur("idle"),
					MaxFutureSkew: dur("skew"), MaxTimeJump: dur("jump"), AllowedLateness: dur("lateness"),
				}
				if _, ok := args["ooo"]; ok && cfg.MaxOutOfOrderness == 0 {
					cfg.MaxOutOfOrderness = time.Nanosecond * 0
				}
				if v, ok := args["end"]; ok {
					cfg.SessionEndTypes = strings.Split(strings.ReplaceAll(v, "_", " "), ",")
				}
				if v, ok := args["disable"]; ok {
					for _, n := range strings.Split(v, ",") {
						st, ok := ParseSystemType(n)
						if !ok {
							t.Fatalf("unknown system type %q", n)
						}
						cfg.Disabled = append(cfg.Disabled, st)
					}
				}
				if v, ok := args["max_types"]; ok {
					cfg.MaxTypeCounts, _ = strconv.Atoi(v)
				}
				if v, ok := args["max_sessions"]; ok {
					cfg.MaxOpenSessions, _ = strconv.Atoi(v)
				}
				out.raw = d.HasArg("raw")
				newS(cfg)
				if _, ok := args["ooo"]; ok && dur("ooo") == 0 {
					s.ooo = 0
				}
				offset = 0
				return ""
			case "event":
				var js strings.Builder
				js.WriteString(`{`)
				typ := "page-view"
				if v, ok := args["type"]; ok {
					typ = strings.ReplaceAll(v, "_", " ") // type=Sign_Out is "Sign Out"
				}
				fmt.Fprintf(&js, `"type":%q`, typ)
				if v, ok := args["id"]; ok {
					fmt.Fprintf(&js, `,"id":%q`, v)
				}
				if v, ok := args["t"]; ok {
					fmt.Fprintf(&js, `,"time":%d`, parseRel(t, v))
				}
				if v, ok := args["p"]; ok {
					fmt.Fprintf(&js, `,"profile":%q`, v)
				}
				if v, ok := args["s"]; ok {
					fmt.Fprintf(&js, `,"session":{"id":%q}`, v)
				}
				if v, ok := args["src"]; ok {
					fmt.Fprintf(&js, `,"source":%q`, v)
				}
				if v, ok := args["url"]; ok {
					fmt.Fprintf(&js, `,"context":{"page":{"url":%q}}`, v)
				}
				if d.HasArg("eph") {
					js.WriteString(`,"options":{"ephemeral":true}`)
				}
				js.WriteString(`}`)
				rec := &Record{Topic: "in", Offset: offset, Value: []byte(js.String()), Timestamp: NoTimestamp}
				if v, ok := args["ts"]; ok {
					rec.Timestamp = parseRel(t, v)
				}
				if v, ok := args["offset"]; ok {
					offset, _ = strconv.ParseInt(v, 10, 64)
					rec.Offset = offset
				}
				offset++
				s.Process(rec)
			case "record":
				for _, line := range strings.Split(d.Input, "\n") {
					rec := &Record{Topic: "in", Offset: offset, Value: []byte(line), Timestamp: NoTimestamp}
					if v, ok := args["ts"]; ok {
						rec.Timestamp = parseRel(t, v)
					}
					offset++
					s.Process(rec)
				}
			case "tick":
				s.Tick(time.UnixMilli(parseRel(t, args["wall"])))
			case "flush":
				s.Flush()
			case "stats":
				st := s.Stats()
				fmt.Fprintf(&out.b, "records=%d events=%d late=%d dead=%d pass-through=%d ephemeral=%d\n",
					st.Records, st.Events, st.Late, st.Dead, st.PassThrough, st.Ephemeral)
				for _, ty := range SystemTypes() {
					fmt.Fprintf(&out.b, "%s=%d ", ty, st.System[ty])
				}
				fmt.Fprintf(&out.b, "\nopen-visits=%d open-sessions=%d keys=%d buffered=%d timers=%d watermark=%s\n",
					st.OpenVisits, st.OpenSessions, st.Keys, st.Buffered, st.Timers, fmtWM(st.Watermark))
				for _, r := range DeadReasons() {
					if n := st.DeadByReason[r]; n > 0 {
						fmt.Fprintf(&out.b, "dead[%s]=%d\n", r, n)
					}
				}
			default:
				t.Fatalf("unknown command %q", d.Cmd)
			}
			if out.b.Len() == 0 {
				return "(none)\n"
			}
			return out.b.String()
		})
	})
}

func fmtWM(w int64) string {
	switch w {
	case math.MinInt64:
		return "-inf"
	case math.MaxInt64:
		return "+inf"
	}
	return string(AppendTime(nil, w))
}
