package rules

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"

	"github.com/dwellhq/dwell/operators/internal/jsonx"
)

// Conditions are written in expr's language (github.com/expr-lang/expr), parsed and
// type-checked by expr against the environment declared below, with expr's node limit as the
// complexity bound. The checked tree is then compiled here into Go closures over Env: expr's
// own VM boxes every value in an interface and reads struct fields by reflection, which costs
// 2 allocations and ~200-370 ns per evaluation on our conditions; the closures cost tens of
// nanoseconds and allocate nothing. The subset compiled is documented in doc.go; anything
// outside it is a load error, never a silent fallback.

// The environment as expr's checker sees it. Only the types matter: evaluation reads Env.
type declEnv struct {
	Event   declEvent    `expr:"event"`
	Profile declProfile  `expr:"profile"`
	Visit   declActivity `expr:"visit"`
	Session declActivity `expr:"session"`
}

type declEvent struct {
	ID         string         `expr:"id"`
	Type       string         `expr:"type"`
	Time       int64          `expr:"time"`
	Source     string         `expr:"source"`
	Profile    string         `expr:"profile"`
	Session    string         `expr:"session"`
	Tags       []string       `expr:"tags"`
	Properties map[string]any `expr:"properties"`
	Traits     map[string]any `expr:"traits"`
	Late       bool           `expr:"late"`
	System     bool           `expr:"system"`
}

type declProfile struct {
	ID       string            `expr:"id"`
	Traits   map[string]string `expr:"traits"`
	Tags     []string          `expr:"tags"`
	Counters map[string]int64  `expr:"counters"`
}

type declActivity struct {
	Open          bool   `expr:"open"`
	ID            string `expr:"id"`
	StartedAt     int64  `expr:"started_at"`
	LastActivity  int64  `expr:"last_activity"`
	DurationMs    int64  `expr:"duration_ms"`
	EventCount    int64  `expr:"event_count"`
	PageViewCount int64  `expr:"page_view_count"`
	EntryURL      string `expr:"entry_url"`
	ExitURL       string `expr:"exit_url"`
}

// evalCtx is what a compiled condition reads.
type evalCtx struct {
	env *Env
	st  *ProfileState
	// budget is Limits.MaxConditionBytes, left what the evaluation under way has left of it.
	budget, left int
}

// examine takes n bytes from the budget of the evaluation under way: the operators whose work
// grows with the data they read call it before reading.
func (c *evalCtx) examine(n int) error {
	if c.left -= n; c.left < 0 {
		return &budgetError{what: "condition", unit: "bytes examined", n: c.budget}
	}
	return nil
}

type (
	boolFn func(c *evalCtx) (bool, error)
	// numFn and strFn report ok=false for a missing property.
	numFn func(c *evalCtx) (float64, bool, error)
	strFn func(c *evalCtx) (string, bool, error)
	anyFn func(c *evalCtx) (jval, error)
)

type vtype uint8

const (
	tBool vtype = iota
	tNum
	tStr
	tAny  // a property value, typed at run time
	tList // a list of strings (tags)
	tNil
)

// cval is a compiled sub-expression: exactly one of its functions is set, by type.
type cval struct {
	t vtype
	b boolFn
	n numFn
	s strFn
	a anyFn
	// lists: has and length
	has func(c *evalCtx, s string) (bool, error)
	ln  func(c *evalCtx) (int, error)
	// constant values (for `in` arrays and matches patterns)
	isConst bool
	cs      string
	cn      float64
	what    string // the source, for runtime error messages
}

// pathTable numbers the property paths that a config's conditions name; an Env caches each
// path's value in the slot of its number. It also numbers the paths' first names (the
// top-level properties they start at), so that one scan of an event's properties finds every
// top-level property any condition names (Env.scanProps).
type pathTable struct {
	idx   map[string]int
	paths [][]string
	// firsts are the distinct first names of paths (quoted: as JSON strings), slotFirst the
	// index in firsts of each path's first name, firstIdx the index of each first name.
	firsts    []string
	quoted    [][]byte
	slotFirst []int
	firstIdx  map[string]int
	// system says, per first name, whether a system event's properties can have it
	// (systemPropNames).
	system []bool
}

