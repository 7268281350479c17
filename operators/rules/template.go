package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"text/template/parse"
	"time"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/internal/jsonx"
)

// Templates are text/template over this data:
//
//	.event     id, type, time (Unix ms), source, profile, session, late, system, tags (list),
//	           properties and traits (the decoded objects)
//	.profile   id, traits (map), tags (list), counters (map)
//	.visit     open, id, started_at, last_activity, duration_ms, event_count, page_view_count,
//	.session   entry_url, exit_url
//	.params    a notify action's parameters, rendered first (in subject, body and recipients)
//	.rule      the rule's name
//
// with this function set (and text/template's own: and, or, not, len, index, print, printf,
// eq, ne, lt, le, gt, ge):
//
//	default FALLBACK X   X, or FALLBACK when X is missing, nil, "" or 0
//	upper S, lower S, trim S
//	truncate N S         the first N bytes of S (at a rune boundary)
//	join SEP LIST        the elements of LIST joined by SEP
//	json X               X as JSON
//	time MS              Unix ms as RFC 3339 in UTC (2026-01-02T15:04:05.000Z); years 0001 to 9999
//	duration MS          milliseconds as a Go duration (1h30m0s)
//
// A missing field renders as nothing; functions given a missing value receive nil (pipe it
// through default first: {{.event.properties.name | default "" | upper}}).
//
// A range goes over a list, a map, or a number N (0 to N-1): a literal, or a whole number of
// the data, properties included. Every evaluation has a budget of steps and of bytes
// (Limits; budget.go): going over it is an error of the rule, and what the template shows
// going over it (a literal range too large, ranges nested more than 3 deep, a printf width
// over the byte budget), recursion and calls of undefined templates are load errors.

// templateFuncs returns the function set, bound to the budget that the functions that build
// text charge (nil when parsing: the parsed templates are never executed, only their clones,
// tmpl.get).
func templateFuncs(bg *budget) template.FuncMap {
	text := func(f func(string) string) func(string) (string, error) {
		return func(s string) (string, error) {
			s = f(s)
			return s, bg.chargeText(len(s))
		}
	}
	texts := func(f func(...any) string) func(...any) (string, error) {
		return func(args ...any) (string, error) {
			if err := bg.chargeValues(args...); err != nil {
				return "", err
			}
			s := f(args...)
			return s, bg.chargeText(len(s))
		}
	}
	return template.FuncMap{
		"default": func(fallback, v any) any {
			switch x := v.(type) {
			case nil:
				return fallback
			case string:
				if x == "" {
					return fallback
				}
			case float64:
				if x == 0 {
					return fallback
				}
			case int64:
				if x == 0 {
					return fallback
				}
			case int:
				if x == 0 {
					return fallback
				}
			}
			return v
		},
		"upper": text(strings.ToUpper),
		"lower": text(strings.ToLower),
		"trim":  text(strings.TrimSpace),
		"truncate": func(n int, s string) string {
			if n < 0 || len(s) <= n {
				return s
			}
			for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
				n--
			}
			return s[:n]
		},
		"join": func(sep string, v any) (string, error) {
			var parts []string
			switch l := v.(type) {
			case []string:
				parts = l
			case []any:
				if err := bg.chargeValues(l); err != nil {
					return "", err
				}
				parts = make([]string, len(l))
				for i, x := range l {
					parts[i] = fmt.Sprint(x)
				}
			case nil:
				return "", nil
			default:
				return "", fmt.Errorf("join: %T is not a list", v)
			}
			// The separator repeats: refuse beforehand what would be over the budget.
			limit, n := bg.maxBytes(), 0
			for _, p := range parts {
				if n += len(p); n > limit {
					return "", bg.overBytes()
				}
			}
			if len(parts) > 1 && len(sep) > 0 && len(parts)-1 > (limit-n)/len(sep) {
				return "", bg.overBytes()
			}
			s := strings.Join(parts, sep)
			return s, bg.chargeText(len(s))
		},
		"json": func(v any) (string, error) {
			if err := bg.chargeValues(v); err != nil {
				return "", err
			}
			b, err := json.Marshal(v)
			if err != nil {
				return "", err
			}
			return string(b), bg.chargeText(len(b))
		},
		"time": func(v any) (string, error) {
			ms, err := toInt(v)
			if err != nil {
				return "", fmt.Errorf("time: %w", err)
			}
			if ms < minTemplateTime || ms > operators.MaxTime {
				return "", fmt.Errorf("time: %d ms is outside the years 0001 to 9999", ms)
			}
			return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00"), nil
		},
		"duration": func(v any) (string, error) {
			ms, err := toInt(v)
			if err != nil {
				return "", fmt.Errorf("duration: %w", err)
			}
			return (time.Duration(ms) * time.Millisecond).String(), nil
		},
		// text/template's own, charged; printf refused beforehand when its widths or its
		// arguments would make it build more than the budget.
		"printf": func(format string, args ...any) (string, error) {
			if printfBound(format, args, bg.maxBytes()) > bg.maxBytes() {
				return "", bg.overBytes()
			}
			if err := bg.chargeValues(args...); err != nil {
				return "", err
			}
			s := fmt.Sprintf(format, args...)
			return s, bg.chargeText(len(s))
		},
		"print":    texts(fmt.Sprint),
		"println":  texts(fmt.Sprintln),
		"html":     texts(template.HTMLEscaper),
		"js":       texts(template.JSEscaper),
		"urlquery": texts(template.URLQueryEscaper),
	}
}

