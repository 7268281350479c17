package operators

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// collect keeps every output as its JSON line, dead letters apart.
type collect struct {
	lines []string
	dead  []Output
}

func (c *collect) Emit(o *Output) {
	if o.Kind == KindDead {
		c.dead = append(c.dead, Output{Kind: o.Kind, Reason: o.Reason, Detail: o.Detail, Record: &Record{Offset: o.Record.Offset, Value: append([]byte(nil), o.Record.Value...)}})
		return
	}
	c.lines = append(c.lines, fmt.Sprintf("%s: %s", o.Kind, AppendJSON(nil, o)))
}

// guardStream is an ordinary stream: 12 profiles over five hours, with quiet spells so that
// visits end mid-stream, as (time, record value) pairs in arrival order.
func guardStream() []string {
	var vals []string
	for i := range 300 {
		t := base.Add(time.Duration(i) * time.Minute)
		if i%100 >= 60 {
			t = t.Add(40 * time.Minute) // a quiet spell: visits end
		}
		p := i * 7 % 12
		vals = append(vals, fmt.Sprintf(`{"type":"page-view","id":"e%d","profile":"p%d","session":"s%d-%d","time":%d}`,
			i, p, p, i/100, t.UnixMilli()))
	}
	return vals
}

// TestGuardAbsurdEventsChangeNothing: a stream with events at absurd times mixed in gives, apart
// from their dead letters (time-too-far, original bytes), exactly the output of the stream
// without them: no visit ends early and no profile is created twice.
func TestGuardAbsurdEventsChangeNothing(t *testing.T) {
	absurd := []string{
		`{"type":"page-view","id":"x1","profile":"p3","session":"s3-0","time":"9999-12-31T23:59:59Z"}`,
		`{"type":"page-view","id":"x2","profile":"p5","time":"5000-06-01T00:00:00Z"}`,
		`{"type":"page-view","id":"x3","profile":"p7","time":253402300799999}`,
		`{"type":"click","id":"x4","session":"lonely","time":"2030-01-01T00:00:00+01:00"}`,
		`{"type":"page-view","id":"x5","profile":"p0","time":"2026-01-03T00:00:00Z"}`, // 2 days on
		`{"type":"page-view","id":"x6","time":"9000-01-01T00:00:00Z"}`,                // pass-through
	}
	run := func(withAbsurd bool) *collect {
		var c collect
		s, err := NewSessionizer(Config{}, 0, &c)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range guardStream() {
			if withAbsurd && i > 0 && i%40 == 0 && i/40 <= len(absurd) {
				a := absurd[i/40-1]
				s.Process(&Record{Topic: "in", Offset: int64(1000 + i), Value: []byte(a), Timestamp: NoTimestamp})
			}
			s.Process(&Record{Topic: "in", Offset: int64(i), Value: []byte(v), Timestamp: NoTimestamp})
		}
		s.Flush()
		st := s.Stats()
		if withAbsurd && (st.Dead != uint64(len(absurd)) || st.DeadByReason[ReasonTimeTooFar] != uint64(len(absurd))) {
			t.Errorf("stats: %d dead, %d time-too-far; want %d of each", st.Dead, st.DeadByReason[ReasonTimeTooFar], len(absurd))
		}
		return &c
	}
	want, got := run(false), run(true)
	if len(want.dead) != 0 {
		t.Fatalf("the ordinary stream has dead letters: %+v", want.dead)
	}
	if len(got.dead) != len(absurd) {
		t.Fatalf("%d dead letters, want %d: %+v", len(got.dead), len(absurd), got.dead)
	}
	for i, d := range got.dead {
		if d.Reason != ReasonTimeTooFar || string(d.Record.Value) != absurd[i] || !strings.Contains(d.Detail, "event time ") {
			t.Errorf("dead letter %d: %s %q %q; want time-too-far with the original bytes %q", i, d.Reason, d.Detail, d.Record.Value, absurd[i])
		}
	}
	if strings.Join(got.lines, "\n") != strings.Join(want.lines, "\n") {
		for i := range min(len(got.lines), len(want.lines)) {
			if got.lines[i] != want.lines[i] {
				t.Fatalf("output %d differs:\n got %s\nwant %s", i, got.lines[i], want.lines[i])
			}
		}
		t.Fatalf("%d outputs, want %d", len(got.lines), len(want.lines))
	}
	created := 0
	for _, l := range got.lines {
		if strings.Contains(l, `"type":"profile-created"`) {
			created++
		}
	}
	if created != 12 {
		t.Errorf("%d profile-created, want 12 (one per profile)", created)
	}
}