func (p *pathTable) slot(path []string) int {
	k := fmt.Sprint(path)
	if i, ok := p.idx[k]; ok {
		return i
	}
	if p.idx == nil {
		p.idx, p.firstIdx = map[string]int{}, map[string]int{}
	}
	f, ok := p.firstIdx[path[0]]
	if !ok {
		f = len(p.firsts)
		p.firstIdx[path[0]] = f
		p.firsts = append(p.firsts, path[0])
		p.quoted = append(p.quoted, jsonx.AppendQuoted(nil, path[0]))
		p.system = append(p.system, systemPropNames[path[0]])
	}
	p.idx[k] = len(p.paths)
	p.paths = append(p.paths, path)
	p.slotFirst = append(p.slotFirst, f)
	return len(p.paths) - 1
}

// first returns the index of the first name k, or -1.
func (p *pathTable) first(k string) int {
	if len(p.firsts) <= 8 {
		for i, f := range p.firsts {
			if f == k {
				return i
			}
		}
		return -1
	}
	if i, ok := p.firstIdx[k]; ok {
		return i
	}
	return -1
}

// condition is a compiled `when`.
type condition struct {
	src string
	fn  boolFn
}

// eval evaluates the condition with a budget of its own.
func (cd *condition) eval(c *evalCtx) (bool, error) {
	c.left = c.budget
	return cd.fn(c)
}

// condError is a load error of a condition, at a line and column of its source (1-based).
type condError struct {
	Line, Column int
	Msg          string
}

func (e *condError) Error() string { return e.Msg }

type compiler struct {
	paths    *pathTable
	maxNodes uint
	lines    []string // the YAML file, for error positions
	lim      *Limits  // the config's, for templates
}

func (cp *compiler) compile(src string) (*condition, error) {
	cfg := conf.CreateNew()
	expr.Env(declEnv{})(cfg)
	expr.AsBool()(cfg)
	expr.MaxNodes(cp.maxNodes)(cfg)
	cfg.Check()
	tree, err := checker.ParseCheck(src, cfg)
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			fe.Bind(file.NewSource(src))
			msg := strings.NewReplacer("type rules.declEvent", "event", "type rules.declProfile", "profile",
				"type rules.declActivity", "visit (and session)").Replace(fe.Message)
			return nil, &condError{Line: fe.Line, Column: fe.Column + 1, Msg: msg}
		}
		return nil, &condError{Msg: err.Error()}
	}
	v, err := cp.node(tree.Node)
	if err != nil {
		var ce *condError
		if errors.As(err, &ce) && ce.Line == 0 {
			ce.Line, ce.Column = lineCol(src, ce.Column-1)
		}
		return nil, err
	}
	if v.t == tAny {
		v = cp.truthy(v)
	}
	if v.t != tBool {
		return nil, &condError{Msg: "a condition must be a boolean"}
	}
	return &condition{src: src, fn: v.b}, nil
}

