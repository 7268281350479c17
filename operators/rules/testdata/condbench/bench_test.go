// Package condbench compares expression libraries for dwell's rule conditions: the same
// conditions over the same typed environment, evaluated by github.com/expr-lang/expr and by
// github.com/google/cel-go. It is a module of its own under testdata so that the losing library
// never enters dwell's go.mod.
//
//	cd operators/rules/testdata/condbench && go test -run - -bench . -benchtime 200ms -count 3
package condbench

import (
	"reflect"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"
)

type Event struct {
	Type   string  `expr:"type" cel:"type"`
	Source string  `expr:"source" cel:"source"`
	Total  float64 `expr:"total" cel:"total"`
}

type Visit struct {
	EventCount int64 `expr:"event_count" cel:"event_count"`
}

type Env struct {
	Event *Event `expr:"event"`
	Visit *Visit `expr:"visit"`
}

var conds = []struct{ name, src string }{
	{"type-and-count", `event.type == "add-to-cart" && visit.event_count >= 3`},
	{"in-and-number", `event.source in ["web", "app"] && event.total > 100.0`},
	{"string-funcs", `event.type.startsWith("add") || event.source.endsWith("app")`},
}

func env() *Env {
	return &Env{Event: &Event{Type: "add-to-cart", Source: "web", Total: 120.5}, Visit: &Visit{EventCount: 4}}
}

func BenchmarkExpr(b *testing.B) {
	for _, c := range conds {
		src := c.src
		src = replaceFuncs(src)
		b.Run("cond="+c.name, func(b *testing.B) {
			p, err := expr.Compile(src, expr.Env(Env{}), expr.AsBool())
			if err != nil {
				b.Fatal(err)
			}
			e := env()
			var m vm.VM
			b.ReportAllocs()
			for b.Loop() {
				out, err := m.Run(p, e)
				if err != nil || out != true {
					b.Fatal(out, err)
				}
			}
		})
	}
}

func replaceFuncs(s string) string {
	if s == conds[2].src {
		return `event.type startsWith "add" || event.source endsWith "app"`
	}
	return s
}

type celAct struct{ e *Env }

func (a celAct) ResolveName(n string) (any, bool) {
	switch n {
	case "event":
		return a.e.Event, true
	case "visit":
		return a.e.Visit, true
	}
	return nil, false
}
func (a celAct) Parent() cel.Activation { return nil }

func BenchmarkCEL(b *testing.B) {
	ce, err := cel.NewEnv(
		ext.NativeTypes(reflect.TypeOf(&Event{}), reflect.TypeOf(&Visit{}), ext.ParseStructTags(true)),
		cel.Variable("event", cel.ObjectType("condbench.Event")),
		cel.Variable("visit", cel.ObjectType("condbench.Visit")),
	)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range conds {
		b.Run("cond="+c.name, func(b *testing.B) {
			ast, iss := ce.Compile(c.src)
			if iss.Err() != nil {
				b.Fatal(iss.Err())
			}
			p, err := ce.Program(ast, cel.EvalOptions(cel.OptOptimize))
			if err != nil {
				b.Fatal(err)
			}
			act := celAct{env()}
			b.ReportAllocs()
			for b.Loop() {
				out, _, err := p.Eval(act)
				if err != nil || out.Value() != true {
					b.Fatal(out, err)
				}
			}
		})
	}
}
