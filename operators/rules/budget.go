package rules

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
)

// Budgets (issue 12). Every evaluation of a template or a condition has a budget (Limits):
// going over it is a rule error, so no rule can hold its partition, however it is written and
// whatever the event holds.
//
// Templates: text/template has no budget of its own, so after parsing, every template is
// instrumented (instrument), so that a step is about one command executed: the pipeline of
// every range is piped through rangeFunc, which charges, before the first iteration, the
// weight of the range's body (its commands, those of nested ranges aside, which charge their
// own) for each element, key or count the range goes over, and lets a range go over a whole
// number from the data like over an integer; an action calling stepFunc starts the body of
// every defined template and charges its weight at each call. The functions that build text
// (printf, print, json, join, upper, ...) charge a step per value of the data they format and
// per KiB they build; printf and join are refused beforehand when what they would build is
// over the byte budget (a printf width multiplies, a join separator too). The rendered text
// goes through a writer that fails past the byte budget. A template is executed only as a
// clone (tmpl.get) whose functions charge the clone's own counter: the Config's templates are
// shared by the engines of all partitions, which run on their own goroutines.
//
// What parsing can see is refused at load (checkTemplate): templates that call themselves,
// directly or through others, calls of templates that are not defined, ranges nested more than
// maxRangeNesting deep, ranges whose count is a literal such that the template always needs
// more steps or renders more bytes than its budget, and printf widths or precisions larger
// than the byte budget.
//
// Conditions have no loops: their closures run each node at most once, and the nodes are
// bounded at load (Options.MaxConditionNodes). What is charged is the data their operators
// read (contains, startsWith, endsWith, matches, `in` and len over event.tags): at most
// Limits.MaxConditionBytes per evaluation (evalCtx.examine).

// ErrBudget is wrapped by the errors of evaluations that went over their budget.
var ErrBudget = errors.New("rules: evaluation budget exceeded")

// budgetError is a template or condition evaluation over its budget of n units.
type budgetError struct {
	what, unit string
	n          int
}

func (e *budgetError) Error() string {
	return fmt.Sprintf("%s exceeded its budget of %d %s", e.what, e.n, e.unit)
}

func (e *budgetError) Is(target error) bool { return target == ErrBudget }

// maxRangeNesting bounds how deep ranges nest in a template (through template calls too).
const maxRangeNesting = 3

const (
	// stepFunc and rangeFunc are the functions instrument calls. Templates cannot name them:
	// they are not defined when a template is parsed, only in the clones that execute it.
	stepFunc  = "_dwell_step"
	rangeFunc = "_dwell_range"
)

// instrument makes every range of t charge the weight of its body for each element it goes
// over, and every call of a defined template the weight of its body.
func instrument(t *template.Template) {
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Root == nil {
			continue
		}
		w := weight(tt.Root) // before: what the checker weighed
		instrumentList(tt.Root)
		if tt.Name() != t.Name() {
			tt.Root.Nodes = append([]parse.Node{stepAction(w)}, tt.Root.Nodes...)
		}
	}
}

func instrumentList(l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *parse.IfNode:
			instrumentList(n.List)
			instrumentList(n.ElseList)
		case *parse.WithNode:
			instrumentList(n.List)
			instrumentList(n.ElseList)
		case *parse.RangeNode:
			w := weight(n.List)
			instrumentList(n.List)
			instrumentList(n.ElseList)
			n.Pipe.Cmds = append(n.Pipe.Cmds, rangeCmd(w))
		}
	}
}

// weight is what one execution of a list costs in steps, those of its ranges' bodies aside
// (they charge their own): 1, and 1 per command of its pipelines, through if and with (both
// branches) and template calls (the callee charges its own weight).
func weight(l *parse.ListNode) int {
	w := 1
	var walk func(l *parse.ListNode)
	pipe := func(p *parse.PipeNode) {
		if p != nil {
			w = satAdd(w, len(p.Cmds))
		}
	}
	walk = func(l *parse.ListNode) {
		if l == nil {
			return
		}
		for _, n := range l.Nodes {
			switch n := n.(type) {
			case *parse.ActionNode:
				pipe(n.Pipe)
			case *parse.IfNode:
				pipe(n.Pipe)
				walk(n.List)
				walk(n.ElseList)
			case *parse.WithNode:
				pipe(n.Pipe)
				walk(n.List)
				walk(n.ElseList)
			case *parse.RangeNode:
				pipe(n.Pipe)
				walk(n.ElseList)
			case *parse.TemplateNode:
				pipe(n.Pipe)
				w = satAdd(w, 1)
			}
		}
	}
	walk(l)
	return w
}

