package operators

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// lateStream returns n records of events all more than lateness behind watermark: the
// profiles and sessions of genStream and new ones, profile-less and keyless events, end types
// and ephemeral events, at times from just beyond the allowed lateness to days before it.
func lateStream(rng *rand.Rand, n int, watermark, lateness int64) [][]byte {
	types := []string{"page-view", "click", "logout", "search"}
	out := make([][]byte, 0, n)
	for i := range n {
		t := watermark - lateness - 1
		if rng.IntN(4) > 0 {
			t -= rng.Int64N(3 * 24 * time.Hour.Milliseconds())
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, `{"id":"late%05d","type":%q,"time":%d`, i, types[rng.IntN(len(types))], t)
		if rng.IntN(10) > 0 {
			fmt.Fprintf(&b, `,"profile":"p%d"`, rng.IntN(9)) // p6 to p8 are new
		}
		if rng.IntN(10) > 0 {
			fmt.Fprintf(&b, `,"session":"s%d"`, rng.IntN(12))
		}
		if rng.IntN(5) == 0 {
			fmt.Fprintf(&b, `,"context":{"page":{"url":"/late%d"}}`, rng.IntN(4))
		}
		if rng.IntN(10) == 0 {
			b.WriteString(`,"options":{"ephemeral":true}`)
		}
		b.WriteString("}")
		out = append(out, b.Bytes())
	}
	return out
}

