package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// The fuzz tests keep their corpora in testdata/fuzz. Run one with, for example:
//
//	go test -run - -fuzz FuzzLoadRules -fuzztime 30s ./operators/rules/

// FuzzLoadRules: loading never panics; a loaded config runs an event without panicking; an
// error is a *LoadError.
func FuzzLoadRules(f *testing.F) {
	f.Add([]byte("rules:\n  - name: a\n    on: x\n    actions: [{tag: t}]\n"))
	f.Add([]byte("rules:\n  - name: a\n    on: '*'\n    when: event.properties.a.b > 1 || profile.traits.x == \"y\"\n    actions:\n      - set_trait: {name: n, value: \"{{.event.type}}\"}\n"))
	f.Add([]byte(benchRules(6)))
	f.Add([]byte("limits: {max_tags: 1}\nrules: []\n"))
	// Hostile: budgets (issue 12).
	f.Add([]byte("rules:\n  - name: a\n    on: x\n    actions:\n      - set_trait: {name: n, value: \"{{range 1000000000}}{{end}}\"}\n"))
	f.Add([]byte("limits: {max_template_steps: 5}\nrules:\n  - name: a\n    on: x\n    actions:\n      - set_trait: {name: n, value: \"{{range .event.time}}{{end}}\"}\n"))
	f.Add([]byte("rules:\n  - name: a\n    on: x\n    when: event.properties.name contains event.properties.sku\n    actions: [{tag: t}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Load(data, Options{MaxConditionNodes: 50})
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error %v is a %T, not a *LoadError", err, err)
			}
			return
		}
		env, st := benchEnv()
		var out Outcome
		eng := NewEngine(cfg, nil)
		for _, r := range cfg.Rules {
			for _, typ := range r.On {
				env.Event.Type = typ
				eng.Apply(env, st, &out)
			}
		}
		enc := st.AppendEncode(nil)
		var back ProfileState
		if err := back.Decode(enc); err != nil {
			t.Fatalf("state after rules does not decode: %v", err)
		}
	})
}

// FuzzTemplate: parsing and rendering a template never panics, and renders are bounded (in
// size, and in time by the budgets: a template that would run on is over its budget).
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"plain", "{{.event.type}}", "{{.event.properties.total | default 0}}",
		"{{json .profile.traits}} {{time .event.time}} {{duration 90000}}",
		"{{range .profile.tags}}{{.}},{{end}}", "{{truncate 3 .event.id}}", "{{join \",\" .profile.tags}}",
		"{{upper (lower (trim .event.source))}}", "{{.params.p1}}{{if .event.late}}late{{end}}",
		"cart of {{.profile.id}}: {{.event.properties.total}} {{.event.properties.nested}} {{.visit.duration_ms}}",
		"{{.event.properties.name}}{{.profile.traits.email}}{{.profile.counters.purchases}}{{.session.open}}{{.rule}}",
	} {
		f.Add(s, []byte(`{"total": 12.5, "name": "x", "nested": {"a": [1, 2]}}`))
	}
	// Hostile templates (issue 12): refused when parsed, or over their budget when rendered.
	for _, c := range [][2]string{
		{"{{range 1000000000}}{{end}}", `{}`},
		{"{{range 10000}}{{range 10000}}{{end}}{{end}}", `{}`},
		{`{{define "x"}}{{template "x" .}}{{end}}{{template "x" .}}`, `{}`},
		{`{{printf "%999999999d" 1}}`, `{}`},
		{"{{range .event.properties.n}}x{{end}}", `{"n": 1000000000}`},
		{"{{range .event.properties.l}}{{range $.event.properties.l}}x{{end}}{{end}}", `{"l": [` + strings.Repeat("1,", 2000) + `1]}`},
		{"{{printf .event.properties.f 1}}", `{"f": "%9999999d"}`},
		{"{{join .event.properties.f .event.properties.l}}", `{"f": "----------------", "l": [` + strings.Repeat("1,", 5000) + `1]}`},
		{"{{range .event.time}}{{end}}", `{}`},
	} {
		f.Add(c[0], []byte(c[1]))
	}
	f.Fuzz(func(t *testing.T, src string, props []byte) {
		tp, err := parseTemplate("f", src, &defaultLimits)
		if err != nil {
			return
		}
		env, st := benchEnv()
		env.Event.Properties = props
		eng := NewEngine(&Config{}, nil)
		r := &eng.run
		*r = run{env: env, st: st, out: &Outcome{}, lim: &defaultLimits, rule: "f", ctx: evalCtx{env: env, st: st}}
		s, err := r.render(tp, &paramSet{names: []namedTmpl{{name: "p1"}}, vals: []string{"v"}})
		if err == nil && len(s) > defaultLimits.MaxTemplateBytes {
			t.Fatalf("rendered %d bytes", len(s))
		}
		// The fast path renders exactly what text/template renders, for properties as Env
		// promises them: a valid JSON object (the decoder guarantees it).
		if tp.fast != nil && json.Valid(props) && bytes.HasPrefix(bytes.TrimSpace(props), []byte("{")) {
			r.slow = true
			slow, serr := r.render(tp, &paramSet{names: []namedTmpl{{name: "p1"}}, vals: []string{"v"}})
			r.slow = false
			if (err == nil) != (serr == nil) || s != slow {
				t.Fatalf("%q: fast %q (%v), text/template %q (%v)", src, s, err, slow, serr)
			}
		}
		// Properties read through the Env's cache (as in a loaded config) render the same.
		if tp.fast != nil {
			var pt pathTable
			bindPropSlots([]*Rule{{Actions: []*Action{{value: tp}}}}, &pt)
			env.ensureSlots(&pt)
			r.paths = &pt
			cached, cerr := r.render(tp, &paramSet{names: []namedTmpl{{name: "p1"}}, vals: []string{"v"}})
			r.paths = nil
			if (err == nil) != (cerr == nil) || s != cached {
				t.Fatalf("%q: lookup %q (%v), cached %q (%v)", src, s, err, cached, cerr)
			}
		}
		// Rendered text goes into records through appendJSONString: it must round-trip.
		for _, x := range []string{s, src} {
			var back string
			if err := json.Unmarshal(appendJSONString(nil, x), &back); err != nil {
				t.Fatalf("appendJSONString(%q) is not JSON: %v", x, err)
			}
			if utf8.ValidString(x) && back != x {
				t.Fatalf("appendJSONString(%q) reads back as %q", x, back)
			}
		}
	})
}