// stepAction and rangeCmd are the nodes instrument inserts, parsed from text. The step is a
// declaration, so that it prints nothing, of a variable no template can name.
func stepAction(w int) *parse.ActionNode {
	n := parseBudget(fmt.Sprintf("{{$s := %s %d}}", stepFunc, w)).(*parse.ActionNode)
	n.Pipe.Decl[0].Ident[0] = "$ dwell step"
	return n
}

func rangeCmd(w int) *parse.CommandNode {
	return parseBudget(fmt.Sprintf("{{. | %s %d}}", rangeFunc, w)).(*parse.ActionNode).Pipe.Cmds[1]
}

func parseBudget(text string) parse.Node {
	trees, err := parse.Parse("budget", text, "", "", map[string]any{stepFunc: true, rangeFunc: true}) // only the names count
	if err != nil {
		panic(err)
	}
	return trees["budget"].Root.Nodes[0]
}

// checkTemplate refuses what parsing shows about t: recursion, calls of undefined templates,
// ranges nested too deep, literal ranges and printf widths that always go over the budget.
func checkTemplate(t *template.Template, lim *Limits) error {
	c := &tmplChecker{t: t, lim: lim, costs: map[string]*tmplCost{}}
	// The main template first, then the others by name: the same error for the same text.
	names := []string{t.Name()}
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Name() != t.Name() {
			names = append(names, tt.Name())
		}
	}
	slices.Sort(names[1:])
	for _, name := range names {
		if c.t.Lookup(name).Tree == nil {
			continue // the main template of a text that only defines others
		}
		if _, err := c.cost(name, nil); err != nil {
			return err
		}
	}
	return nil
}

type tmplChecker struct {
	t     *template.Template
	lim   *Limits
	costs map[string]*tmplCost // per defined template, once computed
}

// tmplCost is what one execution of a list of nodes is sure to cost (lower bounds: the
// branches it may skip count for nothing) and how deep its ranges nest.
type tmplCost struct {
	steps, bytes int
	depth        int
}

// sat adds or multiplies costs, saturating far above any budget.
const satMax = math.MaxInt32

func satAdd(a, b int) int { return min(a+b, satMax) }
func satMul(a, b int) int {
	if a == 0 || b == 0 {
		return 0
	}
	if a > satMax/b {
		return satMax
	}
	return min(a*b, satMax)
}

// cost returns the cost of the defined template name; stack is the chain of calls that led
// to it (for the recursion check).
func (c *tmplChecker) cost(name string, stack []string) (*tmplCost, error) {
	if k, ok := c.costs[name]; ok {
		if k == nil {
			// Being computed: a cycle.
			i := len(stack) - 1
			for i > 0 && stack[i] != name {
				i--
			}
			chain := strings.Join(append(stack[i:], name), " -> ")
			return nil, fmt.Errorf("template %q calls itself (%s): templates must not recurse", name, chain)
		}
		return k, nil
	}
	tt := c.t.Lookup(name)
	if tt == nil || tt.Tree == nil {
		return nil, fmt.Errorf("template %q is not defined", name)
	}
	c.costs[name] = nil
	k, err := c.list(tt.Tree, tt.Root, append(stack, name))
	if err != nil {
		return nil, err
	}
	if name != c.t.Name() {
		k.steps = satAdd(k.steps, weight(tt.Root)) // charged at each call
	}
	c.costs[name] = &k
	return &k, nil
}

func (c *tmplChecker) list(tr *parse.Tree, l *parse.ListNode, stack []string) (tmplCost, error) {
	var k tmplCost
	if l == nil {
		return k, nil
	}
	for _, n := range l.Nodes {
		var nk tmplCost
		var err error
		switch n := n.(type) {
		case *parse.TextNode:
			nk.bytes = len(n.Text)
		case *parse.ActionNode:
			err = c.pipe(tr, n.Pipe)
		case *parse.IfNode:
			nk, err = c.branch(tr, &n.BranchNode, stack)
		case *parse.WithNode:
			nk, err = c.branch(tr, &n.BranchNode, stack)
		case *parse.RangeNode:
			nk, err = c.rangeCost(tr, n, stack)
		case *parse.TemplateNode:
			if err = c.pipe(tr, n.Pipe); err == nil {
				var callee *tmplCost
				if callee, err = c.cost(n.Name, stack); err == nil {
					nk = *callee
				}
			}
		}
		if err != nil {
			return k, err
		}
		k.steps, k.bytes, k.depth = satAdd(k.steps, nk.steps), satAdd(k.bytes, nk.bytes), max(k.depth, nk.depth)
	}
	return k, nil
}