// stateOf is everything a sessionizer keeps: every key's snapshot (its times, visit, sessions
// and counters), its timers as the wheel holds them, and the partition snapshot.
func stateOf(s *Sessionizer) string {
	var b strings.Builder
	names := make([]string, 0, len(s.keys))
	for k := range s.keys {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		snap, _ := s.AppendKeySnapshot(nil, name)
		fmt.Fprintf(&b, "%q %x timers", name, snap)
		k := s.keys[name]
		for i := range k.timers {
			if n := &k.timers[i]; n.Scheduled() {
				fmt.Fprintf(&b, " %d@%d", i, n.Deadline())
			} else {
				b.WriteString(" -")
			}
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "partition %x\n", s.AppendPartitionSnapshot(nil))
	return b.String()
}

// TestBeyondLatenessChangesNothing is the property behind the allowed lateness: after any
// stream, events all further behind the watermark than the allowed lateness are each late
// (beyond-allowed-lateness) and leave the sessionizer exactly as it was - every key's state
// and timers, the partition's, no key changed for the changelog, every counter and gauge but
// Records, Events and Late - so that what follows is output as if they had not come.
func TestBeyondLatenessChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"defaults", Config{}},
		{"lateness=1m", Config{AllowedLateness: time.Minute}},
		// A profile_ttl shorter than the quiet spells: keys are forgotten during the stream, and
		// a late event of theirs must not bring them back.
		{"ttl=50m,lateness=2h", Config{ProfileTTL: 50 * time.Minute, AllowedLateness: 2 * time.Hour}},
	} {
		cfg := tc.cfg
		for seed := range uint64(10) {
			rng := rand.New(rand.NewPCG(seed, 18))
			values := genStream(rng, 300)
			order := make([]int, len(values))
			for i := range order {
				order[i] = i
			}
			cut := 100 + rng.IntN(200)
			want := runStream(t, cfg, values[:cut], order[:cut])

			var out lines
			out.raw = true
			s, err := NewSessionizer(cfg, 0, &out)
			if err != nil {
				t.Fatal(err)
			}
			s.TrackChanges(true)
			for i := range values[:cut] {
				s.Process(&Record{Topic: "in", Offset: int64(i), Value: values[i], Timestamp: NoTimestamp})
			}
			s.DrainChanges(func(Change) {})
			before, stBefore := stateOf(s), s.Stats()
			outBefore := out.b.Len()

			defaults := cfg
			late := lateStream(rng, 200, s.Watermark(), defaults.EnsureDefaults().Lateness().Milliseconds())
			for i, v := range late {
				s.Process(&Record{Topic: "late", Offset: int64(i), Value: v, Timestamp: NoTimestamp})
			}
			lateOut := splitLines(out.b.String()[outBefore:])
			if len(lateOut) != len(late) {
				t.Fatalf("%s seed %d: %d outputs for %d events beyond the allowed lateness", tc.name, seed, len(lateOut), len(late))
			}
			for _, l := range lateOut {
				if !strings.HasPrefix(l, "late: ") || !strings.Contains(l, `"late_reason":"beyond-allowed-lateness"`) {
					t.Fatalf("%s seed %d: an event beyond the allowed lateness gave %s", tc.name, seed, l)
				}
			}
			if after := stateOf(s); after != before {
				t.Fatalf("%s seed %d: state changed by events beyond the allowed lateness:\nbefore:\n%s\nafter:\n%s", tc.name, seed, before, after)
			}
			s.DrainChanges(func(c Change) { t.Fatalf("%s seed %d: key %q reported changed", tc.name, seed, c.Key) })
			stAfter := s.Stats()
			n := uint64(len(late))
			if stAfter.Late != stBefore.Late+n || stAfter.Records != stBefore.Records+n || stAfter.Events != stBefore.Events+n {
				t.Fatalf("%s seed %d: late %d records %d events %d, want each %d more than %d %d %d", tc.name, seed,
					stAfter.Late, stAfter.Records, stAfter.Events, n, stBefore.Late, stBefore.Records, stBefore.Events)
			}
			if got := stAfter.LateByReason[LateBeyondLateness] - stBefore.LateByReason[LateBeyondLateness]; got != n {
				t.Fatalf("%s seed %d: %d late for %s, want %d", tc.name, seed, got, LateBeyondLateness, n)
			}
			stAfter.Late, stAfter.Records, stAfter.Events = stBefore.Late, stBefore.Records, stBefore.Events
			stAfter.LateByReason = stBefore.LateByReason
			if fmt.Sprint(stAfter) != fmt.Sprint(stBefore) {
				t.Fatalf("%s seed %d: stats changed:\nbefore %+v\nafter  %+v", tc.name, seed, stBefore, stAfter)
			}

			// What follows is the output of the stream without them.
			s.Flush()
			var rest []string
			for _, l := range splitLines(out.b.String()) {
				if !strings.HasPrefix(l, "late: ") || !strings.Contains(l, `"late_reason":"beyond-allowed-lateness"`) {
					rest = append(rest, l)
				}
			}
			if !slices.Equal(rest, want) {
				t.Fatalf("%s seed %d: output differs from the run without the late events (%d lines, want %d)", tc.name, seed, len(rest), len(want))
			}
		}
	}
}

// TestAllowedLatenessConfig: zero means the visit gap, and follows a visit gap set after the
// defaults; negative is refused.
func TestAllowedLatenessConfig(t *testing.T) {
	cfg := Config{}
	cfg.EnsureDefaults()
	if cfg.AllowedLateness != 0 || cfg.Lateness() != 30*time.Minute {
		t.Fatalf("default allowed lateness %s (in force %s), want 0 (the visit gap, 30m)", cfg.AllowedLateness, cfg.Lateness())
	}
	cfg.VisitGap = time.Hour
	if cfg.Lateness() != time.Hour {
		t.Fatalf("allowed lateness in force %s after visit_gap 1h, want 1h", cfg.Lateness())
	}
	cfg.AllowedLateness = 5 * time.Minute
	if err := cfg.Validate(); err != nil || cfg.Lateness() != 5*time.Minute {
		t.Fatalf("allowed lateness 5m: %v, in force %s", err, cfg.Lateness())
	}
	for _, d := range []time.Duration{-time.Millisecond, -time.Hour, time.Millisecond + 1} {
		cfg.AllowedLateness = d
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "allowed_lateness") {
			t.Errorf("allowed lateness %s: %v, want an error naming allowed_lateness", d, err)
		}
	}
}
