package bench

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/dwellhq/dwell/operators"
)

// TestWebDeterministic: the same config gives the same bytes.
func TestWebDeterministic(t *testing.T) {
	gen := func() []byte {
		g, err := NewWeb(WebConfig{Profiles: 500, Seed: 42, MalformedShare: 0.01, LateShare: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		var all []byte
		for range 5000 {
			r := g.Next(nil)
			all = append(append(append(all, r.Key...), r.Value...), '\n')
		}
		return all
	}
	if !bytes.Equal(gen(), gen()) {
		t.Fatal("two generators with the same config differ")
	}
}

// TestWebRealistic checks the shape of the stream: valid events of the configured size, keys
// matching profiles (or sessions), visits of several events, and roughly the configured shares
// of malformed and ephemeral records.
func TestWebRealistic(t *testing.T) {
	const n = 50_000
	g, err := NewWeb(WebConfig{Profiles: 2000, MalformedShare: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	cfg := new(operators.Config).EnsureDefaults()
	dec := operators.NewDecoder(cfg)
	var ev operators.Event
	bad, eph, size := 0, 0, 0
	keys := map[string]int{}
	for range n {
		r := g.Next(nil)
		size += len(r.Value)
		if err := dec.Decode(&operators.Record{Value: r.Value, Timestamp: r.Timestamp}, &ev); err != nil {
			bad++
			continue
		}
		if !json.Valid(r.Value) {
			t.Fatalf("accepted event is not valid JSON: %s", r.Value)
		}
		want := ev.Profile
		if want == nil {
			want = ev.Session
		}
		if !bytes.Equal(r.Key, want) {
			t.Fatalf("key %q, event's profile/session %q", r.Key, want)
		}
		if ev.Ephemeral {
			eph++
		}
		keys[string(r.Key)]++
	}
	if bad < n/200 || bad > n/50 {
		t.Errorf("%d malformed of %d, want about 1%%", bad, n)
	}
	if eph < n/100 || eph > n/25 {
		t.Errorf("%d ephemeral of %d, want about 2%%", eph, n)
	}
	if avg := size / n; avg < 420 || avg > 560 {
		t.Errorf("average event size %d bytes, want about 450-500", avg)
	}
	if per := float64(n) / float64(len(keys)); per < 3 {
		t.Errorf("%.1f events per key: visits should have several events", per)
	}
}

// TestOperatorsWorkload runs the benchmark workload briefly: the warm state holds every
// profile, and a chunk processes into system events and events without dead letters beyond the
// generator's malformed share.
func TestOperatorsWorkload(t *testing.T) {
	w, err := NewOperators(OperatorsConfig{Web: WebConfig{Profiles: 5000}, Chunk: 20_000, Warmup: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if keys := w.S.Stats().Keys; keys < 5000 {
		t.Fatalf("warm state has %d keys, want at least 5000", keys)
	}
	w.Fill(true)
	for i := range w.Evs {
		w.S.ProcessEvent(&w.Evs[i])
	}
	c := w.Sink.Counts
	if c[operators.KindSystem] == 0 || c[operators.KindEvent] < 10_000 || c[operators.KindLate] != 0 {
		t.Fatalf("outputs by kind %v: want system events, most events through, none late", c)
	}
}

// TestSteadyStateAllocs pins the allocation count of decode + sessionize in steady state (warm
// profiles, visits opening and closing at their natural rate): nothing per event, apart from
// the rare chunk of key states or key bytes.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	// Three hours of event time: open sessions (about 34m each, with long tails) have long
	// reached their steady number, so free lists are in balance.
	w, err := NewOperators(OperatorsConfig{Web: WebConfig{Profiles: 3000, Rate: 50}, Chunk: 30_000, Warmup: 3 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	w.Fill(false)
	i := 0
	perBatch := testing.AllocsPerRun(20, func() {
		for range 1000 {
			w.S.Process(&w.Recs[i])
			i++
		}
	})
	if perEvent := perBatch / 1000; perEvent > 0.01 {
		t.Fatalf("%.4f allocations per event in steady state, want none", perEvent)
	}
}
