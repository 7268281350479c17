package rules

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dwellhq/dwell/operators"
)

// scenarioSink runs the rules on the sessionizer's outputs and fires scheduled events when
// the watermark passes them, as the pipeline will: the keys' rule state and the timers live
// next to the sessionizer, and fired events go through the rules like any other.
type scenarioSink struct {
	eng    *Engine
	env    Env
	out    Outcome
	states map[string]*ProfileState
	log    []string
}

func (s *scenarioSink) apply(key string) {
	st := s.states[key]
	if st == nil {
		st = &ProfileState{}
		s.states[strings.Clone(key)] = st
	}
	s.eng.Apply(&s.env, st, &s.out)
	for _, o := range s.out.Outputs {
		s.log = append(s.log, fmt.Sprintf("%s %s %s", o.Kind, o.Key, o.Value))
	}
	for _, e := range s.out.Errors {
		s.log = append(s.log, "error "+e.Error())
	}
}

func (s *scenarioSink) Emit(o *operators.Output) {
	switch o.Kind {
	case operators.KindEvent:
		s.env.SetEvent(o.Event, false)
	case operators.KindSystem:
		s.env.SetSystem(o.System)
	default:
		return
	}
	s.apply(s.env.Key)
}

// fire applies every timer due at the watermark, in (deadline, key) order.
func (s *scenarioSink) fire(watermark int64) {
	type due struct {
		key string
		t   Timer
	}
	var all []due
	for key, st := range s.states {
		for _, t := range st.PopDue(watermark, nil) {
			all = append(all, due{key, t})
		}
	}
	slices.SortFunc(all, func(a, b due) int {
		if a.t.Deadline != b.t.Deadline {
			return int(a.t.Deadline - b.t.Deadline)
		}
		return strings.Compare(a.key, b.key)
	})
	for _, d := range all {
		s.env.SetTimer(d.key, &d.t)
		s.apply(d.key)
	}
}

// TestCartAbandonment: schedule on add-to-cart, cancel on purchase; the delayed event is
// emitted exactly once, an hour after the last add-to-cart, for carts left alone, and only
// once the watermark has passed it. The same records give the same log twice.
func TestCartAbandonment(t *testing.T) {
	cfg, err := Load([]byte(`
rules:
  - name: cart-timer
    on: add-to-cart
    actions:
      - schedule: {name: cart, type: cart-abandoned, after: 1h, properties: {sku: "{{.event.properties.sku}}"}}
  - name: cart-done
    on: purchase
    actions: [{cancel: cart}]
  - name: abandoned
    on: cart-abandoned
    actions:
      - notify: {channel: email, to: ["{{.profile.id}}@example.com"], subject: "still want {{.event.properties.sku}}?"}
  - name: visits
    on: visit-ended
    when: visit.event_count >= 2
    actions: [{increment: long-visits}]
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	const minute = 60_000
	t0 := int64(1_767_225_600_000)
	type ev struct {
		at       int64
		p, typ   string
		sku      string
		expected string
	}
	evs := []ev{
		{0, "ann", "add-to-cart", "shoe", ""},
		{5 * minute, "bob", "add-to-cart", "hat", ""},
		{10 * minute, "bob", "purchase", "", ""},
		{20 * minute, "ann", "add-to-cart", "sock", ""}, // pushes ann's timer to 1h20m
		{30 * minute, "cid", "add-to-cart", "cap", ""},
		{200 * minute, "dan", "page-view", "", ""}, // moves the watermark past every deadline
	}
	run := func() []string {
		sink := &scenarioSink{eng: NewEngine(cfg, nil), states: map[string]*ProfileState{}}
		s, err := operators.NewSessionizer(operators.Config{}, 0, sink)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range evs {
			props := "{}"
			if e.sku != "" {
				props = fmt.Sprintf(`{"sku": %q}`, e.sku)
			}
			v := fmt.Sprintf(`{"id": "e%d", "type": %q, "time": %d, "profile": %q, "session": "s-%s", "properties": %s}`,
				i, e.typ, t0+e.at, e.p, e.p, props)
			s.Process(&operators.Record{Topic: "events", Offset: int64(i), Value: []byte(v), Timestamp: operators.NoTimestamp})
			sink.fire(s.Watermark())
			sink.log = append(sink.log, fmt.Sprintf("-- after e%d, watermark +%dm", i, (s.Watermark()-t0)/minute))
		}
		s.Flush()
		sink.fire(s.Watermark())
		return sink.log
	}
	log := run()
	t.Log(strings.Join(log, "\n"))
	got := strings.Join(log, "\n")
	for _, want := range []string{
		`notify ann {"body":"","channel":"email","event_id":`,
		`"subject":"still want sock?","time":"2026-01-01T01:20:00.000Z","to":["ann@example.com"]}`,
		`"subject":"still want cap?","time":"2026-01-01T01:30:00.000Z","to":["cid@example.com"]}`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %s:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "notify "); n != 2 {
		t.Errorf("%d notifications, want 2 (ann and cid; bob bought):\n%s", n, got)
	}
	// Nothing fires before the watermark passes the deadline: both after the page view.
	if i, j := strings.Index(got, "notify"), strings.Index(got, "-- after e4"); i < j {
		t.Errorf("a notification before the watermark passed its deadline:\n%s", got)
	}
	if again := strings.Join(run(), "\n"); again != got {
		t.Errorf("a second run differs:\n%s\n---\n%s", got, again)
	}
}