// lineCol converts a rune offset into src to a 1-based line and column.
func lineCol(src string, off int) (line, col int) {
	line, col = 1, 1
	i := 0
	for _, r := range src {
		if i == off {
			break
		}
		i++
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

// nodeErr is a compile error at n; its Line is 0 and its Column the rune offset + 1 until
// compile converts them.
func nodeErr(n ast.Node, format string, args ...any) error {
	loc := n.Location()
	return &condError{Line: 0, Column: loc.From + 1, Msg: fmt.Sprintf(format, args...)}
}

func (cp *compiler) node(n ast.Node) (cval, error) {
	switch n := n.(type) {
	case *ast.BoolNode:
		b := n.Value
		return cval{t: tBool, b: func(*evalCtx) (bool, error) { return b, nil }, isConst: true}, nil
	case *ast.IntegerNode:
		return constNum(float64(n.Value)), nil
	case *ast.FloatNode:
		return constNum(n.Value), nil
	case *ast.StringNode:
		s := n.Value
		return cval{t: tStr, s: func(*evalCtx) (string, bool, error) { return s, true, nil }, isConst: true, cs: s}, nil
	case *ast.NilNode:
		return cval{t: tNil, isConst: true}, nil
	case *ast.MemberNode, *ast.IdentifierNode:
		return cp.member(n)
	case *ast.UnaryNode:
		return cp.unary(n)
	case *ast.BinaryNode:
		return cp.binary(n)
	case *ast.BuiltinNode:
		if n.Name == "len" && len(n.Arguments) == 1 {
			a, err := cp.node(n.Arguments[0])
			if err != nil {
				return cval{}, err
			}
			switch a.t {
			case tStr, tAny:
				f, _ := asStr(a)
				return cval{t: tNum, n: func(c *evalCtx) (float64, bool, error) {
					s, ok, err := f(c)
					return float64(len(s)), ok, err
				}}, nil
			case tList:
				ln := a.ln
				return cval{t: tNum, n: func(c *evalCtx) (float64, bool, error) {
					n, err := ln(c)
					return float64(n), err == nil, err
				}}, nil
			}
		}
		return cval{}, nodeErr(n, "%s(...) is not supported in conditions", n.Name)
	case *ast.ConditionalNode:
		return cval{}, nodeErr(n, "conditional expressions are not supported in conditions")
	}
	return cval{}, nodeErr(n, "%s is not supported in conditions", ast.Dump(n))
}

func constNum(f float64) cval {
	return cval{t: tNum, n: func(*evalCtx) (float64, bool, error) { return f, true, nil }, isConst: true, cn: f}
}

// chain flattens a member access into its root identifier and constant names.
func chain(n ast.Node) (root string, names []string, ok bool) {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		return n.Value, nil, true
	case *ast.MemberNode:
		if n.Method {
			return "", nil, false
		}
		p, isStr := n.Property.(*ast.StringNode)
		if !isStr {
			return "", nil, false
		}
		root, names, ok = chain(n.Node)
		return root, append(names, p.Value), ok
	}
	return "", nil, false
}

// The fields' functions read the Env directly (not through a getter passed in: each level of
// function value is an indirect call on every evaluation).

// act returns the visit, or with sess the session.
func (e *Env) act(sess bool) *ActivityView {
	if sess {
		return &e.Session
	}
	return &e.Visit
}

func (cp *compiler) member(n ast.Node) (cval, error) {
	root, names, ok := chain(n)
	if !ok || len(names) == 0 {
		return cval{}, nodeErr(n, "only fields with constant names (event.type, profile.traits.plan) are supported in conditions")
	}
	what := root
	for _, s := range names {
		what += "." + s
	}
	v, err := cp.field(n, root, names)
	v.what = what
	return v, err
}

func (cp *compiler) field(n ast.Node, root string, names []string) (cval, error) {
	tooDeep := func() (cval, error) { return cval{}, nodeErr(n, "%s.%s has no fields", root, names[0]) }
	switch root {
	case "event":
		if names[0] == "properties" {
			if len(names) < 2 {
				return cval{}, nodeErr(n, "name a property: event.properties.NAME")
			}
			path := names[1:]
			slot, pt := cp.paths.slot(path), cp.paths
			return cval{t: tAny, a: func(c *evalCtx) (jval, error) {
				e, s := c.env, uint(slot)
				if e.propDone[s/64]&(1<<(s%64)) != 0 { // Env.prop, inlined by hand
					return e.props[s].v, nil
				}
				return e.loadProp(pt, slot), nil
			}}, nil
		}
		if names[0] == "traits" {
			// The event's own traits (what the producer knows of the profile, such as an
			// email), read from the raw JSON when the condition runs.
			if len(names) < 2 {
				return cval{}, nodeErr(n, "name a trait: event.traits.NAME")
			}
			path := names[1:]
			return cval{t: tAny, a: func(c *evalCtx) (jval, error) { return lookup(c.env.Event.Traits, path), nil }}, nil
		}
		if len(names) > 1 {
			return tooDeep()
		}
		switch names[0] {
		case "id":
			return cval{t: tStr, s: func(c *evalCtx) (string, bool, error) { return c.env.Event.ID, true, nil }}, nil
		case "type":
			return cval{t: tStr, s: func(c *evalCtx) (string, bool, error) { return c.env.Event.Type, true, nil }}, nil
		case "source":
			return cval{t: tStr, s: func(c *evalCtx) (string, bool, error) { return c.env.Event.Source, true, nil }}, nil
		case "profile":
			return cval{t: tStr, s: func(c *evalCtx) (string, bool, error) { return c.env.Event.Profile, true, nil }}, nil
		case "session":
			return cval{t: tStr, s: func(c *evalCtx) (string, bool, error) { return c.env.Event.Session, true, nil }}, nil
		case "time":
			return cval{t: tNum, n: func(c *evalCtx) (float64, bool, error) { return float64(c.env.Event.Time), true, nil }}, nil
		case "late":
			return cval{t: tBool, b: func(c *evalCtx) (bool, error) { return c.env.Event.Late, nil }}, nil
		case "system":
			return cval{t: tBool, b: func(c *evalCtx) (bool, error) { return c.env.Event.System, nil }}, nil
		case "tags":
			return cval{t: tList,
				has: func(c *evalCtx, s string) (bool, error) {
					if err := c.examine(len(c.env.Event.Tags)); err != nil {
						return false, err
					}
					return arrayHas(c.env.Event.Tags, s), nil
				},
				ln: func(c *evalCtx) (int, error) {
					if err := c.examine(len(c.env.Event.Tags)); err != nil {
						return 0, err
					}
					return arrayLen(c.env.Event.Tags), nil
				}}, nil
		}
	case "profile":
		switch names[0] {
		case "id":
			if len(names) > 1 {
				return tooDeep()
			}
			return cval{t: tStr, s: func(c *evalCtx) (string, bool, error) { return c.env.Key, true, nil }}, nil
		case "tags":
			if len(names) > 1 {
				return tooDeep()
			}
			return cval{t: tList, // bounded by Limits.MaxTags: nothing to charge
				has: func(c *evalCtx, s string) (bool, error) { return c.st.HasTag(s), nil },
				ln:  func(c *evalCtx) (int, error) { return len(c.st.Tags), nil }}, nil
		case "traits":
			if len(names) != 2 {
				return cval{}, nodeErr(n, "name a trait: profile.traits.NAME")
			}
			name := names[1]
			return cval{t: tStr, s: func(c *evalCtx) (string, bool, error) {
				v, _ := c.st.Trait(name) // unset is "", as in expr's maps
				return v, true, nil
			}}, nil
		case "counters":
			if len(names) != 2 {
				return cval{}, nodeErr(n, "name a counter: profile.counters.NAME")
			}
			name := names[1]
			return cval{t: tNum, n: func(c *evalCtx) (float64, bool, error) { return float64(c.st.Counter(name)), true, nil }}, nil
		}
	case "visit", "session":
		if len(names) > 1 {
			return tooDeep()
		}
		sess := root == "session"
		switch names[0] {
		case "open":
			return cval{t: tBool, b: func(c *evalCtx) (bool, error) { return c.env.act(sess).Open, nil }}, nil
		case "id":
			return cval{t: tStr, s: func(c *evalCtx) (string, bool, error) { return c.env.act(sess).ID, true, nil }}, nil
		case "started_at":
			return cval{t: tNum, n: func(c *evalCtx) (float64, bool, error) { return float64(c.env.act(sess).StartedAt), true, nil }}, nil
		case "last_activity":
			return cval{t: tNum, n: func(c *evalCtx) (float64, bool, error) { return float64(c.env.act(sess).LastActivity), true, nil }}, nil
		case "duration_ms":
			return cval{t: tNum, n: func(c *evalCtx) (float64, bool, error) {
				a := c.env.act(sess) // all zero when there is none
				return float64(a.LastActivity - a.StartedAt), true, nil
			}}, nil
		case "event_count":
			return cval{t: tNum, n: func(c *evalCtx) (float64, bool, error) { return float64(c.env.act(sess).EventCount), true, nil }}, nil
		case "page_view_count":
			return cval{t: tNum, n: func(c *evalCtx) (float64, bool, error) { return float64(c.env.act(sess).PageViewCount), true, nil }}, nil
		case "entry_url":
			return cval{t: tStr, s: func(c *evalCtx) (string, bool, error) { return c.env.act(sess).EntryURL, true, nil }}, nil
		case "exit_url":
			return cval{t: tStr, s: func(c *evalCtx) (string, bool, error) { return c.env.act(sess).ExitURL, true, nil }}, nil
		}
	}
	return cval{}, nodeErr(n, "unknown field %s.%s", root, names[0])
}

// truthy turns a property into a boolean: true and false as such, missing or null as false,
// anything else a runtime error.
func (cp *compiler) truthy(v cval) cval {
	a, what := v.a, v.what
	return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
		j, _ := a(c)
		switch j.k {
		case jBool:
			return j.b, nil
		case jMissing, jNull:
			return false, nil
		}
		return false, fmt.Errorf("%s is a %s, not a boolean", what, j.k)
	}}
}

