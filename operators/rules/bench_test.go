package rules

import (
	"fmt"
	"strings"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// benchConds are the conditions of the evaluation benchmarks. The expr-vm arm runs each with
// expr's own VM over declEnv (typed structs, properties already decoded into a map, which the
// compiled arm never needs); the compiled arm runs the closures over an Env whose properties
// are raw JSON, read lazily (the first evaluation of an event pays the scan; the benchmark
// evaluates the same event again, as the rules of one event do, and reports the cold cost
// separately as lazy-props).
var benchConds = []struct{ name, src string }{
	{"type-and-count", `event.type == "add-to-cart" && visit.event_count >= 3`},
	{"in-and-number", `event.source in ["web", "app"] && event.properties.total > 100.0`},
	{"string-funcs", `event.type startsWith "add" || event.source endsWith "app"`},
	{"profile", `profile.counters.purchases >= 2 && profile.traits.plan == "pro"`},
}

func benchEnv() (*Env, *ProfileState) {
	env := &Env{}
	env.Event = EventView{ID: "e1", Type: "add-to-cart", Source: "web", Profile: "alice", Time: 1_767_225_600_000,
		Properties: []byte(`{"sku": "shoe-42", "name": "Running shoe", "category": "shoes", "total": 120.5, "currency": "EUR"}`)}
	env.Key = "alice"
	env.Visit = ActivityView{Open: true, ID: "v1", EventCount: 4}
	st := &ProfileState{Traits: []Trait{{"email", "a@example.com"}, {"plan", "pro"}}, Counters: []Counter{{"purchases", 3}}}
	return env, st
}

// BenchmarkCondition compares one condition's evaluation: closures compiled from expr's
// checked tree (what dwell runs) against expr's VM, on the same environment.
//
//	go test -run - -bench Condition -benchtime 200ms -count 3 ./operators/rules/
//	benchstat: compare impl=compiled with impl=expr-vm per cond
func BenchmarkCondition(b *testing.B) {
	for _, c := range benchConds {
		b.Run("cond="+c.name+"/impl=compiled", func(b *testing.B) {
			var paths pathTable
			cp := &compiler{paths: &paths, maxNodes: 200}
			cond, err := cp.compile(c.src)
			if err != nil {
				b.Fatal(err)
			}
			env, st := benchEnv()
			env.ensureSlots(&paths)
			ctx := &evalCtx{env: env, st: st, budget: defaultLimits.MaxConditionBytes}
			b.ReportAllocs()
			for b.Loop() {
				if ok, err := cond.eval(ctx); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
		b.Run("cond="+c.name+"/impl=expr-vm", func(b *testing.B) {
			p, err := expr.Compile(c.src, expr.Env(declEnv{}), expr.AsBool())
			if err != nil {
				b.Fatal(err)
			}
			env := &declEnv{
				Event:   declEvent{ID: "e1", Type: "add-to-cart", Source: "web", Properties: map[string]any{"total": 120.5}},
				Profile: declProfile{Traits: map[string]string{"plan": "pro"}, Counters: map[string]int64{"purchases": 3}},
				Visit:   declActivity{Open: true, EventCount: 4},
			}
			var m vm.VM
			b.ReportAllocs()
			for b.Loop() {
				if out, err := m.Run(p, env); out != true || err != nil {
					b.Fatal(out, err)
				}
			}
		})
	}
	// The first read of a property in an event: a scan of the raw properties.
	b.Run("cond=in-and-number/impl=compiled-lazy-props", func(b *testing.B) {
		var paths pathTable
		cond, err := (&compiler{paths: &paths, maxNodes: 200}).compile(benchConds[1].src)
		if err != nil {
			b.Fatal(err)
		}
		env, st := benchEnv()
		env.ensureSlots(&paths)
		ctx := &evalCtx{env: env, st: st, budget: defaultLimits.MaxConditionBytes}
		b.ReportAllocs()
		for b.Loop() {
			env.resetProps()
			if ok, err := cond.eval(ctx); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}

// benchRules returns a config of n rules on n/3 distinct types (so that 3 rules match each
// type), each with a condition, half of them true.
func benchRules(n int) string {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: r%02d\n    on: type-%d\n", i, i/3)
		if i%2 == 0 {
			b.WriteString("    when: event.properties.total > 100 && visit.event_count >= 3\n")
		} else {
			b.WriteString("    when: profile.counters.purchases > 10\n")
		}
		b.WriteString("    actions:\n      - increment: seen\n")
	}
	return b.String()
}

// BenchmarkApply runs a whole event through an engine of 50 rules, 3 of which match its type
// (the others cost nothing), or none (a type no rule names).
//
//	go test -run - -bench Apply -benchtime 200ms -count 3 ./operators/rules/
func BenchmarkApply(b *testing.B) {
	cfg, err := Load([]byte(benchRules(50)), Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, typ := range []string{"type-7", "page-view"} {
		b.Run("rules=50/type="+typ, func(b *testing.B) {
			eng := NewEngine(cfg, nil)
			env, st := benchEnv()
			ev := env.Event
			ev.Type = typ
			var out Outcome
			b.ReportAllocs()
			for b.Loop() {
				env.Reset()
				env.Event, env.Key, env.Visit = ev, "alice", ActivityView{Open: true, EventCount: 4}
				eng.Apply(env, st, &out)
			}
		})
	}
}

// typicalRules are 3 rules on one type whose conditions hold for benchEnv's event, with the
// state actions most rules take (no emits): the typical Apply.
const typicalRules = `rules:
  - name: cart-engaged
    on: add-to-cart
    when: event.source == "web" && event.properties.total > 100
    actions: [{tag: engaged}]
  - name: cart-count
    on: add-to-cart
    when: profile.counters.purchases >= 2 || visit.event_count > 3
    actions: [{increment: carts}]
  - name: cart-last
    on: add-to-cart
    when: event.properties.currency == "EUR"
    actions:
      - set_trait: {name: last_sku, value: "{{.event.properties.sku}}"}
      - set_trait: {name: last_type, value: "{{.event.type}} at {{.event.time}}"}
`

// typicalApply returns an engine of typicalRules and a function applying it to benchEnv's
// event, as the pipeline does for each event (the Env filled again, the state kept).
func typicalApply(tb testing.TB) (apply func(), out *Outcome, env *Env) {
	cfg, err := Load([]byte(typicalRules), Options{Version: "v7"})
	if err != nil {
		tb.Fatal(err)
	}
	eng := NewEngine(cfg, nil)
	env, st := benchEnv()
	ev, visit := env.Event, env.Visit
	out = &Outcome{}
	return func() {
		env.Reset()
		env.Event, env.Key, env.Visit = ev, "alice", visit
		eng.Apply(env, st, out)
	}, out, env
}

// BenchmarkEventLog compares writing an event's event-log record (level all: one per event)
// with applying the rules to it, on the typical event of typicalRules (3 rules fire).
//
//	go test -run '^$' -bench EventLog -cpu 1 -count 10 ./operators/rules/
//	benchstat: op=AppendLogJSON against op=Apply, and across commits
func BenchmarkEventLog(b *testing.B) {
	apply, out, env := typicalApply(b)
	apply()
	if len(out.Fired) != 3 || len(out.Errors) > 0 {
		b.Fatalf("fired %v, errors %v", out.Fired, out.Errors)
	}
	b.Run("op=Apply", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			apply()
		}
	})
	b.Run("op=AppendLogJSON", func(b *testing.B) {
		e := LogEntry{EventID: env.Event.ID, Type: env.Event.Type, Key: env.Key, Time: env.Event.Time, Topic: "events",
			Partition: 3, Offset: 1234567, State: out.State, Outcome: out, ConfigVersion: "v7", ProcessingMicros: 12}
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendLogJSON(buf[:0], &e)
		}
		b.SetBytes(int64(len(buf)))
	})
}

// BenchmarkTemplate applies one rule whose action renders one template: fast (text and plain
// fields, rendered without text/template) or slow (text/template: a function, a range, printf).
//
//	go test -run '^$' -bench Template -benchmem -count 6 ./operators/rules/
func BenchmarkTemplate(b *testing.B) {
	for _, c := range []struct{ name, src string }{
		{"fast", "{{.event.properties.sku}} of {{.profile.id}}"},
		{"func", "{{.event.properties.sku | upper}}"},
		{"range", "{{range .profile.tags}}{{.}},{{end}}"},
		{"printf", `{{printf "%.2f %s" .event.properties.total .event.type}}`},
	} {
		b.Run("tmpl="+c.name, func(b *testing.B) {
			cfg, err := Load([]byte("rules:\n  - name: t\n    on: add-to-cart\n    actions:\n      - set_trait: {name: x, value: '"+c.src+"'}\n"), Options{})
			if err != nil {
				b.Fatal(err)
			}
			eng := NewEngine(cfg, nil)
			env, st := benchEnv()
			st.Tags = []string{"new", "vip"}
			ev, visit := env.Event, env.Visit
			var out Outcome
			b.ReportAllocs()
			for b.Loop() {
				env.Reset()
				env.Event, env.Key, env.Visit = ev, "alice", visit
				eng.Apply(env, st, &out)
				if len(out.Errors) > 0 {
					b.Fatal(out.Errors)
				}
			}
		})
	}
}
