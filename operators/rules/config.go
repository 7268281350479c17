package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/dwellhq/dwell/operators"
)

// Config is a loaded, compiled rule set. It is immutable once Load returns it, so one Config
// is shared by every partition's Engine, and a new version replaces it whole: a config that
// fails to load never replaces the one running.
type Config struct {
	// Version identifies the config (the file's `version`, or what Load was given).
	Version string
	// Limits bound each key's ProfileState.
	Limits Limits
	// Rules in evaluation order: priority descending, then name ascending.
	Rules []*Rule
	// DeadLetterErrors: an event whose rules failed is also dead-lettered (file key
	// `on_error: dead-letter`; the default, `log`, only logs it as error).
	DeadLetterErrors bool
	// Registry is the file's `registry` section (same form as a registry file), nil when it
	// has none: rules and registry in one file are one version, loaded and replaced together.
	Registry *Registry
	// Jobs are the file's scheduled jobs (`jobs:`), by name.
	Jobs []*Job

	exact    map[string][]int32 // event type -> rules with that exact type in `on`, in order
	wildcard []int32            // rules with a wildcard pattern in `on`, in order
	paths    pathTable          // property paths named by conditions
}

// Rule is one loaded rule.
type Rule struct {
	Name     string
	On       []string // event types; '*' matches any run of characters
	Source   []string // when set, the event's source must be one of these
	When     string   // the condition's source; empty means always
	Priority int
	Enabled  bool
	// Late: the rule also runs on late events (behind the watermark); others skip them.
	Late    bool
	Actions []*Action

	cond  *condition
	exact []string // the patterns of On without wildcards
	globs []string // the patterns with
}

// ActionKind names an action.
type ActionKind uint8

const (
	ActEmit ActionKind = iota
	ActNotify
	ActSetTrait
	ActTag
	ActUntag
	ActIncrement
	ActSchedule
	ActCancel
	ActRoute
	ActStop
)

var actionNames = [...]string{"emit", "notify", "set_trait", "tag", "untag", "increment", "schedule", "cancel", "route", "stop"}

func (k ActionKind) String() string { return actionNames[k] }

// Action is one loaded action. Which fields are set depends on Kind; see doc.go for the YAML.
type Action struct {
	Kind ActionKind
	// emit: Type, Topic or Queue, Key, Props. notify: Channel, To, Subject, Body, Params,
	// Queue. set_trait: Name, Value. tag, untag: Tags. increment: Name, By. schedule: Name,
	// Type, After or At, Props. cancel: Name. route: Queue.
	Type, Topic, Queue, Channel, Name string
	Tags                              []string
	By                                int64
	After                             time.Duration

	key, value, subject, body, at *tmpl
	to                            []*tmpl
	props, params                 []namedTmpl // sorted by name
}

type namedTmpl struct {
	name string
	t    *tmpl
}

// Options tune Load. The zero value is the defaults.
type Options struct {
	// Version is used when the file has no `version`. Default "unversioned".
	Version string
	// MaxConditionNodes bounds the size of one condition (expr's node limit). Default 200.
	MaxConditionNodes uint
	// MaxRules bounds the rules of one config. Default 10000.
	MaxRules int
}

// LoadError is a load failure at a position in the YAML: Rule names the rule (Type the
// registry's event type; both empty for the file itself), Line and Column are 1-based (0 when
// unknown).
type LoadError struct {
	Rule         string
	Job          string // the scheduled job (jobs:)
	Type         string // registry files: the event type
	Line, Column int
	Msg          string
	// Registry labels the error registry: rather than rules:, for callers that load a
	// registry file on its own (dwell registry).
	Registry bool
}

func (e *LoadError) Error() string {
	var b strings.Builder
	if e.Registry {
		b.WriteString("registry: ")
	} else {
		b.WriteString("rules: ")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d, column %d: ", e.Line, e.Column)
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", e.Rule)
	}
	if e.Job != "" {
		fmt.Fprintf(&b, "job %q: ", e.Job)
	}
	if e.Type != "" {
		fmt.Fprintf(&b, "type %q: ", e.Type)
	}
	b.WriteString(e.Msg)
	return b.String()
}

