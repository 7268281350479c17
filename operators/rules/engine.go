package rules

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/internal/jsonx"
)

// ReasonRuleError is the Outcome.Reason of an event whose rules failed.
const ReasonRuleError operators.Reason = "rule-error"

// LogState is an event's state in the event log.
type LogState uint8

const (
	// Processed: the rules ran (whether or not any fired).
	Processed LogState = iota
	// Errored: a rule failed at run time; the other rules still ran (Outcome.Errors).
	Errored
	// Ignored: the registry disables the event's type; no rule ran.
	Ignored
	// DeadLettered: the registry rejected the event (Outcome.Reason, Outcome.Detail).
	DeadLettered
	// Late: the event arrived behind the watermark and could not join a visit (set by the
	// pipeline for the sessionizer's late outputs; rules marked late still ran).
	Late
	// Transferred: the event was copied elsewhere for reprocessing (dwell move).
	Transferred
	// NumLogStates is the number of states: the length of arrays indexed by LogState.
	NumLogStates = iota
)

var logStateNames = [NumLogStates]string{"processed", "error", "ignored", "dead-lettered", "late", "transferred"}

// ParseLogState returns the state named s.
func ParseLogState(s string) (LogState, bool) {
	for i, n := range logStateNames {
		if n == s {
			return LogState(i), true
		}
	}
	return 0, false
}

func (s LogState) String() string { return logStateNames[s] }

// OutputKind says what an Output is.
type OutputKind uint8

const (
	// OutEmit is a derived event (JSON) for Topic or Queue.
	OutEmit OutputKind = iota
	// OutNotify is a notification record (JSON) for Queue ("" the default notifications queue).
	OutNotify
	// OutRoute sends the event itself to Queue; Value is nil.
	OutRoute
	// NumOutputKinds is the number of kinds: the length of arrays indexed by OutputKind.
	NumOutputKinds = iota
)

var outputKindNames = [NumOutputKinds]string{"emit", "notify", "route"}

func (k OutputKind) String() string { return outputKindNames[k] }

// Output is one record a rule produces. Its Value is owned by the Outcome until the next Apply;
// Key and ID may be views of the event's buffers (copy them to keep them).
type Output struct {
	Kind  OutputKind
	Rule  string
	Topic string // emit to a topic
	Queue string
	Key   string // the record key: the event's key unless an emit templates its own
	ID    string // deterministic: derived from the cause event, the rule and the action
	Value []byte
}

// TimerOp is a change to the key's scheduled events, for the pipeline's timer index: a
// schedule adds Timer; a cancel, a replaced schedule (reported as a cancel of the old one
// first) and a fired timer remove it.
type TimerOp struct {
	Cancel bool
	Timer  Timer
}

// ActionRecord is one action taken, for the event log.
type ActionRecord struct {
	Rule string
	Kind ActionKind
}

// RuleError is a rule's run-time failure: in its condition (Action -1) or in an action (the
// index in Rule.Actions); the rule's later actions were skipped.
type RuleError struct {
	Rule   string
	Action int
	Err    error
}

func (e RuleError) Error() string {
	if e.Action < 0 {
		return fmt.Sprintf("rule %q: when: %v", e.Rule, e.Err)
	}
	return fmt.Sprintf("rule %q: action %d: %v", e.Rule, e.Action+1, e.Err)
}

// Outcome is everything Apply decided for one event. Reused from call to call: its slices and
// values are valid until the next Apply with it.
type Outcome struct {
	State LogState
	// Reason and Detail say why the event was dead-lettered or errored.
	Reason operators.Reason
	Detail string
	// Unregistered: the registry does not list the type and its policy is flag (or reject).
	Unregistered bool
	// Type is the registry's entry for the event's type (nil when not registered or system).
	Type *TypeInfo
	// Fired lists the rules whose type, source and condition matched, in order.
	Fired   []string
	Actions []ActionRecord
	Outputs []Output
	Timers  []TimerOp
	Errors  []RuleError
	// DeadLetter: the rules failed and the config says to dead-letter such events too.
	DeadLetter bool
	// Stopped: a stop action ended rule evaluation.
	Stopped bool
	// StateChanged: the ProfileState changed; the key must be changelogged.
	StateChanged bool

	// buf holds what Apply renders and writes for this event (template results, derived
	// ids, output values), append-only during one Apply: strings and Values are views of it,
	// valid until the next Apply with this Outcome, which reuses it.
	buf []byte
}