// TestGuardFirstEventHasNoWatermark: the jump check needs a watermark, so the first event of a
// partition is taken whatever its time (below the year bound); live, the wall clock bounds it.
func TestGuardFirstEventHasNoWatermark(t *testing.T) {
	var c collect
	s, _ := NewSessionizer(Config{}, 0, &c)
	s.Process(&Record{Value: []byte(`{"type":"a","profile":"p","time":"5000-01-01T00:00:00Z"}`), Timestamp: NoTimestamp})
	if len(c.dead) != 0 || s.Watermark() < time.Date(4999, 12, 31, 0, 0, 0, 0, time.UTC).UnixMilli() {
		t.Fatalf("first event: dead letters %+v, watermark %d", c.dead, s.Watermark())
	}
	c = collect{}
	s, _ = NewSessionizer(Config{}, 0, &c)
	s.SetWallClock(base)
	s.Process(&Record{Value: []byte(`{"type":"a","profile":"p","time":"5000-01-01T00:00:00Z"}`), Timestamp: NoTimestamp})
	if len(c.dead) != 1 || !strings.Contains(c.dead[0].Detail, "ahead of the wall clock 2026-01-01T00:00:00.000Z; the limit is --max-future-skew 5m") {
		t.Fatalf("first event after SetWallClock: dead letters %+v", c.dead)
	}
}

// TestGuardWallClockAndRecordTimestamp: the wall-clock bound comes on top of the skew rule,
// which still replaces an event time too far ahead of the record timestamp by it.
func TestGuardWallClockAndRecordTimestamp(t *testing.T) {
	var c collect
	s, _ := NewSessionizer(Config{}, 0, &c)
	s.SetWallClock(base)
	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
	// Event time 1h ahead of a record timestamp that is itself 1h ahead of the wall clock
	// (what a broker accepts by default): adjusted to the record timestamp, then too far.
	s.Process(&Record{Offset: 1, Value: []byte(fmt.Sprintf(`{"type":"a","profile":"p","time":%d}`, ms(2*time.Hour))), Timestamp: ms(time.Hour)})
	// Adjusted to a record timestamp within the skew of the wall clock: taken.
	s.Process(&Record{Offset: 2, Value: []byte(fmt.Sprintf(`{"type":"a","profile":"p","time":%d}`, ms(2*time.Hour))), Timestamp: ms(time.Minute)})
	s.Flush()
	if len(c.dead) != 1 || c.dead[0].Record.Offset != 1 || !strings.Contains(c.dead[0].Detail, "is 1h ahead of the wall clock") {
		t.Fatalf("dead letters %+v, want offset 1 an hour ahead of the wall clock", c.dead)
	}
	if !strings.Contains(strings.Join(c.lines, "\n"), `"time_adjusted":true`) {
		t.Fatalf("the second event was not adjusted:\n%s", strings.Join(c.lines, "\n"))
	}
}

func TestMaxTimeJumpValidate(t *testing.T) {
	for _, tc := range []struct {
		d  time.Duration
		ok bool
	}{
		{24 * time.Hour, true}, {time.Millisecond, true}, {-1, true}, {-time.Hour, true},
		{100 * 365 * 24 * time.Hour, true}, {100*365*24*time.Hour + time.Millisecond, false},
		{time.Microsecond, false},
	} {
		cfg := (&Config{}).EnsureDefaults()
		cfg.MaxTimeJump = tc.d
		if err := cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("MaxTimeJump %s: %v, want ok=%v", tc.d, err, tc.ok)
		}
	}
	cfg := (&Config{}).EnsureDefaults()
	if cfg.MaxTimeJump != 24*time.Hour {
		t.Errorf("default MaxTimeJump %s, want 24h", cfg.MaxTimeJump)
	}
	cfg.MaxTimeJump = 0 // set explicitly after the defaults: neither a limit nor "off"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "max_time_jump") {
		t.Errorf("MaxTimeJump 0 after defaults: %v, want an error", err)
	}
}

var fiveDigitYear = regexp.MustCompile(`"[0-9]{5,}-[0-9]{2}-[0-9]{2}T`)

