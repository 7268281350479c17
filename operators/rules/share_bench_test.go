package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dwellhq/dwell/operators"
)

// shareRecords generates n web-tracking records for 2,000 profiles, 50 ms of event time apart:
// page views, searches, add-to-carts, purchases and logouts, with properties.
func shareRecords(n int) []operators.Record {
	recs := make([]operators.Record, n)
	t0 := int64(1_767_225_600_000)
	for i := range recs {
		p := (i * 7919) % 2000
		var typ, props string
		switch r := (i * 31) % 100; {
		case r < 60:
			typ, props = "page-view", fmt.Sprintf(`{"title": "Product %d", "referrer": "https://search.example.com/?q=shoes"}`, i%500)
		case r < 75:
			typ, props = "search", fmt.Sprintf(`{"query": "running shoes %d", "results": %d}`, i%50, i%40)
		case r < 90:
			typ, props = "add-to-cart", fmt.Sprintf(`{"sku": "sku-%d", "qty": 1, "total": %d.5, "currency": "EUR"}`, i%300, i%120)
		case r < 95:
			typ, props = "purchase", fmt.Sprintf(`{"order": "o-%d", "total": %d.9, "items": [{"sku": "sku-%d", "qty": 1}]}`, i, 20+i%200, i%300)
		default:
			typ, props = "logout", `{}`
		}
		v := fmt.Sprintf(`{"id": "e-%d", "type": %q, "time": %d, "profile": "prof-%04d", "session": "sess-%04d-%d", "source": "web",`+
			` "context": {"page": {"url": "https://shop.example.com/p/%d"}, "device": "mobile"}, "properties": %s}`,
			i, typ, t0+int64(i)*50, p, p, (i/20000)%3, i%500, props)
		recs[i] = operators.Record{Topic: "events", Offset: int64(i), Key: []byte(fmt.Sprintf("prof-%04d", p)),
			Value: []byte(v), Timestamp: t0 + int64(i)*50}
	}
	return recs
}

// shareRules returns 50 rules: 3 for each of the 5 input types and 5 system-event types, with
// conditions and state actions (some emit or notify), and 20 on types that never occur.
func shareRules() string {
	var b strings.Builder
	b.WriteString("rules:\n")
	types := []string{"page-view", "search", "add-to-cart", "purchase", "logout",
		"profile-created", "session-opened", "visit-started", "visit-ended", "session-closed"}
	conds := []string{
		`event.source == "web" && profile.counters.seen < 1000000`,
		`event.properties.total > 50 || event.properties.results == 0`,
		`"vip" in profile.tags || profile.traits.plan == "pro" || visit.event_count > 20`,
	}
	for _, typ := range types {
		for j, c := range conds {
			fmt.Fprintf(&b, "  - name: %s-%d\n    on: %s\n    when: '%s'\n    actions:\n", typ, j, typ, c)
			switch j {
			case 0:
				b.WriteString("      - increment: seen\n")
			case 1:
				b.WriteString("      - tag: engaged\n      - set_trait: {name: last, value: \"{{.event.type}}\"}\n")
			case 2:
				b.WriteString("      - emit: {type: vip-activity, topic: vip}\n")
			}
		}
	}
	for i := range 20 {
		fmt.Fprintf(&b, "  - name: never-%d\n    on: never-%d\n    when: event.properties.x == 1\n    actions: [{tag: never}]\n", i, i)
	}
	return b.String()
}

// ruleSink applies the rules to every event and system event the sessionizer emits, with
// each key's ProfileState in a map, as the pipeline's worker would.
type ruleSink struct {
	eng    *Engine
	env    Env
	out    Outcome
	states map[string]*ProfileState
	fired  int
}

func (s *ruleSink) Emit(o *operators.Output) {
	switch o.Kind {
	case operators.KindEvent, operators.KindLate:
		s.env.SetEvent(o.Event, o.Kind == operators.KindLate)
	case operators.KindSystem:
		s.env.SetSystem(o.System)
	default:
		return
	}
	st := s.states[s.env.Key]
	if st == nil {
		st = &ProfileState{}
		s.states[strings.Clone(s.env.Key)] = st
	}
	s.eng.Apply(&s.env, st, &s.out)
	s.fired += len(s.out.Fired)
}

type discard struct{}

func (discard) Emit(*operators.Output) {}

// BenchmarkShare measures what the rules cost next to decoding and sessionizing: the same
// records through a Sessionizer alone, and through a Sessionizer whose outputs run 50 rules
// (3 matching each event's type, system events included). The target: with rules,
// at least 60% of the sessionizer-only throughput.
//
//	go test -run - -bench Share -benchtime 3x -count 3 ./operators/rules/
//	benchstat: compare events/s of mode=sessionize and mode=sessionize+rules; mode=interleaved
//	reports the share directly (%-of-sessionize-only)
func BenchmarkShare(b *testing.B) {
	recs := shareRecords(50_000)
	cfg, err := Load([]byte(shareRules()), Options{})
	if err != nil {
		b.Fatal(err)
	}
	// The share itself, from runs of both modes interleaved, so that the load of a shared
	// machine weighs on both alike.
	b.Run("mode=interleaved", func(b *testing.B) {
		var plain, ruled time.Duration
		for b.Loop() {
			for _, withRules := range []bool{false, true} {
				var sink operators.Emitter = discard{}
				if withRules {
					sink = &ruleSink{eng: NewEngine(cfg, nil), states: map[string]*ProfileState{}}
				}
				s, err := operators.NewSessionizer(operators.Config{}, 0, sink)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				for i := range recs {
					s.Process(&recs[i])
				}
				s.Flush()
				if withRules {
					ruled += time.Since(start)
				} else {
					plain += time.Since(start)
				}
			}
		}
		b.ReportMetric(100*plain.Seconds()/ruled.Seconds(), "%-of-sessionize-only")
	})
	for _, mode := range []string{"sessionize", "sessionize+rules"} {
		b.Run("mode="+mode, func(b *testing.B) {
			b.ReportAllocs()
			var bytes int64
			for _, r := range recs {
				bytes += int64(len(r.Value))
			}
			b.SetBytes(bytes)
			fired := 0
			for b.Loop() {
				var sink operators.Emitter = discard{}
				var rs *ruleSink
				if mode != "sessionize" {
					rs = &ruleSink{eng: NewEngine(cfg, nil), states: map[string]*ProfileState{}}
					sink = rs
				}
				s, err := operators.NewSessionizer(operators.Config{}, 0, sink)
				if err != nil {
					b.Fatal(err)
				}
				for i := range recs {
					s.Process(&recs[i])
				}
				s.Flush()
				if rs != nil {
					fired = rs.fired
				}
			}
			b.ReportMetric(float64(len(recs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			if mode != "sessionize" {
				b.ReportMetric(float64(fired)/float64(len(recs)), "fired/event")
			}
		})
	}
}