// asNum makes a number of a property (missing and null: not ok; other kinds: an error).
func asNum(v cval) (numFn, bool) {
	switch v.t {
	case tNum:
		return v.n, true
	case tAny:
		a, what := v.a, v.what
		return func(c *evalCtx) (float64, bool, error) {
			j, _ := a(c)
			return jnum(j, what)
		}, true
	}
	return nil, false
}

// jnum makes a number of a property: missing and null are not ok, other kinds an error.
func jnum(j jval, what string) (float64, bool, error) {
	switch j.k {
	case jNum:
		return j.n, true, nil
	case jMissing, jNull:
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("%s is a %s, not a number", what, j.k)
}

func asStr(v cval) (strFn, bool) {
	switch v.t {
	case tStr:
		return v.s, true
	case tAny:
		a, what := v.a, v.what
		return func(c *evalCtx) (string, bool, error) {
			j, _ := a(c)
			switch j.k {
			case jStr:
				return j.s, true, nil
			case jMissing, jNull:
				return "", false, nil
			}
			return "", false, fmt.Errorf("%s is a %s, not a string", what, j.k)
		}, true
	}
	return nil, false
}

func asBool(cp *compiler, v cval) (boolFn, bool) {
	switch v.t {
	case tBool:
		return v.b, true
	case tAny:
		return cp.truthy(v).b, true
	}
	return nil, false
}

// constJval returns a constant number, string or nil as a property value.
func constJval(v cval) (jval, bool) {
	switch {
	case v.isConst && v.t == tNum:
		return jval{k: jNum, n: v.cn}, true
	case v.isConst && v.t == tStr:
		return jval{k: jStr, s: v.cs}, true
	case v.t == tNil:
		return jval{k: jNull}, true
	}
	return jval{}, false
}

// asAny turns a typed value into a property-like value, for equality with a property.
func asAny(v cval) anyFn {
	switch v.t {
	case tAny:
		return v.a
	case tNum:
		f := v.n
		return func(c *evalCtx) (jval, error) {
			n, ok, err := f(c)
			if !ok {
				return jval{}, err
			}
			return jval{k: jNum, n: n}, err
		}
	case tStr:
		f := v.s
		return func(c *evalCtx) (jval, error) {
			s, ok, err := f(c)
			if !ok {
				return jval{}, err
			}
			return jval{k: jStr, s: s}, err
		}
	case tBool:
		f := v.b
		return func(c *evalCtx) (jval, error) {
			b, err := f(c)
			return jval{k: jBool, b: b}, err
		}
	case tNil:
		return func(*evalCtx) (jval, error) { return jval{k: jNull}, nil }
	}
	return nil
}

func jequal(a, b jval) bool {
	an, bn := a.k == jMissing || a.k == jNull, b.k == jMissing || b.k == jNull
	if an || bn {
		return an && bn
	}
	if a.k != b.k {
		return false
	}
	switch a.k {
	case jBool:
		return a.b == b.b
	case jNum:
		return a.n == b.n
	case jStr:
		return a.s == b.s
	}
	return false // objects and arrays are never equal to anything
}

func (cp *compiler) unary(n *ast.UnaryNode) (cval, error) {
	v, err := cp.node(n.Node)
	if err != nil {
		return cval{}, err
	}
	switch n.Operator {
	case "!", "not":
		f, ok := asBool(cp, v)
		if !ok {
			return cval{}, nodeErr(n, "%s needs a boolean", n.Operator)
		}
		return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
			b, err := f(c)
			return !b, err
		}}, nil
	case "-", "+":
		f, ok := asNum(v)
		if !ok {
			return cval{}, nodeErr(n, "%s needs a number", n.Operator)
		}
		if n.Operator == "+" {
			return cval{t: tNum, n: f}, nil
		}
		if v.isConst {
			return constNum(-v.cn), nil
		}
		return cval{t: tNum, n: func(c *evalCtx) (float64, bool, error) {
			x, ok, err := f(c)
			return -x, ok, err
		}}, nil
	}
	return cval{}, nodeErr(n, "operator %s is not supported in conditions", n.Operator)
}