// minTemplateTime is 0001-01-01T00:00:00Z: the time function writes four-digit years only.
const minTemplateTime = -62_135_596_800_000

// parseFuncs is the function set templates are parsed with.
var parseFuncs = templateFuncs(nil)

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int:
		return int64(x), nil
	case float64:
		return int64(x), nil
	}
	return 0, fmt.Errorf("%v is not a number", v)
}

// tmpl is a parsed template; a text without actions is kept as a constant.
type tmpl struct {
	src string
	t   *template.Template // nil: constant
	// need says which parts of the data it reads (see roots), so that rendering builds only
	// those; props: it reads the event's properties, which must be decoded for it.
	need  roots
	props bool
	// pool holds executable clones of t (*execTmpl; budget.go).
	pool sync.Pool
	// fast is set when the template is only text and plain field references
	// ({{.event.type}}, {{.profile.traits.plan}}): it is then rendered without text/template,
	// with the same result.
	fast []fastPart
}

// fastPart is text, or (path set) the value of a field. A property (event.properties.*) has
// the number of its path in the config's pathTable + 1 in slot (bindPropSlots), so that it is
// read from the Env's cache like the conditions' properties (0: looked up in the JSON).
type fastPart struct {
	text string
	path []string
	slot int
}

// bindPropSlots numbers, in pt, the property paths that the fast templates of rules read.
func bindPropSlots(rules []*Rule, pt *pathTable) {
	bind := func(t *tmpl) {
		if t == nil {
			return
		}
		for i := range t.fast {
			if p := &t.fast[i]; len(p.path) > 2 && p.path[0] == "event" && p.path[1] == "properties" {
				p.slot = pt.slot(p.path[2:]) + 1
			}
		}
	}
	for _, r := range rules {
		for _, a := range r.Actions {
			for _, t := range []*tmpl{a.key, a.value, a.subject, a.body, a.at} {
				bind(t)
			}
			for _, t := range a.to {
				bind(t)
			}
			for _, l := range [][]namedTmpl{a.props, a.params} {
				for _, n := range l {
					bind(n.t)
				}
			}
		}
	}
}

// roots is a set of the data's top-level names.
type roots uint8

const (
	rootEvent roots = 1 << iota
	rootProfile
	rootVisit
	rootSession
	rootParams
	rootRule
	rootAll roots = 1<<iota - 1
)

var rootNames = map[string]roots{"event": rootEvent, "profile": rootProfile, "visit": rootVisit,
	"session": rootSession, "params": rootParams, "rule": rootRule}