func errAt(n *yaml.Node, rule, format string, args ...any) error {
	e := &LoadError{Rule: rule, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// Load parses and compiles a rules file:
//
//	version: "2026-11-23.1"        # optional
//	on_error: log                  # or dead-letter
//	registry: {...}                # optional: the event registry (see LoadRegistry)
//	limits: {max_traits: 64, max_tags: 64, max_counters: 64, max_timers: 16, max_value_bytes: 1024,
//	         max_template_steps: 100000, max_template_bytes: 65536, max_condition_bytes: 16777216}
//	rules:
//	  - name: cart-reminder
//	    on: [add-to-cart]
//	    when: event.properties.total > 0
//	    actions:
//	      - schedule: {name: cart, type: cart-abandoned, after: 1h}
//
// Every error is a *LoadError naming the rule and the position.
func Load(data []byte, opt Options) (*Config, error) {
	if opt.Version == "" {
		opt.Version = "unversioned"
	}
	if opt.MaxConditionNodes == 0 {
		opt.MaxConditionNodes = 200
	}
	if opt.MaxRules == 0 {
		opt.MaxRules = 10000
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &LoadError{Msg: "empty file"}
		}
		return nil, yamlError(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, errAt(root, "", "the file must be a mapping with a rules list")
	}
	cfg := &Config{Version: opt.Version, exact: map[string][]int32{}}
	// The limits first, wherever they are in the file: templates are checked against their
	// budgets as they load.
	for i := 0; i+1 < len(root.Content); i += 2 {
		if v := root.Content[i+1]; root.Content[i].Value == "limits" {
			if err := decodeStrict(v, &cfg.Limits); err != nil {
				return nil, errAt(v, "", "limits: %v", err)
			}
			if err := cfg.Limits.Validate(); err != nil {
				return nil, errAt(v, "", "%v", err)
			}
		}
	}
	cfg.Limits.EnsureDefaults()
	var regNode *yaml.Node
	names := map[string]bool{}
	cp := &compiler{paths: &cfg.paths, maxNodes: opt.MaxConditionNodes, lines: strings.Split(string(data), "\n"), lim: &cfg.Limits}
	err := eachKey(root, "", func(k string, kn, v *yaml.Node) error {
		switch k {
		case "version":
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				return errAt(v, "", "version must be a non-empty string")
			}
			cfg.Version = v.Value
		case "registry":
			regNode = v
		case "on_error":
			switch v.Value {
			case "log":
			case "dead-letter":
				cfg.DeadLetterErrors = true
			default:
				return errAt(v, "", "on_error must be log or dead-letter")
			}
		case "limits": // read first
		case "rules":
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				return nil // `rules:` with nothing: no rules
			}
			if v.Kind != yaml.SequenceNode {
				return errAt(v, "", "rules must be a list")
			}
			if len(v.Content) > opt.MaxRules {
				return errAt(v, "", "%d rules, more than %d", len(v.Content), opt.MaxRules)
			}
			for _, rn := range v.Content {
				r, err := loadRule(rn, cp)
				if err != nil {
					return err
				}
				if names[r.Name] {
					return errAt(rn, r.Name, "a rule of this name is already defined")
				}
				names[r.Name] = true
				cfg.Rules = append(cfg.Rules, r)
			}
		case "jobs":
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				return nil
			}
			if v.Kind != yaml.SequenceNode {
				return errAt(v, "", "jobs must be a list")
			}
			jobNames := map[string]bool{}
			for _, jn := range v.Content {
				j, err := loadJob(jn, cp)
				if le := (*LoadError)(nil); errors.As(err, &le) && strings.HasPrefix(le.Rule, "job ") {
					le.Job, le.Rule = strings.TrimPrefix(le.Rule, "job "), "" // loadJob names its errors "job NAME"
				}
				if err != nil {
					return err
				}
				if jobNames[j.Name] {
					return errAt(jn, "job "+j.Name, "a job of this name is already defined")
				}
				jobNames[j.Name] = true
				cfg.Jobs = append(cfg.Jobs, j)
			}
			slices.SortFunc(cfg.Jobs, func(a, b *Job) int { return strings.Compare(a.Name, b.Name) })
		default:
			return errAt(kn, "", "unknown key %q", k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if regNode != nil {
		// After the keys: the registry takes the file's version unless it names its own.
		if cfg.Registry, err = loadRegistryNode(regNode, cfg.Version); err != nil {
			return nil, err
		}
	}
	bindPropSlots(cfg.Rules, &cfg.paths)
	slices.SortStableFunc(cfg.Rules, func(a, b *Rule) int {
		if a.Priority != b.Priority {
			if a.Priority > b.Priority {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	for i, r := range cfg.Rules {
		if !r.Enabled {
			continue
		}
		for _, t := range r.exact {
			if l := cfg.exact[t]; len(l) == 0 || l[len(l)-1] != int32(i) {
				cfg.exact[t] = append(l, int32(i))
			}
		}
		if len(r.globs) > 0 {
			cfg.wildcard = append(cfg.wildcard, int32(i))
		}
	}
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError turns a YAML syntax error into a LoadError with its line.
func yamlError(err error) *LoadError {
	msg := err.Error()
	e := &LoadError{Msg: msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Column = 1
		e.Msg = "yaml: " + msg[len(m[0]):]
	}
	return e
}

// eachKey calls fn for each key of the mapping n, rejecting duplicates.
func eachKey(n *yaml.Node, rule string, fn func(k string, kn, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return errAt(n, rule, "expected a mapping")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, v := n.Content[i], n.Content[i+1]
		if seen[kn.Value] {
			return errAt(kn, rule, "duplicate key %q", kn.Value)
		}
		seen[kn.Value] = true
		if err := fn(kn.Value, kn, v); err != nil {
			return err
		}
	}
	return nil
}

// decodeStrict decodes n into v, rejecting unknown fields.
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	return d.Decode(v)
}

// strings reads a string or a list of strings.
func stringList(n *yaml.Node, rule, what string) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value == "" {
			return nil, errAt(n, rule, "%s must not be empty", what)
		}
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		var out []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode || c.Value == "" {
				return nil, errAt(c, rule, "%s must be a list of non-empty strings", what)
			}
			out = append(out, c.Value)
		}
		if len(out) == 0 {
			return nil, errAt(n, rule, "%s must not be empty", what)
		}
		return out, nil
	}
	return nil, errAt(n, rule, "%s must be a string or a list of strings", what)
}

func scalar(n *yaml.Node, rule, what string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", errAt(n, rule, "%s must be a scalar", what)
	}
	return n.Value, nil
}

// normType normalises an event type like the decoder does: lower case, trimmed, spaces to '-'.
func normType(s string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), " ", "-")
}

func loadRule(n *yaml.Node, cp *compiler) (*Rule, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errAt(n, "", "a rule must be a mapping")
	}
	r := &Rule{Enabled: true}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			r.Name = n.Content[i+1].Value
		}
	}
	if r.Name == "" {
		return nil, errAt(n, "", "a rule needs a name")
	}
	var whenNode *yaml.Node
	var actions *yaml.Node
	err := eachKey(n, r.Name, func(k string, kn, v *yaml.Node) error {
		var err error
		switch k {
		case "name":
		case "on":
			r.On, err = stringList(v, r.Name, "on")
			for i, p := range r.On {
				p = normType(p)
				r.On[i] = p
				if strings.Contains(p, "*") {
					r.globs = append(r.globs, p)
				} else {
					r.exact = append(r.exact, p)
				}
			}
		case "source":
			r.Source, err = stringList(v, r.Name, "source")
		case "when":
			r.When, err = scalar(v, r.Name, "when")
			whenNode = v
		case "priority":
			var p int64
			p, err = strconv.ParseInt(v.Value, 10, 32)
			if err != nil || v.Kind != yaml.ScalarNode {
				return errAt(v, r.Name, "priority must be an integer")
			}
			r.Priority = int(p)
		case "enabled":
			if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
				return errAt(v, r.Name, "enabled must be true or false")
			}
			r.Enabled = v.Value == "true"
		case "late":
			if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
				return errAt(v, r.Name, "late must be true or false")
			}
			r.Late = v.Value == "true"
		case "actions":
			actions = v
		default:
			return errAt(kn, r.Name, "unknown key %q", k)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(r.On) == 0 {
		return nil, errAt(n, r.Name, "a rule needs `on`: the event types it applies to")
	}
	if whenNode != nil && strings.TrimSpace(r.When) != "" {
		c, err := cp.compile(r.When)
		if err != nil {
			var ce *condError
			if errors.As(err, &ce) {
				return nil, whenError(whenNode, r.Name, ce, r.When, cp.lines)
			}
			return nil, errAt(whenNode, r.Name, "when: %v", err)
		}
		r.cond = c
	}
	if actions == nil || actions.Kind != yaml.SequenceNode || len(actions.Content) == 0 {
		return nil, errAt(n, r.Name, "a rule needs a non-empty list of actions")
	}
	for i, an := range actions.Content {
		a, err := loadAction(an, r.Name, i, cp.lim)
		if err != nil {
			return nil, err
		}
		r.Actions = append(r.Actions, a)
	}
	return r, nil
}