func (cp *compiler) binary(n *ast.BinaryNode) (cval, error) {
	l, err := cp.node(n.Left)
	if err != nil {
		return cval{}, err
	}
	if n.Operator == "in" {
		return cp.in(n, l)
	}
	r, err := cp.node(n.Right)
	if err != nil {
		return cval{}, err
	}
	switch n.Operator {
	case "&&", "and", "||", "or":
		lf, ok1 := asBool(cp, l)
		rf, ok2 := asBool(cp, r)
		if !ok1 || !ok2 {
			return cval{}, nodeErr(n, "%s needs booleans", n.Operator)
		}
		if n.Operator == "&&" || n.Operator == "and" {
			return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
				if b, err := lf(c); !b || err != nil {
					return false, err
				}
				return rf(c)
			}}, nil
		}
		return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
			if b, err := lf(c); b || err != nil {
				return b, err
			}
			return rf(c)
		}}, nil
	case "==", "!=":
		eq, err := cp.equal(n, l, r)
		if err != nil {
			return cval{}, err
		}
		if n.Operator == "!=" {
			return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
				b, err := eq(c)
				return !b && err == nil, err
			}}, nil
		}
		return cval{t: tBool, b: eq}, nil
	case "<", "<=", ">", ">=":
		return cp.order(n, l, r)
	case "contains", "startsWith", "endsWith":
		lf, ok1 := asStr(l)
		rf, ok2 := asStr(r)
		if !ok1 || !ok2 {
			return cval{}, nodeErr(n, "%s needs strings", n.Operator)
		}
		var op func(s, sub string) bool
		contains := n.Operator == "contains"
		switch n.Operator {
		case "contains":
			op = containsLinear
		case "startsWith":
			op = func(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }
		default:
			op = func(s, p string) bool { return len(s) >= len(p) && s[len(s)-len(p):] == p }
		}
		return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
			a, ok, err := lf(c)
			if !ok || err != nil {
				return false, err
			}
			b, ok, err := rf(c)
			if !ok || err != nil {
				return false, err
			}
			// contains reads both; the others compare at most the shorter one's bytes.
			n := min(len(a), len(b))
			if contains {
				n = len(a) + len(b)
			}
			if err := c.examine(n); err != nil {
				return false, err
			}
			return op(a, b), nil
		}}, nil
	case "matches":
		lf, ok := asStr(l)
		if !ok || !r.isConst || r.t != tStr {
			return cval{}, nodeErr(n, "matches needs a string and a constant pattern")
		}
		re, err := regexp.Compile(r.cs)
		if err != nil {
			return cval{}, nodeErr(n, "bad pattern: %v", err)
		}
		return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
			s, ok, err := lf(c)
			if !ok || err != nil {
				return false, err
			}
			if err := c.examine(len(s)); err != nil { // RE2: linear in s
				return false, err
			}
			return re.MatchString(s), nil
		}}, nil
	case "+", "-", "*", "/", "%":
		lf, ok1 := asNum(l)
		rf, ok2 := asNum(r)
		if !ok1 || !ok2 {
			return cval{}, nodeErr(n, "%s needs numbers", n.Operator)
		}
		var op func(a, b float64) float64
		switch n.Operator {
		case "+":
			op = func(a, b float64) float64 { return a + b }
		case "-":
			op = func(a, b float64) float64 { return a - b }
		case "*":
			op = func(a, b float64) float64 { return a * b }
		case "/":
			op = func(a, b float64) float64 { return a / b }
		default:
			op = math.Mod
		}
		return cval{t: tNum, n: func(c *evalCtx) (float64, bool, error) {
			a, ok, err := lf(c)
			if !ok || err != nil {
				return 0, false, err
			}
			b, ok, err := rf(c)
			if !ok || err != nil {
				return 0, false, err
			}
			return op(a, b), true, nil
		}}, nil
	}
	return cval{}, nodeErr(n, "operator %s is not supported in conditions", n.Operator)
}

