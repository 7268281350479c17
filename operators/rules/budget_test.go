package rules

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// budgetApply applies a rules file with one rule `r` on type t to an event with props, and
// returns the outcome.
func budgetApply(t *testing.T, rulesYAML, props string) *Outcome {
	t.Helper()
	cfg, err := Load([]byte(rulesYAML), Options{})
	if err != nil {
		t.Fatal(err)
	}
	env, st := benchEnv()
	env.Event.Type, env.Event.Properties = "t", []byte(props)
	out := &Outcome{}
	NewEngine(cfg, nil).Apply(env, st, out)
	return out
}

func templateRule(src string) string {
	return "on_error: dead-letter\nrules:\n  - name: r\n    on: t\n    actions:\n      - emit: {type: x, topic: y, properties: {p: '" + src + "'}}\n"
}

// wantBudgetError requires the outcome of a rule error over the budget, naming the rule and
// the action.
func wantBudgetError(t *testing.T, what string, out *Outcome, detail string) {
	t.Helper()
	if out.State != Errored || out.Reason != ReasonRuleError || !out.DeadLetter || len(out.Errors) != 1 {
		t.Fatalf("%s: state %s, reason %q, errors %v; want one rule error, dead-lettered", what, out.State, out.Reason, out.Errors)
	}
	if !errors.Is(out.Errors[0].Err, ErrBudget) || !strings.Contains(out.Detail, detail) {
		t.Fatalf("%s: detail %q; want ErrBudget and %q", what, out.Detail, detail)
	}
}

// TestHostileTemplatesRefused: what the rule set shows going over a budget is refused at
// load, with the rule, the field and what to do.
func TestHostileTemplatesRefused(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`{{range 1000000000}}{{end}}`, "range over 1000000000 always takes at least 1000000000 steps, over the template budget of 100000 (limits: max_template_steps): range over a list"},
		{`{{range 10000}}{{range 10000}}{{end}}{{end}}`, "at least 100020000 steps"},
		{`{{range 10000}}{{range 10000}}{{break}}{{end}}{{end}}`, "at least 100020000 steps"}, // charged before a break
		{`{{define "x"}}{{range 1000000}}{{end}}{{end}}{{if .rule}}{{else}}{{template "x"}}{{end}}{{template "x"}}`, "at least 1000000 steps"},
		{`{{define "x"}}{{template "x" .}}{{end}}{{template "x" .}}`, `template "x" calls itself (x -> x): templates must not recurse`},
		{`{{define "a"}}{{template "b" .}}{{end}}{{define "b"}}{{if .}}{{template "a" .}}{{end}}{{end}}x`, `template "a" calls itself (a -> b -> a)`},
		{`{{block "a" .}}{{template "a" .}}{{end}}`, `template "a" calls itself`},
		{`{{template "nope" .}}`, `template "nope" is not defined`},
		{`{{if .rule}}{{else}}{{range 1000000000}}{{end}}{{end}}`, "range over 1000000000 always takes"}, // whenever it runs
		{`{{range .a}}{{range .b}}{{range .c}}{{range .d}}{{end}}{{end}}{{end}}{{end}}`, "ranges nested 4 deep (at most 3)"},
		{`{{printf "%999999999d" 1}}`, "printf width or precision 999999999 is over the template budget of 65536 bytes"},
		{`{{printf "%.70000f" 1.5}}`, "printf width or precision 70000"},
		{`{{len (printf "%9999999d" 1)}}`, "printf width or precision 9999999"},
		{`{{range 7000}}0123456789{{end}}`, "always renders at least 70000 bytes, over the template budget of 65536 (limits: max_template_bytes)"},
	} {
		_, err := Load([]byte(templateRule(c.src)), Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `rule "r": action 1 (emit): properties.p: `) {
			t.Errorf("%s: %v; want a load error with %q", c.src, err, c.want)
		}
	}
	// Below the budgets, and what may not run at all, loads.
	for _, src := range []string{
		`{{range 100}}{{range 100}}.{{end}}{{end}}`, `{{range 99999}}{{end}}`,
		`{{define "a"}}{{template "b" .}}{{template "b" .}}{{end}}{{define "b"}}x{{end}}{{template "a" .}}`,
		`{{range .a}}{{range .b}}{{range .c}}{{end}}{{end}}{{end}}`, `{{printf "%8.2f" 1.5}}`,
	} {
		if _, err := Load([]byte(templateRule(src)), Options{}); err != nil {
			t.Errorf("%s: %v", src, err)
		}
	}
}