// whenError places a condition error in the YAML file (lines): within the `when` value's line
// for a flow scalar, and for a block scalar (| or >) by walking its content lines, whose
// newlines (literal) or folding spaces (folded) are one character of src each.
func whenError(n *yaml.Node, rule string, ce *condError, src string, lines []string) error {
	e := &LoadError{Rule: rule, Line: n.Line, Column: n.Column, Msg: "when: " + ce.Msg}
	if ce.Line <= 0 {
		return e
	}
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		off := 0 // the error's rune offset in src
		for i, l := range strings.Split(src, "\n") {
			if i == ce.Line-1 {
				off += ce.Column - 1
				break
			}
			off += utf8.RuneCountInString(l) + 1
		}
		// lines[n.Line] is the block's first content line; its indentation is the block's.
		indent := -1
		for ln := n.Line; ln < len(lines); ln++ {
			if indent < 0 {
				indent = len(lines[ln]) - len(strings.TrimLeft(lines[ln], " "))
			}
			content := lines[ln][min(indent, len(lines[ln])):]
			length := utf8.RuneCountInString(content)
			if off <= length {
				e.Line, e.Column = ln+1, indent+off+1
				break
			}
			off -= length + 1
		}
	case 0:
		if ce.Line == 1 {
			e.Column = n.Column + ce.Column - 1
		} else {
			e.Line = n.Line + ce.Line - 1
			e.Column = ce.Column
		}
	default: // quoted: one more column for the quote
		if ce.Line == 1 {
			e.Column = n.Column + ce.Column
		} else {
			e.Line = n.Line + ce.Line - 1
		}
	}
	return e
}

