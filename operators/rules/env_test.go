package rules

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
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
	// The visit that ended, as it ended: closed.
	if env.Event.Type != "visit-ended" || env.Visit.Open || env.Visit.ID != "v1" || env.Visit.EventCount != 5 || env.Session.Open {
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
		env.ensureSlots(&paths)
		ctx := &evalCtx{env: env, st: st, budget: defaultLimits.MaxConditionBytes}
		if n := testing.AllocsPerRun(100, func() {
			env.resetProps()
			_, _ = cond.eval(ctx)
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

// checkPropScan says whether the one-pass scan of Env.prop finds what lookup finds, for every
// path of pt in obj.
func checkPropScan(t *testing.T, pt *pathTable, obj []byte) {
	t.Helper()
	var env Env
	env.ensureSlots(pt)
	env.Event.Properties = obj
	for slot := len(pt.paths) - 1; slot >= 0; slot-- { // not in scan order
		path := pt.paths[slot]
		got, want := env.prop(pt, slot), lookup(obj, path)
		if got != want && !(got.k == jNum && want.k == jNum && got.n != got.n && want.n != want.n) {
			t.Fatalf("%s: prop %v = %+v, lookup %+v", obj, path, got, want)
		}
	}
}

// TestPropScan: Env.prop reads every path a config names in one pass over the properties,
// with lookup's results (first of duplicate keys, escaped keys, nothing past malformed JSON).
func TestPropScan(t *testing.T) {
	var pt pathTable
	for _, p := range [][]string{{"a", "s"}, {"a", "n"}, {"a", "b", "c"}, {"ex"}, {"missing"}, {"d"}, {"n"}, {"a"}} {
		pt.slot(p)
	}
	for _, obj := range []string{
		` { "a" : {"b": [1, {"c": 2}], "s": "x\"y", "n": -1.5e3, "t": true, "z": null}, "e\u0078": "esc" } `,
		`{"d": 1, "d": 2, "n": 0.1, "ex": "\\"}`, `{"n": 12345678901234567890, "d": -0, "a": 7}`,
		``, `{`, `{"a"`, `{"a":`, `{"a": "x`, `[1]`, `{"d": 1,}`, `{"d": 1 "n": 2}`, `{"n": 3, "d": }`, `{"a\": 1}`,
	} {
		checkPropScan(t, &pt, []byte(obj))
	}
	var many pathTable // more first names than the linear search takes
	for i := range 20 {
		many.slot([]string{fmt.Sprintf("k%d", i)})
	}
	checkPropScan(t, &many, []byte(`{"k3": 3, "k19": "x", "k0": [0], "other": {}}`))
}

// TestSkipString checks the word-at-a-time string scan against a plain byte loop, with a quote
// or an escape at every offset of a word.
func TestSkipString(t *testing.T) {
	ref := func(b []byte, i int) (int, bool) {
		esc := false
		for i++; i < len(b); i++ {
			switch b[i] {
			case '\\':
				esc = true
				i++
			case '"':
				return i + 1, esc
			}
		}
		return -1, esc
	}
	base := `"abcdefghijklmnopqrstuvwxyz0123456789`
	for i := 1; i < len(base); i++ {
		for _, ins := range []string{`"`, `\"`, `\\`, `\`, `\\"`, "\x00", "\xff\"", `\u0022"`} {
			for _, tail := range []string{"", `"`, `xyz"`, `"tail"`} {
				b := []byte(base[:i] + ins + base[i:] + tail)
				gotEnd, gotEsc := skipString(b, 0)
				wantEnd, wantEsc := ref(b, 0)
				if gotEnd != wantEnd || gotEnd >= 0 && gotEsc != wantEsc {
					t.Fatalf("skipString(%q) = %d, %v; want %d, %v", b, gotEnd, gotEsc, wantEnd, wantEsc)
				}
			}
		}
	}
}

// TestParseSimpleNumber: the fast number path reads what strconv.ParseFloat reads.
func TestParseSimpleNumber(t *testing.T) {
	for _, s := range []string{"0", "-0", "1", "-1", "12.5", "0.1", "0.3", "123456789012345", "1234567890.12345",
		"999999999999999", "0.000000000000001", "9007199254740993", "1e3", "1.", ".5", "-", "", "01", "1.2.3", "--1", "3.14159265358979"} {
		want, werr := strconv.ParseFloat(s, 64)
		got, ok := parseSimpleNumber([]byte(s))
		if ok && (werr != nil || math.Float64bits(got) != math.Float64bits(want)) {
			t.Errorf("parseSimpleNumber(%q) = %v, ParseFloat %v, %v", s, got, want, werr)
		}
	}
	for i := range 100000 {
		s := strconv.FormatFloat(float64(i)*0.37-5000, 'f', i%7, 64)
		want, _ := strconv.ParseFloat(s, 64)
		if got, ok := parseSimpleNumber([]byte(s)); !ok || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("parseSimpleNumber(%q) = %v, %v; ParseFloat %v", s, got, ok, want)
		}
	}
}

// TestApplyAllocs pins the allocation-free Apply of a typical event: 3 rules whose conditions
// hold, tagging, counting and setting traits from templates (no emits), on a key whose state
// already has them.
func TestApplyAllocs(t *testing.T) {
	apply, out, _ := typicalApply(t)
	apply() // the first event creates the state's entries
	apply()
	if len(out.Fired) != 3 || len(out.Actions) != 4 || len(out.Errors) > 0 || !out.StateChanged {
		t.Fatalf("fired %v, actions %v, errors %v, state changed %v", out.Fired, out.Actions, out.Errors, out.StateChanged)
	}
	if n := testing.AllocsPerRun(100, apply); n != 0 {
		t.Errorf("Apply: %v allocations per event", n)
	}
}

// TestSystemPropNames: every property a system event can have is in systemPropNames, which
// lets conditions skip rendering for names it lacks.
func TestSystemPropNames(t *testing.T) {
	sm := &operators.Summary{StartedAt: 1, LastActivity: 2, EventCount: 3, EntryURL: []byte("u"), ExitURL: []byte("v"),
		Source: []byte("web"), Device: []byte("mobile"), Types: []operators.TypeCount{{Type: "a", Count: 1}}, OtherTypes: 2}
	ev := &operators.Event{URL: []byte("u"), Device: []byte("d")}
	for _, o := range []*operators.Output{
		{Kind: operators.KindSystem, System: &operators.SystemEvent{Type: operators.VisitEnded, VisitID: []byte("v"), Summary: sm}},
		{Kind: operators.KindSystem, System: &operators.SystemEvent{Type: operators.SessionClosed, VisitID: []byte("v"), Summary: sm}},
		{Kind: operators.KindSystem, System: &operators.SystemEvent{Type: operators.VisitStarted, VisitID: []byte("v")}, Event: ev},
		{Kind: operators.KindSystem, System: &operators.SystemEvent{Type: operators.SessionOpened, VisitID: []byte("v")}},
	} {
		var m map[string]any
		b := operators.AppendSystemProperties(nil, o)
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		for k := range m {
			if !systemPropNames[k] {
				t.Errorf("%s: property %q is not in systemPropNames", o.System.Type, k)
			}
		}
	}
}