// TestYearBound: for any durations, the latest accepted event time plus the longest of them
// formats with a four-digit year; an event at the latest accepted time is taken and every output
// it leads to, up to the shutdown-flush ends, has four-digit years; one millisecond later is
// dead-lettered.
func TestYearBound(t *testing.T) {
	if got := string(AppendTime(nil, MaxTime)); got != "9999-12-31T23:59:59.999Z" {
		t.Fatalf("AppendTime(MaxTime) = %s", got)
	}
	const century = 100 * 365 * 24 * time.Hour
	for _, cfg := range []Config{
		{},
		{VisitGap: century},
		{SessionTimeout: century},
		{MaxVisitDuration: century, VisitGap: century},
		{MaxSessionDuration: century, SessionTimeout: century},
		{VisitGap: time.Millisecond, SessionTimeout: time.Millisecond, MaxVisitDuration: time.Millisecond, MaxSessionDuration: time.Millisecond},
	} {
		cfg.EnsureDefaults()
		latest := LatestEventTime(cfg)
		longest := max(cfg.VisitGap, cfg.SessionTimeout, cfg.MaxVisitDuration, cfg.MaxSessionDuration)
		if got := string(AppendTime(nil, latest+longest.Milliseconds())); got != "9999-12-31T23:59:59.999Z" {
			t.Errorf("%+v: latest accepted %d plus %s formats as %s", cfg, latest, longest, got)
		}
		var c collect
		s, err := NewSessionizer(cfg, 0, &c)
		if err != nil {
			t.Fatal(err)
		}
		s.Process(&Record{Offset: 0, Value: []byte(fmt.Sprintf(`{"type":"a","profile":"p","session":"s","time":%d}`, latest)), Timestamp: NoTimestamp})
		s.Process(&Record{Offset: 1, Value: []byte(fmt.Sprintf(`{"type":"a","profile":"q","time":%d}`, latest+1)), Timestamp: NoTimestamp})
		s.Flush()
		if len(c.dead) != 1 || c.dead[0].Record.Offset != 1 || c.dead[0].Reason != ReasonTimeTooFar {
			t.Errorf("%+v: dead letters %+v, want the second event only", cfg, c.dead)
		}
		if len(c.lines) != 6 {
			t.Errorf("%+v: %d outputs, want 6:\n%s", cfg, len(c.lines), strings.Join(c.lines, "\n"))
		}
		for _, l := range c.lines {
			js := l[strings.Index(l, "{"):]
			if !json.Valid([]byte(js)) || fiveDigitYear.MatchString(js) {
				t.Errorf("%+v: output %s", cfg, l)
			}
		}
	}
}

func TestFmtDurations(t *testing.T) {
	const h = 3600_000
	for ms, want := range map[int64]string{
		24 * h: "24h", 5 * 60_000: "5m", 90 * 60_000: "1h30m", 1500: "1.5s", 30_000: "30s", 3600_010: "1h0m0.01s",
	} {
		if got := fmtFlagDur(ms); got != want {
			t.Errorf("fmtFlagDur(%d) = %s, want %s", ms, got, want)
		}
	}
	for ms, want := range map[int64]string{
		47 * h: "47h", 50 * h: "2d2h", 72 * h: "3d", 3 * 365 * 24 * h: "2y",
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).UnixMilli() - base.UnixMilli(): "7973y",
	} {
		if got := fmtAhead(ms); got != want {
			t.Errorf("fmtAhead(%d) = %s, want %s", ms, got, want)
		}
	}
}

// TestGuardJumpUnderSkew: with a jump limit under the skew, live, the jump is measured from the
// wall clock when it is later than the watermark, and the detail says so.
func TestGuardJumpUnderSkew(t *testing.T) {
	var c collect
	s, _ := NewSessionizer(Config{MaxTimeJump: time.Minute}, 0, &c)
	s.SetWallClock(base)
	s.Process(&Record{Value: []byte(fmt.Sprintf(`{"type":"a","profile":"p","time":%d}`, base.Add(3*time.Minute).UnixMilli())), Timestamp: NoTimestamp})
	if len(c.dead) != 1 || c.dead[0].Detail != "event time 2026-01-01T00:03:00.000Z is 3m ahead of the wall clock 2026-01-01T00:00:00.000Z; the limit is --max-time-jump 1m" {
		t.Fatalf("dead letters %+v", c.dead)
	}
}