func (o *Outcome) reset() {
	*o = Outcome{Fired: o.Fired[:0], Actions: o.Actions[:0], Outputs: o.Outputs[:0], Timers: o.Timers[:0], Errors: o.Errors[:0],
		buf: o.buf[:0]}
}

// Engine applies a Config (and optionally a Registry) to the events of one partition. Like a
// Sessionizer it is owned by one goroutine; it reads no clock and does no I/O: time is the
// event's, and outputs and state changes are reported in the Outcome for the pipeline to add to
// the cycle's transaction.
type Engine struct {
	cfg   *Config
	reg   *Registry
	cache map[string][]int32 // event type -> candidate rules (exact and wildcard), in order
	run   run
}

// maxCachedTypes bounds the engine's per-type cache (types come from input).
const maxCachedTypes = 4096

// NewEngine returns an engine running cfg (nil: no rules); reg may be nil (no registry: every
// type accepted).
func NewEngine(cfg *Config, reg *Registry) *Engine {
	e := &Engine{}
	e.SetConfig(cfg, reg)
	return e
}

// SetConfig switches to another config and registry; call it between events (the pipeline:
// at a cycle boundary).
func (e *Engine) SetConfig(cfg *Config, reg *Registry) {
	if cfg == nil {
		cfg = &Config{exact: map[string][]int32{}} // no rules
	}
	e.cfg, e.reg = cfg, reg
	e.cache = make(map[string][]int32)
}

// Config returns the config the engine runs.
func (e *Engine) Config() *Config { return e.cfg }

// Registry returns the registry the engine runs, or nil.
func (e *Engine) Registry() *Registry { return e.reg }

// Admit is the registry's decision on an input event (see Registry.Check), for the pipeline
// to take before the event is sessionized: a rejected event is dead-lettered and an ignored one
// dropped without opening anything. Events it admits reach Apply with Env.Admitted set, which
// then skips the check. With no registry every event is admitted.
func (e *Engine) Admit(typ string, props []byte) Verdict {
	if e.reg == nil {
		return Verdict{}
	}
	return e.reg.Check(typ, props)
}

// candidates returns the enabled rules whose `on` matches typ, in evaluation order.
func (e *Engine) candidates(typ string) []int32 {
	if c, ok := e.cache[typ]; ok {
		return c
	}
	cfg := e.cfg
	exact := cfg.exact[typ]
	var c []int32
	if len(cfg.wildcard) == 0 {
		c = exact
	} else {
		c = make([]int32, 0, len(exact)+len(cfg.wildcard))
		i, j := 0, 0
		for i < len(exact) || j < len(cfg.wildcard) {
			if j == len(cfg.wildcard) || i < len(exact) && exact[i] < cfg.wildcard[j] {
				c = append(c, exact[i])
				i++
				continue
			}
			w := cfg.wildcard[j]
			j++
			if i < len(exact) && exact[i] == w {
				continue // listed both exactly and by a pattern: once, taken from exact
			}
			for _, g := range cfg.Rules[w].globs {
				if glob(g, typ) {
					c = append(c, w)
					break
				}
			}
		}
	}
	if len(e.cache) < maxCachedTypes {
		e.cache[strings.Clone(typ)] = c // typ may be a view of a record
	}
	return c
}