// branch: if and with run one of their lists.
func (c *tmplChecker) branch(tr *parse.Tree, b *parse.BranchNode, stack []string) (tmplCost, error) {
	if err := c.pipe(tr, b.Pipe); err != nil {
		return tmplCost{}, err
	}
	a, err := c.list(tr, b.List, stack)
	if err != nil {
		return a, err
	}
	e, err := c.list(tr, b.ElseList, stack)
	if err != nil {
		return e, err
	}
	return tmplCost{steps: min(a.steps, e.steps), bytes: min(a.bytes, e.bytes), depth: max(a.depth, e.depth)}, nil
}

func (c *tmplChecker) rangeCost(tr *parse.Tree, n *parse.RangeNode, stack []string) (tmplCost, error) {
	if err := c.pipe(tr, n.Pipe); err != nil {
		return tmplCost{}, err
	}
	body, err := c.list(tr, n.List, stack)
	if err != nil {
		return body, err
	}
	els, err := c.list(tr, n.ElseList, stack)
	if err != nil {
		return els, err
	}
	k := tmplCost{depth: max(body.depth+1, els.depth)}
	if k.depth > maxRangeNesting {
		return k, fmt.Errorf("%s: ranges nested %d deep (at most %d): split the work, or range over one list",
			pos(tr, n), k.depth, maxRangeNesting)
	}
	count, literal := rangeLiteral(n.Pipe)
	w := weight(n.List)
	brk, cont := cuts(n.List)
	if cont {
		body = tmplCost{} // an iteration may skip the rest of the body
	}
	switch {
	case !literal: // a list or a number from the data: it may be empty
	case count <= 0:
		k.steps, k.bytes = els.steps, els.bytes
	case brk:
		k.steps = satMul(count, w) // charged before the first iteration, which may stop it
	default:
		k.steps, k.bytes = satMul(count, satAdd(body.steps, w)), satMul(count, body.bytes)
	}
	if k.steps > c.lim.MaxTemplateSteps {
		return k, fmt.Errorf("%s: range over %d always takes at least %d steps, over the template budget of %d (limits: max_template_steps): range over a list, or fewer times",
			pos(tr, n), count, k.steps, c.lim.MaxTemplateSteps)
	}
	if k.bytes > c.lim.MaxTemplateBytes {
		return k, fmt.Errorf("%s: range over %d always renders at least %d bytes, over the template budget of %d (limits: max_template_bytes): render less, or fewer times",
			pos(tr, n), count, k.bytes, c.lim.MaxTemplateBytes)
	}
	return k, nil
}

// rangeLiteral returns the count of a range over an integer literal ({{range 10}}).
func rangeLiteral(p *parse.PipeNode) (int, bool) {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return 0, false
	}
	num, ok := p.Cmds[0].Args[0].(*parse.NumberNode)
	if !ok || !num.IsInt {
		return 0, false
	}
	return int(min(num.Int64, satMax)), true
}

// cuts says whether a range body may end its range early ({{break}}) or skip the rest of an
// iteration ({{continue}}); those of a nested range are its own.
func cuts(l *parse.ListNode) (brk, cont bool) {
	if l == nil {
		return false, false
	}
	for _, n := range l.Nodes {
		var b, c bool
		switch n := n.(type) {
		case *parse.BreakNode:
			b = true
		case *parse.ContinueNode:
			c = true
		case *parse.IfNode:
			b1, c1 := cuts(n.List)
			b2, c2 := cuts(n.ElseList)
			b, c = b1 || b2, c1 || c2
		case *parse.WithNode:
			b1, c1 := cuts(n.List)
			b2, c2 := cuts(n.ElseList)
			b, c = b1 || b2, c1 || c2
		}
		brk, cont = brk || b, cont || c
	}
	return brk, cont
}

// pipe checks the printf calls of a pipeline whose format is a literal.
func (c *tmplChecker) pipe(tr *parse.Tree, p *parse.PipeNode) error {
	if p == nil {
		return nil
	}
	for _, cmd := range p.Cmds {
		for _, a := range cmd.Args {
			if sub, ok := a.(*parse.PipeNode); ok {
				if err := c.pipe(tr, sub); err != nil {
					return err
				}
			}
		}
		if len(cmd.Args) < 2 {
			continue
		}
		id, ok := cmd.Args[0].(*parse.IdentifierNode)
		if !ok || id.Ident != "printf" {
			continue
		}
		format, ok := cmd.Args[1].(*parse.StringNode)
		if !ok {
			continue
		}
		if w := maxPrintfNumber(format.Text); w > c.lim.MaxTemplateBytes {
			return fmt.Errorf("%s: printf width or precision %d is over the template budget of %d bytes (limits: max_template_bytes)",
				pos(tr, cmd), w, c.lim.MaxTemplateBytes)
		}
	}
	return nil
}