// containsLinear is strings.Contains in time linear in len(s)+len(sub) at worst: Go's search
// is quadratic at worst (brute force up to 64 bytes of sub; above, Rabin-Karp, whose hash
// collisions can be made on purpose when the event holds both strings), so where that worst
// case would be large, it is Knuth-Morris-Pratt.
func containsLinear(s, sub string) bool {
	if len(sub) <= 64 || len(s) <= 1024 || len(sub) > len(s) {
		return strings.Contains(s, sub)
	}
	// fail[i]: the length of the longest proper border of sub[:i+1].
	fail := make([]int32, len(sub))
	for i, k := 1, int32(0); i < len(sub); i++ {
		for k > 0 && sub[i] != sub[k] {
			k = fail[k-1]
		}
		if sub[i] == sub[k] {
			k++
		}
		fail[i] = k
	}
	for i, k := 0, int32(0); i < len(s); i++ {
		for k > 0 && s[i] != sub[k] {
			k = fail[k-1]
		}
		if s[i] == sub[k] {
			k++
		}
		if int(k) == len(sub) {
			return true
		}
	}
	return false
}

func (cp *compiler) equal(n ast.Node, l, r cval) (boolFn, error) {
	if l.t == tAny || r.t == tAny || l.t == tNil || r.t == tNil {
		la, ra := asAny(l), asAny(r)
		if la == nil || ra == nil {
			return nil, nodeErr(n, "cannot compare these values")
		}
		if k, ok := constJval(r); ok && l.t == tAny { // event.properties.x == "y": one call
			return func(c *evalCtx) (bool, error) {
				a, err := la(c)
				return jequal(a, k), err
			}, nil
		}
		return func(c *evalCtx) (bool, error) {
			a, err := la(c)
			if err != nil {
				return false, err
			}
			b, err := ra(c)
			return jequal(a, b), err
		}, nil
	}
	if l.t != r.t {
		return nil, nodeErr(n, "cannot compare values of different types")
	}
	switch l.t {
	case tStr:
		lf, rf := l.s, r.s
		if r.isConst {
			k := r.cs
			return func(c *evalCtx) (bool, error) {
				a, ok, err := lf(c)
				return ok && a == k, err
			}, nil
		}
		return func(c *evalCtx) (bool, error) {
			a, ok1, err := lf(c)
			if err != nil {
				return false, err
			}
			b, ok2, err := rf(c)
			return ok1 == ok2 && a == b, err
		}, nil
	case tNum:
		lf, rf := l.n, r.n
		return func(c *evalCtx) (bool, error) {
			a, ok1, err := lf(c)
			if err != nil {
				return false, err
			}
			b, ok2, err := rf(c)
			return ok1 == ok2 && a == b, err
		}, nil
	case tBool:
		lf, rf := l.b, r.b
		return func(c *evalCtx) (bool, error) {
			a, err := lf(c)
			if err != nil {
				return false, err
			}
			b, err := rf(c)
			return a == b, err
		}, nil
	}
	return nil, nodeErr(n, "cannot compare lists")
}