// parseTemplate parses a template, refuses what it can see going over the budgets of lim
// (checkTemplate) and instruments it (instrument).
func parseTemplate(name, src string, lim *Limits) (*tmpl, error) {
	if !strings.Contains(src, "{{") {
		return &tmpl{src: src}, nil
	}
	t, err := template.New(name).Funcs(parseFuncs).Option("missingkey=zero").Parse(src)
	if err != nil {
		return nil, err
	}
	if err := checkTemplate(t, lim); err != nil {
		return nil, err
	}
	tp := &tmpl{src: src, t: t}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			tp.walk(tt.Tree.Root)
		}
	}
	if len(t.Templates()) == 1 {
		tp.fast = fastParts(t.Tree.Root)
	}
	instrument(t)
	return tp, nil
}

// fastParts returns the parts of a template made only of text and actions that are one plain
// field ({{.a.b}}), each of a field fastField knows; nil otherwise.
func fastParts(root *parse.ListNode) []fastPart {
	var parts []fastPart
	for _, n := range root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			parts = append(parts, fastPart{text: string(n.Text)})
		case *parse.ActionNode:
			if len(n.Pipe.Decl) > 0 || len(n.Pipe.Cmds) != 1 || len(n.Pipe.Cmds[0].Args) != 1 {
				return nil
			}
			f, ok := n.Pipe.Cmds[0].Args[0].(*parse.FieldNode)
			if !ok || !fastKnown(f.Ident) {
				return nil
			}
			parts = append(parts, fastPart{path: f.Ident})
		default:
			return nil
		}
	}
	return parts
}

var activityFields = map[string]bool{"open": true, "id": true, "started_at": true, "last_activity": true,
	"duration_ms": true, "event_count": true, "page_view_count": true, "entry_url": true, "exit_url": true}

// fastKnown says whether fastField renders path exactly as text/template would over data().
func fastKnown(path []string) bool {
	switch {
	case len(path) == 1:
		return path[0] == "rule"
	case path[0] == "event":
		switch path[1] {
		case "id", "type", "time", "source", "profile", "session", "late", "system":
			return len(path) == 2
		case "properties", "traits":
			return len(path) >= 3
		}
	case path[0] == "profile":
		return len(path) == 2 && path[1] == "id" || len(path) == 3 && (path[1] == "traits" || path[1] == "counters")
	case path[0] == "visit" || path[0] == "session":
		return len(path) == 2 && activityFields[path[1]]
	case path[0] == "params":
		return len(path) == 2
	}
	return false
}

// paramSet is a notify action's params as rendered so far: vals[i] is the value of names[i].
type paramSet struct {
	names []namedTmpl
	vals  []string
}

func (p *paramSet) get(name string) string {
	if p != nil {
		for i, v := range p.vals {
			if p.names[i].name == name {
				return v
			}
		}
	}
	return ""
}

// asMap returns the params as text/template sees them (nil: none).
func (p *paramSet) asMap() map[string]string {
	if p == nil {
		return nil
	}
	m := make(map[string]string, len(p.vals))
	for i, v := range p.vals {
		m[p.names[i].name] = v
	}
	return m
}