// glob matches s against a pattern in which '*' matches any run of characters.
func glob(pattern, s string) bool {
	star, next := -1, 0
	p, i := 0, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, next = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p, next = star+1, next+1
			i = next
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// run is the state of one Apply.
type run struct {
	env   *Env
	st    *ProfileState
	out   *Outcome
	lim   *Limits
	paths *pathTable // the config's, for the properties templates read
	rule  string
	ctx   evalCtx

	// Template data, built as templates need it (template.go).
	tdata     map[string]any
	built     roots
	stateGen  uint64 // counts state changes in this Apply
	builtGen  uint64 // stateGen when the profile part was built
	props     map[string]any
	propsDone bool
	buf       limitedBuffer // reused across events
	jbuf      []byte        // reused across events
	hbuf      []byte        // reused across events: the input of derivedID's hash
	pvals     []string      // reused across events: rendered properties (renderProps)
	params    paramSet      // reused across events: a notify action's rendered params
	to        []string      // reused across events: a notify action's recipients
	slow      bool          // tests: render every template with text/template
}

// Apply runs the rules on the event in env against the key's state st, which it updates in
// place, and reports what happened in out (reset first). st may be an empty state for a new key.
// Apply never fails: a rule's error is recorded in out and the other rules still run.
func (e *Engine) Apply(env *Env, st *ProfileState, out *Outcome) {
	out.reset()
	cfg := e.cfg
	env.ensureSlots(&cfg.paths)
	if e.reg != nil && env.Event.System {
		// System events and fired schedules: dwell made them, so the registry admits them
		// as they are; their registration gives their queue (and description).
		out.Type, _ = e.reg.Lookup(env.Event.Type)
	} else if e.reg != nil {
		var v Verdict
		if env.Admitted {
			v.Info, _ = e.reg.Lookup(env.Event.Type)
			v.Unregistered = v.Info == nil && e.reg.Unregistered != PolicyAccept
		} else {
			v = e.reg.Check(env.Event.Type, env.Event.Properties)
		}
		out.Type, out.Unregistered = v.Info, v.Unregistered
		switch {
		case v.Reject:
			out.State, out.Reason, out.Detail = DeadLettered, v.Reason, v.Detail
			return
		case v.Ignore:
			out.State = Ignored
			return
		}
	}
	cands := e.candidates(env.Event.Type)
	if len(cands) == 0 {
		return
	}
	r := &e.run // field by field: the buffers stay, and copying the whole struct costs
	r.env, r.st, r.out, r.lim, r.paths = env, st, out, &cfg.Limits, &cfg.paths
	r.ctx = evalCtx{env: env, st: st, budget: cfg.Limits.MaxConditionBytes}
	r.rule, r.tdata, r.built, r.stateGen, r.builtGen, r.props, r.propsDone = "", nil, 0, 0, 0, nil, false
	for _, i := range cands {
		rule := cfg.Rules[i]
		if env.Event.Late && !rule.Late || len(rule.Source) > 0 && !contains(rule.Source, env.Event.Source) {
			continue
		}
		if rule.cond != nil {
			ok, err := rule.cond.eval(&r.ctx)
			if err != nil {
				out.Errors = append(out.Errors, RuleError{Rule: rule.Name, Action: -1, Err: err})
				continue
			}
			if !ok {
				continue
			}
		}
		out.Fired = append(out.Fired, rule.Name)
		r.rule = rule.Name
		stop := false
		for ai, a := range rule.Actions {
			out.Actions = append(out.Actions, ActionRecord{Rule: rule.Name, Kind: a.Kind})
			if a.Kind == ActStop {
				stop = true
				break
			}
			err := r.do(a, ai)
			if a.Kind >= ActSetTrait && a.Kind <= ActCancel {
				r.stateGen++ // templates rendered after this see the new state
			}
			if err != nil {
				out.Errors = append(out.Errors, RuleError{Rule: rule.Name, Action: ai, Err: err})
				break
			}
		}
		if stop {
			out.Stopped = true
			break
		}
	}
	if len(out.Errors) > 0 {
		out.State, out.Reason, out.Detail = Errored, ReasonRuleError, out.Errors[0].Error()
		out.DeadLetter = cfg.DeadLetterErrors
	}
	// Keep nothing of this event past Apply (not deferred: Apply does not panic, and a
	// deferred closure costs on every event).
	r.env, r.st, r.out, r.ctx, r.props, r.tdata = nil, nil, nil, evalCtx{}, nil, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// derivedID is the id of something action ai of the current rule derives from the event:
// SHA-256 over kind, event id, rule name and action index, as 32 hex digits (a view of the
// Outcome's buffer).
func (r *run) derivedID(kind string, ai int) string {
	b := append(r.hbuf[:0], kind...)
	b = append(b, 0)
	b = append(b, r.env.Event.ID...)
	b = append(b, 0)
	b = append(b, r.rule...)
	b = binary.BigEndian.AppendUint64(b, uint64(ai))
	r.hbuf = b
	sum := sha256.Sum256(b)
	return r.appendOut(func(dst []byte) []byte { return hex.AppendEncode(dst, sum[:16]) })
}

// appendOut appends to the Outcome's buffer with f and returns what f appended, as a view.
func (r *run) appendOut(f func([]byte) []byte) string {
	start := len(r.out.buf)
	r.out.buf = f(r.out.buf)
	return jsonx.String(r.out.buf[start:])
}

func (r *run) do(a *Action, ai int) error {
	out, st := r.out, r.st
	switch a.Kind {
	case ActEmit:
		key := r.env.Key
		if a.key != nil {
			k, err := r.render(a.key, nil)
			if err != nil {
				return fmt.Errorf("key: %w", err)
			}
			key = k
		}
		props, err := r.renderProps(a.props)
		if err != nil {
			return err
		}
		id := r.derivedID("emit", ai)
		ev := &r.env.Event
		start := len(out.buf)
		w := jsonObject{b: out.buf}
		w.str("cause_event_id", ev.ID)
		w.str("id", id)
		w.strOmit("profile", ev.Profile)
		w.strMap("properties", a.props, props)
		w.str("rule", r.rule)
		w.strOmit("session", ev.Session)
		w.strOmit("source", ev.Source)
		w.time("time", ev.Time)
		w.str("type", a.Type)
		out.buf = w.end()
		out.Outputs = append(out.Outputs, Output{Kind: OutEmit, Rule: r.rule, Topic: a.Topic, Queue: a.Queue, Key: key, ID: id,
			Value: out.buf[start:len(out.buf):len(out.buf)]})
	case ActNotify:
		params := &r.params
		params.names, params.vals = a.params, params.vals[:0]
		for _, p := range a.params {
			s, err := r.render(p.t, params)
			if err != nil {
				return fmt.Errorf("params.%s: %w", p.name, err)
			}
			params.vals = append(params.vals, s)
		}
		to := r.to[:0]
		for _, t := range a.to {
			s, err := r.render(t, params)
			if err != nil {
				return fmt.Errorf("to: %w", err)
			}
			if s = strings.TrimSpace(s); s != "" {
				to = append(to, s)
			}
		}
		r.to = to
		if len(to) == 0 {
			return fmt.Errorf("no recipients: every `to` rendered empty")
		}
		var subject, body string
		var err error
		if a.subject != nil {
			if subject, err = r.render(a.subject, params); err != nil {
				return fmt.Errorf("subject: %w", err)
			}
		}
		if a.body != nil {
			if body, err = r.render(a.body, params); err != nil {
				return fmt.Errorf("body: %w", err)
			}
		}
		id := r.derivedID("notify", ai)
		ev := &r.env.Event
		start := len(out.buf)
		w := jsonObject{b: out.buf}
		w.str("body", body)
		w.str("channel", a.Channel)
		w.str("event_id", ev.ID)
		w.str("event_type", ev.Type)
		w.str("id", id)
		w.str("key", r.env.Key)
		w.strMap("params", a.params, params.vals)
		w.str("rule", r.rule)
		w.str("subject", subject)
		w.time("time", ev.Time)
		w.strList("to", to)
		out.buf = w.end()
		out.Outputs = append(out.Outputs, Output{Kind: OutNotify, Rule: r.rule, Queue: a.Queue, Key: r.env.Key, ID: id,
			Value: out.buf[start:len(out.buf):len(out.buf)]})
	case ActRoute:
		out.Outputs = append(out.Outputs, Output{Kind: OutRoute, Rule: r.rule, Queue: a.Queue, Key: r.env.Key, ID: r.env.Event.ID})
	case ActSetTrait:
		v, err := r.render(a.value, nil)
		if err != nil {
			return fmt.Errorf("value: %w", err)
		}
		changed, err := st.setTrait(a.Name, v, r.lim)
		if err != nil {
			return err
		}
		out.StateChanged = out.StateChanged || changed
	case ActTag:
		for _, t := range a.Tags {
			changed, err := st.addTag(t, r.lim)
			if err != nil {
				return err
			}
			out.StateChanged = out.StateChanged || changed
		}
	case ActUntag:
		for _, t := range a.Tags {
			out.StateChanged = st.removeTag(t) || out.StateChanged
		}
	case ActIncrement:
		if _, err := st.increment(a.Name, a.By, r.lim); err != nil {
			return err
		}
		out.StateChanged = true
	case ActSchedule:
		return r.schedule(a)
	case ActCancel:
		if t, ok := st.cancel(a.Name); ok {
			out.Timers = append(out.Timers, TimerOp{Cancel: true, Timer: t})
			out.StateChanged = true
		}
	}
	return nil
}

// renderProps renders props, returning their values in order (valid until the next call).
func (r *run) renderProps(props []namedTmpl) ([]string, error) {
	vals := r.pvals[:0]
	for _, p := range props {
		s, err := r.render(p.t, nil)
		if err != nil {
			return nil, fmt.Errorf("properties.%s: %w", p.name, err)
		}
		vals = append(vals, s)
	}
	r.pvals = vals
	return vals, nil
}

func (r *run) schedule(a *Action) error {
	ev := &r.env.Event
	var deadline int64
	if a.at != nil {
		s, err := r.render(a.at, nil)
		if err != nil {
			return fmt.Errorf("at: %w", err)
		}
		deadline, err = parseAt(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("at: %w", err)
		}
	} else {
		deadline = ev.Time + a.After.Milliseconds()
	}
	if deadline <= 0 {
		return fmt.Errorf("deadline %d is not a valid time", deadline)
	}
	if deadline > operators.MaxTime {
		// The fired event carries its deadline as its time, which must have a four-digit year.
		return fmt.Errorf("deadline %d ms is after %s, the last time dwell writes", deadline, operators.AppendTime(nil, operators.MaxTime))
	}
	t := Timer{Name: a.Name, Type: a.Type, Deadline: deadline, Cause: strings.Clone(ev.ID)} // kept in state: no view
	if len(a.props) > 0 {
		props, err := r.renderProps(a.props)
		if err != nil {
			return err
		}
		var w jsonObject
		w.b = r.jbuf[:0]
		for i, p := range a.props {
			w.str(p.name, props[i])
		}
		r.jbuf = w.end()
		t.Data = slices.Clone(r.jbuf)
	}
	t.ID = timerID(r.env.Key, t.Name, t.Deadline, t.Cause)
	old, replaced, err := r.st.schedule(t, r.lim)
	if err != nil {
		return err
	}
	if replaced {
		r.out.Timers = append(r.out.Timers, TimerOp{Cancel: true, Timer: old})
	}
	r.out.Timers = append(r.out.Timers, TimerOp{Timer: t})
	r.out.StateChanged = true
	return nil
}

// timerID derives a timer's id from key, name, deadline and cause.
func timerID(key, name string, deadline int64, cause string) [16]byte {
	return derivedID("timer", deadline, key, name, cause)
}

// derivedID is the id of a rule output derived from what it is (kind), its strings and its
// time: the first 16 bytes of SHA-256 over kind, each string after a NUL, a NUL and the time
// big-endian. The same inputs give the same id in every run, replay and instance.
func derivedID(kind string, t int64, parts ...string) (id [16]byte) {
	var a [256]byte
	b := append(a[:0], kind...)
	for _, s := range parts {
		b = append(b, 0)
		b = append(b, s...)
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(t))
	sum := sha256.Sum256(b)
	copy(id[:], sum[:])
	return id
}

// parseAt reads a schedule's `at`: RFC 3339 (as input times are read) or Unix milliseconds
// (also as a float, as a numeric property renders: 1.7672256e+12).
func parseAt(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f == math.Trunc(f) && f > 0 && f < 1<<53 {
		return int64(f), nil
	}
	ms, ok := operators.ParseTime([]byte(s))
	if !ok {
		return 0, fmt.Errorf("%q is neither RFC 3339 nor Unix milliseconds", s)
	}
	return ms, nil
}