func loadAction(n *yaml.Node, rule string, idx int, lim *Limits) (*Action, error) {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		return nil, errAt(n, rule, "action %d must be a mapping with one key: the action's kind", idx+1)
	}
	kn, v := n.Content[0], n.Content[1]
	a := &Action{}
	kind := slices.Index(actionNames[:], kn.Value)
	if kind < 0 {
		return nil, errAt(kn, rule, "unknown action %q (one of %s)", kn.Value, strings.Join(actionNames[:], ", "))
	}
	a.Kind = ActionKind(kind)
	where := fmt.Sprintf("action %d (%s)", idx+1, kn.Value)
	tp := func(field string, n *yaml.Node) (*tmpl, error) {
		s, err := scalar(n, rule, where+": "+field)
		if err != nil {
			return nil, err
		}
		t, err := parseTemplate(field, s, lim)
		if err != nil {
			return nil, errAt(n, rule, "%s: %s: %v", where, field, err)
		}
		return t, nil
	}
	named := func(n *yaml.Node, field string) ([]namedTmpl, error) {
		var out []namedTmpl
		err := eachKey(n, rule, func(k string, kn, v *yaml.Node) error {
			t, err := tp(field+"."+k, v)
			out = append(out, namedTmpl{name: k, t: t})
			return err
		})
		slices.SortFunc(out, func(a, b namedTmpl) int { return strings.Compare(a.name, b.name) })
		return out, err
	}
	// Short forms: `tag: vip`, `cancel: cart`, `route: slow`, `increment: visits`, `stop: true`.
	if v.Kind != yaml.MappingNode {
		var err error
		switch a.Kind {
		case ActTag, ActUntag:
			a.Tags, err = stringList(v, rule, where)
		case ActCancel:
			a.Name, err = scalar(v, rule, where)
		case ActRoute:
			a.Queue, err = scalar(v, rule, where)
		case ActIncrement:
			a.Name, err = scalar(v, rule, where)
			a.By = 1
		case ActStop:
			if v.Value != "true" {
				err = errAt(v, rule, "%s: write `stop: true`", where)
			}
		default:
			err = errAt(v, rule, "%s needs a mapping of its fields", where)
		}
		if err == nil && a.Kind != ActStop && a.Kind != ActTag && a.Kind != ActUntag && a.Name == "" && a.Queue == "" {
			err = errAt(v, rule, "%s must not be empty", where)
		}
		return a, err
	}
	err := eachKey(v, rule, func(k string, kn, fv *yaml.Node) error {
		var err error
		bad := func() error { return errAt(kn, rule, "%s: unknown field %q", where, k) }
		switch a.Kind {
		case ActEmit:
			switch k {
			case "type":
				a.Type, err = scalar(fv, rule, where+": type")
				a.Type = normType(a.Type)
			case "topic":
				a.Topic, err = scalar(fv, rule, where+": topic")
			case "queue":
				a.Queue, err = scalar(fv, rule, where+": queue")
			case "key":
				a.key, err = tp("key", fv)
			case "properties":
				a.props, err = named(fv, "properties")
			default:
				return bad()
			}
		case ActNotify:
			switch k {
			case "channel":
				a.Channel, err = scalar(fv, rule, where+": channel")
			case "to":
				var l []string
				l, err = stringList(fv, rule, where+": to")
				for i, s := range l {
					t, perr := parseTemplate(fmt.Sprintf("to[%d]", i), s, lim)
					if perr != nil {
						return errAt(fv, rule, "%s: to: %v", where, perr)
					}
					a.to = append(a.to, t)
				}
			case "subject":
				a.subject, err = tp("subject", fv)
			case "body":
				a.body, err = tp("body", fv)
			case "params":
				a.params, err = named(fv, "params")
			case "queue":
				a.Queue, err = scalar(fv, rule, where+": queue")
			default:
				return bad()
			}
		case ActSetTrait:
			switch k {
			case "name":
				a.Name, err = scalar(fv, rule, where+": name")
			case "value":
				a.value, err = tp("value", fv)
			default:
				return bad()
			}
		case ActIncrement:
			switch k {
			case "counter", "name":
				a.Name, err = scalar(fv, rule, where+": counter")
			case "by":
				a.By, err = strconv.ParseInt(fv.Value, 10, 64)
				if err != nil {
					return errAt(fv, rule, "%s: by must be an integer", where)
				}
			default:
				return bad()
			}
		case ActSchedule:
			switch k {
			case "name":
				a.Name, err = scalar(fv, rule, where+": name")
			case "type":
				a.Type, err = scalar(fv, rule, where+": type")
				a.Type = normType(a.Type)
			case "after":
				a.After, err = time.ParseDuration(fv.Value)
				if err != nil || a.After <= 0 {
					return errAt(fv, rule, "%s: after must be a positive duration (1h, 30m)", where)
				}
			case "at":
				a.at, err = tp("at", fv)
			case "properties":
				a.props, err = named(fv, "properties")
			default:
				return bad()
			}
		case ActTag, ActUntag:
			if k != "tags" {
				return bad()
			}
			a.Tags, err = stringList(fv, rule, where+": tags")
		case ActCancel:
			if k != "name" {
				return bad()
			}
			a.Name, err = scalar(fv, rule, where+": name")
		case ActRoute:
			if k != "queue" {
				return bad()
			}
			a.Queue, err = scalar(fv, rule, where+": queue")
		default:
			return bad()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	missing := func(field string) error { return errAt(v, rule, "%s needs %s", where, field) }
	switch a.Kind {
	case ActEmit:
		if a.Type == "" {
			return nil, missing("a type")
		}
		if (a.Topic == "") == (a.Queue == "") {
			return nil, missing("exactly one of topic and queue")
		}
		if _, ok := operators.ParseSystemType(a.Type); ok {
			return nil, errAt(v, rule, "%s: %s is a system-event type", where, a.Type)
		}
	case ActNotify:
		if a.Channel == "" {
			return nil, missing("a channel")
		}
		if len(a.to) == 0 {
			return nil, missing("recipients (to)")
		}
	case ActSetTrait:
		if a.Name == "" || a.value == nil {
			return nil, missing("a name and a value")
		}
	case ActIncrement:
		if a.Name == "" {
			return nil, missing("a counter")
		}
		if a.By == 0 {
			a.By = 1
		}
	case ActSchedule:
		if a.Name == "" || a.Type == "" {
			return nil, missing("a name and a type")
		}
		if (a.After == 0) == (a.at == nil) {
			return nil, missing("exactly one of after and at")
		}
		if _, ok := operators.ParseSystemType(a.Type); ok {
			return nil, errAt(v, rule, "%s: %s is a system-event type", where, a.Type)
		}
	case ActCancel:
		if a.Name == "" {
			return nil, missing("a name")
		}
	case ActRoute:
		if a.Queue == "" {
			return nil, missing("a queue")
		}
	case ActTag, ActUntag:
		if len(a.Tags) == 0 {
			return nil, missing("tags")
		}
	}
	if a.After > time.Duration(math.MaxInt64/2) {
		return nil, errAt(v, rule, "%s: after is too long", where)
	}
	return a, nil
}