// fastField appends the text of a field; ok is false when only text/template can render it
// (a property that is an object or an array).
func (r *run) fastField(b []byte, p *fastPart, params *paramSet) (_ []byte, ok bool) {
	env, path := r.env, p.path
	switch path[0] {
	case "rule":
		return append(b, r.rule...), true
	case "event":
		ev := &env.Event
		switch path[1] {
		case "id":
			return append(b, ev.ID...), true
		case "type":
			return append(b, ev.Type...), true
		case "source":
			return append(b, ev.Source...), true
		case "profile":
			return append(b, ev.Profile...), true
		case "session":
			return append(b, ev.Session...), true
		case "time":
			return strconv.AppendInt(b, ev.Time, 10), true
		case "late":
			return strconv.AppendBool(b, ev.Late), true
		case "system":
			return strconv.AppendBool(b, ev.System), true
		}
		var v jval
		if path[1] == "traits" {
			v = lookup(ev.Traits, path[2:])
		} else if p.slot > 0 && r.paths != nil && p.slot <= len(r.paths.paths) {
			v = env.prop(r.paths, p.slot-1)
		} else {
			env.loadSystemProps()
			v = lookup(ev.Properties, path[2:])
		}
		switch v.k {
		case jStr:
			return append(b, v.s...), true
		case jNum:
			return strconv.AppendFloat(b, v.n, 'g', -1, 64), true
		case jBool:
			return strconv.AppendBool(b, v.b), true
		case jMissing, jNull:
			return b, true
		}
		return b, false
	case "profile":
		switch path[1] {
		case "id":
			return append(b, env.Key...), true
		case "traits":
			v, _ := r.st.Trait(path[2])
			return append(b, v...), true
		}
		return strconv.AppendInt(b, r.st.Counter(path[2]), 10), true
	case "params":
		return append(b, params.get(path[1])...), true
	}
	a := &env.Visit
	if path[0] == "session" {
		a = &env.Session
	}
	switch path[1] {
	case "open":
		return strconv.AppendBool(b, a.Open), true
	case "id":
		return append(b, a.ID...), true
	case "started_at":
		return strconv.AppendInt(b, a.StartedAt, 10), true
	case "last_activity":
		return strconv.AppendInt(b, a.LastActivity, 10), true
	case "duration_ms":
		return strconv.AppendInt(b, a.LastActivity-a.StartedAt, 10), true
	case "event_count":
		return strconv.AppendInt(b, a.EventCount, 10), true
	case "page_view_count":
		return strconv.AppendInt(b, a.PageViewCount, 10), true
	case "entry_url":
		return append(b, a.EntryURL...), true
	}
	return append(b, a.ExitURL...), true
}

// renderFast renders a template of fastParts onto the Outcome's buffer, returning a view of
// it; ok is false when it must go the slow way.
func (r *run) renderFast(t *tmpl, params *paramSet) (string, bool) {
	b := r.out.buf
	start := len(b)
	for i := range t.fast {
		p := &t.fast[i]
		if p.path == nil {
			b = append(b, p.text...)
			continue
		}
		var ok bool
		if b, ok = r.fastField(b, p, params); !ok {
			r.out.buf = b[:start]
			return "", false
		}
	}
	if len(b)-start > r.lim.MaxTemplateBytes {
		r.out.buf = b[:start]
		return "", false // the slow way reports the error
	}
	r.out.buf = b
	return jsonx.String(b[start:]), true
}

// walk records which roots the template reads: the first name of each field chain (.event.type
// reads event; $.profile.id reads profile). A bare dot ({{.}}, json .) or $ reads everything.
// Inside range and with the dot changes; the fields there are relative to a root already
// recorded (or to everything), so recording them too is harmless.
func (tp *tmpl) walk(n parse.Node) {
	if n == nil || tp.need == rootAll && tp.props {
		return
	}
	field := func(ident []string) {
		if len(ident) == 0 {
			tp.need, tp.props = rootAll, true
			return
		}
		tp.need |= rootNames[ident[0]]
		if ident[0] == "event" && (len(ident) == 1 || ident[1] == "properties") {
			tp.props = true
		}
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n != nil {
			for _, c := range n.Nodes {
				tp.walk(c)
			}
		}
	case *parse.ActionNode:
		tp.walk(n.Pipe)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, d := range n.Decl {
			tp.walk(d)
		}
		for _, c := range n.Cmds {
			tp.walk(c)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			tp.walk(a)
		}
	case *parse.FieldNode:
		field(n.Ident)
	case *parse.VariableNode:
		if n.Ident[0] == "$" {
			field(n.Ident[1:])
		}
	case *parse.DotNode:
		field(nil)
	case *parse.ChainNode:
		tp.walk(n.Node)
		tp.need, tp.props = rootAll, true // (.x).y: give it everything
	case *parse.IfNode:
		tp.walk(n.Pipe)
		tp.walk(n.List)
		tp.walk(n.ElseList)
	case *parse.RangeNode:
		tp.walk(n.Pipe)
		tp.walk(n.List)
		tp.walk(n.ElseList)
	case *parse.WithNode:
		tp.walk(n.Pipe)
		tp.walk(n.List)
		tp.walk(n.ElseList)
	case *parse.TemplateNode:
		tp.walk(n.Pipe)
		tp.need, tp.props = rootAll, true // {{template "x" .}}: whatever it reads
	}
}