// maxPrintfNumber returns the largest width or precision written in a printf format.
func maxPrintfNumber(format string) int {
	m := 0
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		for i++; i < len(format); i++ {
			c := format[i]
			if c >= '0' && c <= '9' {
				n := 0
				for ; i < len(format) && format[i] >= '0' && format[i] <= '9'; i++ {
					n = min(n*10+int(format[i]-'0'), satMax)
				}
				m = max(m, n)
				i--
				continue
			}
			if !strings.ContainsRune("#+- .*[]", rune(c)) {
				break // the verb
			}
		}
	}
	return m
}

func pos(tr *parse.Tree, n parse.Node) string {
	loc, _ := tr.ErrorContext(n)
	return loc
}

// Execution: a template executes as a clone of the config's, taken from the template's pool
// (tmpl.get), whose functions charge the clone's own budget. Clones are not shared while they
// run, so partitions' workers rendering one template at once each have their own; a pool keeps
// about as many as render at once, not one per partition.

// budget is what the functions of one executable clone charge, for the evaluation under way.
type budget struct {
	steps int     // left
	lim   *Limits // the config's
}

// execTmpl is an executable clone of a template, with its budget.
type execTmpl struct {
	t *template.Template
	b budget
}

// get returns an executable clone of tp, from its pool or new; put it back with tp.pool.Put.
func (tp *tmpl) get() (*execTmpl, error) {
	if x, ok := tp.pool.Get().(*execTmpl); ok {
		return x, nil
	}
	c, err := tp.t.Clone()
	if err != nil {
		return nil, err
	}
	x := &execTmpl{t: c}
	f := templateFuncs(&x.b)
	f[stepFunc] = func(w int) (string, error) { return "", x.b.charge(w) }
	f[rangeFunc] = x.b.rangeOver
	c.Funcs(f)
	return x, nil
}

// errNoBudget is the error of a template executed outside render: never, but if it were, it
// would not run unbounded.
var errNoBudget = errors.New("template executed without a budget")

// charge takes n steps from the budget of the evaluation under way.
func (b *budget) charge(n int) error {
	if b == nil || b.lim == nil {
		return errNoBudget
	}
	if b.steps -= min(n, b.steps+1); b.steps < 0 {
		return &budgetError{what: "template", unit: "steps", n: b.lim.MaxTemplateSteps}
	}
	return nil
}

// chargeText charges a step per KiB (begun) of text a function built.
func (b *budget) chargeText(n int) error { return b.charge((n + 1023) >> 10) }

// chargeValues charges a step per value (element, key, field) of the data in args that a
// function formats: fmt and encoding/json spend far more on a value than on a byte.
func (b *budget) chargeValues(args ...any) error {
	if b == nil || b.lim == nil {
		return errNoBudget
	}
	n := 0
	for _, a := range args {
		n = satAdd(n, values(a, b.steps+1-n))
	}
	return b.charge(n)
}

// values counts the values in v, stopping past limit.
func values(v any, limit int) int {
	n := 0
	var walk func(v any)
	walk = func(v any) {
		if n > limit {
			return
		}
		switch x := v.(type) {
		case []any:
			n += len(x)
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			n += len(x)
			for _, e := range x {
				walk(e)
			}
		case []string:
			n += len(x)
		case map[string]string:
			n += len(x)
		case map[string]int64:
			n += len(x)
		}
	}
	walk(v)
	return n
}

// maxBytes is the byte budget.
func (b *budget) maxBytes() int { return b.lim.MaxTemplateBytes }

// overBytes is the error of a template that would render, or build, more than its budget.
func (b *budget) overBytes() error {
	return &budgetError{what: "template", unit: "bytes", n: b.lim.MaxTemplateBytes}
}

// rangeOver is rangeFunc: it charges w steps (the weight of the range's body) per element,
// key or count of what a range is about to go over (a range over a map sorts its keys
// first), whether or not the range then breaks early, and turns a whole number of float64
// (the numbers of decoded properties) into an int, so that a range goes over it like over an
// integer.
func (b *budget) rangeOver(w int, v any) (any, error) {
	n := 0
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		n = len(x)
	case []string:
		n = len(x)
	case int:
		n = x
	case float64:
		if x != math.Trunc(x) || math.Abs(x) >= 1<<53 {
			return v, nil // text/template refuses it
		}
		n = int(x)
		v = n
	default:
		switch rv := reflect.ValueOf(v); rv.Kind() {
		case reflect.Map, reflect.Slice, reflect.Array, reflect.String:
			n = rv.Len()
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			n = int(max(min(rv.Int(), satMax), 0))
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			n = int(min(rv.Uint(), satMax))
		}
	}
	return v, b.charge(satMul(max(n, 0), w))
}

// limitedBuffer is the writer of a template's text: it fails past the byte budget.
type limitedBuffer struct {
	bytes.Buffer
	budget *budget
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.budget.maxBytes() {
		return 0, b.budget.overBytes()
	}
	return b.Buffer.Write(p)
}