// TestHostileTemplatesBounded: what only the event shows is a rule error of that event, with
// the budget as the reason, and Apply returns.
func TestHostileTemplatesBounded(t *testing.T) {
	items := "[" + strings.Repeat("1,", 9999) + "1]"
	for _, c := range []struct{ name, src, props, detail string }{
		{"range over a number from the event", `{{range .event.properties.n}}x{{end}}`, `{"n": 1000000000}`,
			"template exceeded its budget of 100000 steps"},
		{"range over the event time", `{{range .event.time}}{{end}}`, `{}`, "template exceeded its budget of 100000 steps"},
		{"nested ranges over a list from the event", `{{range .event.properties.l}}{{range $.event.properties.l}}{{end}}{{end}}`,
			`{"l": ` + items + `}`, "template exceeded its budget of 100000 steps"},
		{"a map from the event", `{{range .event.properties.m}}{{end}}`, `{"m": {` + mapOf(150000) + `}}`,
			"template exceeded its budget of 100000 steps"},
		{"template calls that double", `{{define "a"}}{{template "b" .}}{{template "b" .}}{{end}}{{define "b"}}{{template "c" .}}{{template "c" .}}{{end}}{{define "c"}}{{range .event.properties.l}}{{end}}{{end}}{{range .event.properties.l}}{{template "a" $}}{{end}}`,
			`{"l": ` + items + `}`, "template exceeded its budget of 100000 steps"},
		{"printf with a width from the event", `{{printf .event.properties.f 1}}`, `{"f": "%9999999d"}`, "template exceeded its budget of 65536 bytes"},
		{"printf of a list padded", `{{printf "%500v" .event.properties.l}}`, `{"l": ` + items + `}`, "template exceeded its budget of 65536 bytes"},
		{"printf reusing an argument", `{{printf .event.properties.f .event.properties.s}}`,
			`{"f": "` + strings.Repeat("%[1]s", 1000) + `", "s": "` + strings.Repeat("x", 1000) + `"}`, "template exceeded its budget of 65536 bytes"},
		{"join with a long separator", `{{join .event.properties.sep .event.properties.l}}`,
			`{"sep": "` + strings.Repeat("-", 1000) + `", "l": ` + items + `}`, "template exceeded its budget of 65536 bytes"},
		{"json of the event, again and again", `{{range .event.properties.l}}{{len (json $.event.properties)}}{{end}}`,
			`{"l": ` + items + `, "s": "` + strings.Repeat("x", 100000) + `"}`, "template exceeded its budget of 100000 steps"},
		{"upper of a long text, again and again", `{{range .event.properties.l}}{{len (upper $.event.properties.s)}}{{end}}`,
			`{"l": ` + items + `, "s": "` + strings.Repeat("x", 100000) + `"}`, "template exceeded its budget of 100000 steps"},
		{"output", `{{range .event.properties.l}}{{$.event.properties.s}}{{end}}`,
			`{"l": [1, 2, 3], "s": "` + strings.Repeat("x", 30000) + `"}`, "template exceeded its budget of 65536 bytes"},
	} {
		out := budgetApply(t, templateRule(c.src), c.props)
		wantBudgetError(t, c.name, out, `rule "r": action 1: properties.p: `+c.detail)
	}
}

func mapOf(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":1`, i)
	}
	return b.String()
}

// TestHostileConditionBounded: a condition reads at most its budget of the event's bytes;
// contains stays linear on inputs made to defeat it.
func TestHostileConditionBounded(t *testing.T) {
	tags := `["` + strings.Repeat("t", 1<<20-4) + `"]`
	var when []string
	for i := range 20 {
		when = append(when, fmt.Sprintf(`"x%d" in event.tags`, i))
	}
	cfg, err := Load([]byte("on_error: dead-letter\nrules:\n  - name: r\n    on: t\n    when: '"+strings.Join(when, " || ")+"'\n    actions: [{tag: x}]\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	env, st := benchEnv()
	env.Event.Type, env.Event.Tags = "t", []byte(tags)
	var out Outcome
	NewEngine(cfg, nil).Apply(env, st, &out)
	wantBudgetError(t, "in over 1 MiB of tags, 20 times", &out, `rule "r": when: condition exceeded its budget of 16777216 bytes examined`)

	// A haystack and a needle made to cost a quadratic search its worst.
	s := strings.Repeat("a", 600_000)
	sub := strings.Repeat("a", 300_000) + "b"
	out2 := budgetApply(t, "rules:\n  - name: r\n    on: t\n    when: event.properties.s contains event.properties.sub\n    actions: [{tag: x}]\n",
		`{"s": "`+s+`", "sub": "`+sub+`"}`)
	if out2.State != Processed || len(out2.Fired) != 0 {
		t.Fatalf("contains: state %s, fired %v, detail %q", out2.State, out2.Fired, out2.Detail)
	}
}

// TestContainsLinear: the linear search finds what strings.Contains finds.
func TestContainsLinear(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	str := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "ab"[rng.IntN(2)]
		}
		return string(b)
	}
	for range 2000 {
		s := str(1000 + rng.IntN(3000))
		var sub string
		if rng.IntN(2) == 0 {
			i := rng.IntN(len(s) - 70)
			sub = s[i : i+65+rng.IntN(min(200, len(s)-i-65))]
		} else {
			sub = str(65 + rng.IntN(20))
		}
		if got, want := containsLinear(s, sub), strings.Contains(s, sub); got != want {
			t.Fatalf("containsLinear(%q, %q) = %v, want %v", s, sub, got, want)
		}
	}
}