// render executes t over the data of r's current event. The result is valid until the next
// Apply with r's Outcome (it may be a view of the Outcome's buffer).
func (r *run) render(t *tmpl, params *paramSet) (string, error) {
	if t.t == nil {
		return t.src, nil
	}
	if t.fast != nil && !r.slow {
		if s, ok := r.renderFast(t, params); ok {
			return s, nil
		}
	}
	data, err := r.data(t, params)
	if err != nil {
		return "", err
	}
	x, err := t.get()
	if err != nil {
		return "", err
	}
	x.b = budget{steps: r.lim.MaxTemplateSteps, lim: r.lim}
	b := &r.buf
	b.Reset()
	b.budget = &x.b
	err = x.t.Execute(b, data)
	b.budget, x.b = nil, budget{}
	t.pool.Put(x)
	if err != nil {
		var be *budgetError
		if errors.As(err, &be) {
			return "", be // the budget, without text/template's context
		}
		return "", err
	}
	// A missing map key renders as "<no value>"; like Helm, render it as nothing.
	out := b.String()
	if strings.Contains(out, "<no value>") {
		out = strings.ReplaceAll(out, "<no value>", "")
	}
	return out, nil
}

// data returns the data t needs. It is built once per event, part by part as templates need
// the parts; the profile part again after the state changed.
func (r *run) data(t *tmpl, params *paramSet) (map[string]any, error) {
	env, st := r.env, r.st
	if r.tdata == nil {
		r.tdata = make(map[string]any, 6)
		r.tdata["rule"] = r.rule
	}
	d := r.tdata
	need := t.need &^ r.built
	if r.stateGen != r.builtGen && t.need&rootProfile != 0 {
		need |= rootProfile
	}
	if need&rootEvent != 0 {
		d["event"] = map[string]any{
			"id": env.Event.ID, "type": env.Event.Type, "time": env.Event.Time, "source": env.Event.Source,
			"profile": env.Event.Profile, "session": env.Event.Session, "late": env.Event.Late, "system": env.Event.System,
			"tags": jsonStrings(env.Event.Tags),
		}
		if len(env.Event.Traits) > 0 {
			var traits map[string]any
			if err := json.Unmarshal(env.Event.Traits, &traits); err != nil {
				return nil, fmt.Errorf("event traits: %w", err)
			}
			d["event"].(map[string]any)["traits"] = traits
		}
	}
	if t.props && !r.propsDone {
		env.loadSystemProps()
		if len(env.Event.Properties) > 0 {
			if err := json.Unmarshal(env.Event.Properties, &r.props); err != nil {
				return nil, fmt.Errorf("event properties: %w", err)
			}
		}
		r.propsDone = true
		d["event"].(map[string]any)["properties"] = r.props
	}
	if need&rootProfile != 0 {
		traits := make(map[string]string, len(st.Traits))
		for _, t := range st.Traits {
			traits[t.Name] = t.Value
		}
		counters := make(map[string]int64, len(st.Counters))
		for _, c := range st.Counters {
			counters[c.Name] = c.Value
		}
		d["profile"] = map[string]any{"id": env.Key, "traits": traits, "tags": slices.Clone(st.Tags), "counters": counters}
		r.builtGen = r.stateGen
	}
	if need&rootVisit != 0 {
		d["visit"] = activityData(&env.Visit)
	}
	if need&rootSession != 0 {
		d["session"] = activityData(&env.Session)
	}
	r.built |= need
	d["rule"] = r.rule
	if params != nil {
		d["params"] = params.asMap()
	} else {
		delete(d, "params")
	}
	return d, nil
}

func jsonStrings(raw []byte) []string {
	if len(raw) == 0 {
		return nil
	}
	var l []string
	_ = json.Unmarshal(raw, &l)
	return l
}

func activityData(a *ActivityView) map[string]any {
	d := a.LastActivity - a.StartedAt // all zero when there is none
	return map[string]any{
		"open": a.Open, "id": a.ID, "started_at": a.StartedAt, "last_activity": a.LastActivity, "duration_ms": d,
		"event_count": a.EventCount, "page_view_count": a.PageViewCount, "entry_url": a.EntryURL, "exit_url": a.ExitURL,
	}
}