// order compiles <, <=, >, >= over numbers or strings. A missing property compares false.
func (cp *compiler) order(n *ast.BinaryNode, l, r cval) (cval, error) {
	op := n.Operator
	if l.t == tStr || r.t == tStr {
		lf, ok1 := asStr(l)
		rf, ok2 := asStr(r)
		if !ok1 || !ok2 {
			return cval{}, nodeErr(n, "%s needs two numbers or two strings", op)
		}
		return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
			a, ok, err := lf(c)
			if !ok || err != nil {
				return false, err
			}
			b, ok, err := rf(c)
			if !ok || err != nil {
				return false, err
			}
			switch op {
			case "<":
				return a < b, nil
			case "<=":
				return a <= b, nil
			case ">":
				return a > b, nil
			}
			return a >= b, nil
		}}, nil
	}
	lf, ok1 := asNum(l)
	rf, ok2 := asNum(r)
	if !ok1 || !ok2 {
		return cval{}, nodeErr(n, "%s needs two numbers or two strings", op)
	}
	var cmp func(a, b float64) bool
	var opc uint8
	switch op {
	case "<":
		cmp, opc = func(a, b float64) bool { return a < b }, 0
	case "<=":
		cmp, opc = func(a, b float64) bool { return a <= b }, 1
	case ">":
		cmp, opc = func(a, b float64) bool { return a > b }, 2
	default:
		cmp, opc = func(a, b float64) bool { return a >= b }, 3
	}
	if r.isConst {
		// The common case (event.properties.total > 100, profile.counters.n < 3), with as few
		// calls through function values as can be: the operand's, none for the comparison.
		k := r.cn
		if l.t == tAny {
			a, what := l.a, l.what
			return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
				j, _ := a(c)
				if j.k != jNum {
					_, _, err := jnum(j, what)
					return false, err
				}
				return cmpConst(opc, j.n, k), nil
			}}, nil
		}
		return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
			a, ok, err := lf(c)
			return ok && err == nil && cmpConst(opc, a, k), err
		}}, nil
	}
	return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
		a, ok, err := lf(c)
		if !ok || err != nil {
			return false, err
		}
		b, ok, err := rf(c)
		if !ok || err != nil {
			return false, err
		}
		return cmp(a, b), nil
	}}, nil
}