// TestBudgetsPerEngine: engines of one config on several goroutines (the partitions' workers)
// each have their own budget: one event over it does not spend another's.
func TestBudgetsPerEngine(t *testing.T) {
	cfg, err := Load([]byte(templateRule(`{{range .event.properties.l}}{{range $.event.properties.l}}.{{end}}{{end}}`)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			eng := NewEngine(cfg, nil)
			env, st := benchEnv()
			var out Outcome
			for i := range 50 {
				n := 10 + (g+i)%2*990 // 10: 110 steps; 1000: over the budget
				env.Event.Type, env.Event.Properties = "t", []byte(`{"l": [`+strings.TrimSuffix(strings.Repeat("1,", n), ",")+`]}`)
				eng.Apply(env, st, &out)
				if over := n > 300; over != (out.State == Errored) || !over && len(out.Outputs) != 1 {
					t.Errorf("goroutine %d, event %d (%d elements): state %s, detail %q", g, i, n, out.State, out.Detail)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestPrintfBound: the bound is never below what fmt prints, on formats and arguments of the
// kinds templates pass.
func TestPrintfBound(t *testing.T) {
	args := []any{"héllo\x00", 3.25, -17, int64(1 << 40), true, nil, map[string]any{"a": []any{1.5, "x", nil, false}, "b": map[string]any{}},
		[]string{"p", "q"}, map[string]int64{"n": 3}, 1e300, math.Inf(-1), complex(1, -2), uint8(7)}
	for _, format := range []string{
		"", "%v", "%d %s %q", "%#v %+v %T %p", "%x % x %# x %X", "%10.3f|%-8s|%08d", "%e %E %g %G %b", "%c %U %#U %o %O",
		"%[2]v %[1]v %[3]*.[4]*f", "%*d %.*f", "%!", "%", "%[9]d", "%[x]d", "%w %v", "%.500g %.500e %.500f",
		"%3$v", "%[1]v%[1]v%[1]v", "%-*d", "%t %t", "%s", "%ü %☺", "%z", "100%%",
	} {
		for i := 0; i <= len(args); i++ {
			checkPrintfBound(t, format, args[:i])
			checkPrintfBound(t, format, args[i:])
		}
	}
}

func checkPrintfBound(t *testing.T, format string, args []any) {
	t.Helper()
	got := len(fmt.Sprintf(format, args...))
	if b := printfBound(format, args, math.MaxInt32); b < got {
		t.Fatalf("printfBound(%q, %#v) = %d, fmt printed %d: %q", format, args, b, got, fmt.Sprintf(format, args...))
	}
}

// FuzzPrintfBound: the bound is never below what fmt prints.
//
//	go test -run - -fuzz FuzzPrintfBound -fuzztime 1m ./operators/rules/
func FuzzPrintfBound(f *testing.F) {
	f.Add("%v %d %s", "x", 1.5, int64(3), uint8(7))
	f.Add("%[2]*[1]d %#v %-10.3q", "héllo", -2e300, int64(-1), uint8(255))
	f.Add("%.*x %T %p %U", "\xff", 0.0, int64(1<<62), uint8(3))
	f.Fuzz(func(t *testing.T, format, s string, x float64, n int64, pick uint8) {
		all := []any{s, x, n, int(n % 1000), nil, true, map[string]any{s: []any{x, s, nil, map[string]any{"k": n}}},
			[]any{s, x}, []string{s}, map[string]int64{s: n}, complex(x, 1)}
		args := all[int(pick)%len(all):]
		args = args[:min(len(args), int(pick/16)+1)]
		checkPrintfBound(t, format, args)
	})
}
