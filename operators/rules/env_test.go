package rules

import (
	"slices"
	"testing"

	"github.com/dwellhq/dwell/operators"
)

// TestEnvFromOperators fills an Env from the sessionizer's own types and runs conditions on
// it: a decoded input event, and a visit-ended system event with its summary.
func TestEnvFromOperators(t *testing.T) {
	cfg, err := Load([]byte(`
rules:
  - name: long-visit
    on: visit-ended
    when: event.system && visit.duration_ms >= 600000 && visit.page_view_count > 1 && visit.entry_url contains "shoes"
    actions: [{tag: engaged}]
  - name: cart
    on: add-to-cart
    when: event.properties.sku == "shoe-42" && "promo" in event.tags && event.source == "web" && !event.late
    actions: [{tag: shopper}]
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng := NewEngine(cfg, nil)
	var env Env
	var st ProfileState
	var out Outcome

	ocfg := operators.Config{}
	ocfg.EnsureDefaults()
	dec := operators.NewDecoder(&ocfg)
	rec := &operators.Record{Topic: "events", Offset: 7, Value: []byte(`{"type": "Add To Cart", "profile": "p1", "source": {"id": "web"},
		"time": "2026-01-01T00:00:00Z", "tags": ["promo"], "properties": {"sku": "shoe-42"}}`), Timestamp: operators.NoTimestamp}
	var ev operators.Event
	if err := dec.Decode(rec, &ev); err != nil {
		t.Fatal(err)
	}
	env.SetEvent(&ev, false)
	if env.Event.Type != "add-to-cart" || env.Key != "p1" || len(env.Event.ID) != 32 {
		t.Fatalf("env from event: %+v key %q", env.Event, env.Key)
	}
	eng.Apply(&env, &st, &out)
	if out.State != Processed || len(out.Fired) != 1 || !st.HasTag("shopper") {
		t.Fatalf("add-to-cart: %+v", out)
	}

	se := &operators.SystemEvent{ID: [16]byte{1}, Type: operators.VisitEnded, Time: 1_767_226_200_000, Profile: []byte("p1"),
		VisitID: []byte("v1"), Summary: &operators.Summary{StartedAt: 1_767_225_000_000, LastActivity: 1_767_225_600_000,
			EventCount: 5, PageViewCount: 3, EntryURL: []byte("https://shop.example.com/shoes")}}
	env.SetSystem(se)
	if env.Event.Type != "visit-ended" || !env.Visit.Open || env.Visit.ID != "v1" || env.Session.Open {
		t.Fatalf("env from system event: %+v", env)
	}
	eng.Apply(&env, &st, &out)
	if out.State != Processed || len(out.Fired) != 1 || !st.HasTag("engaged") {
		t.Fatalf("visit-ended: %+v", out)
	}
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		p, s string
		ok   bool
	}{
		{"*", "", true}, {"*", "x", true}, {"page-*", "page-view", true}, {"page-*", "page", false},
		{"*-view", "page-view", true}, {"*-view", "view", false}, {"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false}, {"a**", "a", true}, {"x", "x", true}, {"x", "y", false},
	} {
		if got := glob(c.p, c.s); got != c.ok {
			t.Errorf("glob(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

func TestLookup(t *testing.T) {
	obj := []byte(` { "a" : {"b": [1, {"c": 2}], "s": "x\"y", "n": -1.5e3, "t": true, "z": null}, "e\u0078": "esc" } `)
	for _, c := range []struct {
		path []string
		want jval
	}{
		{[]string{"a", "s"}, jval{k: jStr, s: `x"y`}},
		{[]string{"a", "n"}, jval{k: jNum, n: -1500}},
		{[]string{"a", "t"}, jval{k: jBool, b: true}},
		{[]string{"a", "z"}, jval{k: jNull}},
		{[]string{"a", "b"}, jval{k: jOther}},
		{[]string{"a", "b", "c"}, jval{}},
		{[]string{"ex"}, jval{k: jStr, s: "esc"}},
		{[]string{"missing"}, jval{}},
	} {
		if got := lookup(obj, c.path); got != c.want {
			t.Errorf("lookup %v = %+v, want %+v", c.path, got, c.want)
		}
	}
	for _, bad := range []string{``, `{`, `{"a"`, `{"a":`, `{"a": "x`, `[1]`, `{"a": 1,}`} {
		_ = lookup([]byte(bad), []string{"a"})
	}
	if !arrayHas([]byte(`["a", "b\u0063"]`), "bc") || arrayHas([]byte(`["a"]`), "b") || arrayLen([]byte(`[1, [2, 3], {}]`)) != 3 {
		t.Error("array helpers")
	}
}

// TestConditionAllocs pins the zero-allocation evaluation of compiled conditions.
func TestConditionAllocs(t *testing.T) {
	for _, c := range benchConds {
		var paths pathTable
		cond, err := (&compiler{paths: &paths, maxNodes: 200}).compile(c.src)
		if err != nil {
			t.Fatal(err)
		}
		env, st := benchEnv()
		env.ensureSlots(len(paths.paths))
		ctx := &evalCtx{env: env, st: st}
		if n := testing.AllocsPerRun(100, func() {
			clear(env.propDone)
			_, _ = cond.fn(ctx)
		}); n != 0 {
			t.Errorf("%s: %v allocations per evaluation", c.name, n)
		}
	}
}

// TestSharedConfig runs one Config (with a registry and templates) in engines on several
// goroutines, as partitions share it; run with -race.
func TestSharedConfig(t *testing.T) {
	cfg, err := Load([]byte(shareRules()+`
registry:
  types:
    purchase:
      schema: {type: object, required: [total]}
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs := shareRecords(2000)
	done := make(chan []string, 4)
	for range 4 {
		go func() {
			sink := &ruleSink{eng: NewEngine(cfg, cfg.Registry), states: map[string]*ProfileState{}}
			s, err := operators.NewSessionizer(operators.Config{}, 0, sink)
			if err != nil {
				done <- []string{err.Error()}
				return
			}
			for i := range recs {
				s.Process(&recs[i])
			}
			s.Flush()
			var out []string
			for k, st := range sink.states {
				out = append(out, k+string(st.AppendEncode(nil)))
			}
			slices.Sort(out)
			done <- out
		}()
	}
	first := <-done
	for range 3 {
		if got := <-done; !slices.Equal(got, first) {
			t.Fatal("engines sharing a config disagree")
		}
	}
	if len(first) < 100 {
		t.Fatalf("only %d keys have rule state", len(first))
	}
}