// cmpConst compares a with k by the operator numbered by order: < <= > >=.
func cmpConst(op uint8, a, k float64) bool {
	switch op {
	case 0:
		return a < k
	case 1:
		return a <= k
	case 2:
		return a > k
	}
	return a >= k
}

// in compiles `x in [constants]`, `s in event.tags`, `s in profile.tags`.
func (cp *compiler) in(n *ast.BinaryNode, l cval) (cval, error) {
	if arr, ok := n.Right.(*ast.ArrayNode); ok {
		var strs []string
		var nums []float64
		for _, e := range arr.Nodes {
			v, err := cp.node(e)
			if err != nil {
				return cval{}, err
			}
			switch {
			case v.isConst && v.t == tStr:
				strs = append(strs, v.cs)
			case v.isConst && v.t == tNum:
				nums = append(nums, v.cn)
			default:
				return cval{}, nodeErr(e, "`in` needs a list of constants")
			}
		}
		if len(nums) > 0 && len(strs) > 0 {
			return cval{}, nodeErr(n, "`in` needs a list of strings or of numbers, not both")
		}
		if len(nums) > 0 {
			f, ok := asNum(l)
			if !ok {
				return cval{}, nodeErr(n, "`in` a list of numbers needs a number")
			}
			return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
				x, ok, err := f(c)
				if !ok || err != nil {
					return false, err
				}
				return slices.Contains(nums, x), nil
			}}, nil
		}
		f, ok := asStr(l)
		if !ok {
			return cval{}, nodeErr(n, "`in` a list of strings needs a string")
		}
		return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
			x, ok, err := f(c)
			if !ok || err != nil {
				return false, err
			}
			return slices.Contains(strs, x), nil
		}}, nil
	}
	r, err := cp.node(n.Right)
	if err != nil {
		return cval{}, err
	}
	if r.t != tList {
		return cval{}, nodeErr(n, "`in` needs a list of constants, event.tags or profile.tags")
	}
	f, ok := asStr(l)
	if !ok {
		return cval{}, nodeErr(n, "`in` tags needs a string")
	}
	has := r.has
	if l.isConst && l.t == tStr { // "vip" in profile.tags
		x := l.cs
		return cval{t: tBool, b: func(c *evalCtx) (bool, error) { return has(c, x) }}, nil
	}
	return cval{t: tBool, b: func(c *evalCtx) (bool, error) {
		x, ok, err := f(c)
		if !ok || err != nil {
			return false, err
		}
		return has(c, x)
	}}, nil
}