// FuzzDecodeProfileState: decoding never panics, and whatever decodes encodes back to the same
// bytes (the encoding is canonical).
func FuzzDecodeProfileState(f *testing.F) {
	full := &ProfileState{
		Traits:   []Trait{{"email", "a@example.com"}, {"plan", "pro"}},
		Tags:     []string{"new", "vip"},
		Counters: []Counter{{"purchases", 3}, {"refunds", -1}},
		Timers: []Timer{
			{ID: [16]byte{1, 2, 3}, Name: "cart", Type: "cart-abandoned", Deadline: 1_767_229_200_000, Cause: "e1", Data: []byte(`{"sku":"a"}`)},
			{ID: [16]byte{4}, Name: "remind", Type: "reminder", Deadline: 1_767_300_000_000, Cause: "e2"},
		},
	}
	f.Add(full.AppendEncode(nil))
	f.Add((&ProfileState{}).AppendEncode(nil))
	f.Add((&ProfileState{Tags: []string{"x"}}).AppendEncode(nil))
	f.Add([]byte{})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		var st ProfileState
		if err := st.Decode(b); err != nil {
			if !st.Empty() {
				t.Fatal("a failed decode left state behind")
			}
			return
		}
		if got := st.AppendEncode(nil); !bytes.Equal(got, b) {
			t.Fatalf("decoded state encodes to %x, not %x", got, b)
		}
	})
}

// FuzzPropScan: the one-pass scan behind Env.prop reads, for each of a few paths (dot-separated
// in paths, one per line), exactly what lookup reads, on any bytes.
func FuzzPropScan(f *testing.F) {
	f.Add([]byte(`{"total": 12.5, "name": "x", "nested": {"a": [1, 2]}, "n\u0061me": 1}`), "total\nname\nnested.a\nmissing")
	f.Add([]byte(`{"a": 1, "a": 2, "b": "\"}"}`), "a\nb\nb.c")
	f.Add([]byte(`{"a": {"b": {"c": -0.5e-3}}}`), "a.b.c\na.b\na")
	f.Fuzz(func(t *testing.T, props []byte, paths string) {
		var pt pathTable
		for _, p := range strings.Split(paths, "\n") {
			if p != "" {
				pt.slot(strings.Split(p, "."))
			}
		}
		checkPropScan(t, &pt, props)
	})
}
