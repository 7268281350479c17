package rules

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/dwellhq/dwell/operators"
)

// A Job is a scheduled job of the rules file (`jobs:`): an event of type Type emitted at each
// time of a cron expression (Cron, in Location) or of an interval (Every, aligned to the Unix
// epoch: every 15m fires at :00, :15, :30 and :45 of each hour), run through the rules like any
// other event. The pipeline decides where and when a job fires and records the last time it
// fired with the partition's state (see the pipeline's jobs.go); Job only says when it is due.
//
// Time zones and daylight saving time, as Vixie cron does it: a job whose hour field is
// fixed (`0 9 * * *`, `30 2 * * *`) fires once a day at that wall-clock time; when the time
// does not exist (the spring-forward gap) it fires the same distance into the new hour
// (02:30 becomes 03:30), and when it exists twice (fall back) it fires once. A job whose hour
// field is `*` or a step (`*/2`) runs by elapsed time: the gap's hour has no fire, the repeated
// hour fires twice.
type Job struct {
	Name string
	// Cron is the expression (five fields, or a descriptor such as @daily); empty for Every.
	Cron  string
	Every time.Duration
	// Location is the time zone of Cron (file key `timezone`, default UTC).
	Location *time.Location
	// Type is the type of the event the job emits; props its properties (templates).
	Type string
	// ForEach is the source of the condition on a key's profile for a job that fires once per
	// matching key; empty for a job that fires once.
	ForEach string
	// CatchUp is what happens to fires missed (due more than CatchUpGrace before the job
	// could fire them, such as while no instance ran).
	CatchUp CatchUp

	props    []namedTmpl
	forEach  *condition
	sched    cron.Schedule
	wallTime bool // the hour field is fixed: fires are wall-clock times in Location
}

// CatchUp is a job's policy for fires missed while nothing ran.
type CatchUp uint8

const (
	// CatchUpAll fires every missed time, oldest first (the default: nothing is skipped).
	CatchUpAll CatchUp = iota
	// CatchUpLast fires only the latest missed time.
	CatchUpLast
	// CatchUpNone fires none of the missed times.
	CatchUpNone
)

var catchUpNames = [...]string{"all", "last", "none"}

func (c CatchUp) String() string { return catchUpNames[c] }

// CatchUpGrace is how late a fire may be and still count as on time, not missed: a fire due
// within it always fires, whatever the catch-up policy.
const CatchUpGrace = time.Minute

// catchUpWindow bounds how far back a catch-up looks: fires older than this before now are
// dropped, whatever the policy, so a job restarted after years does not walk every minute.
const catchUpWindow = 400 * 24 * time.Hour

// cronParser reads the standard five fields (minute hour day-of-month month day-of-week, with
// names: MON-FRI, JAN) and descriptors (@daily, @hourly, ...).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Next returns the job's first fire time strictly after after (Unix ms), or false when there is
// none before operators.MaxTime.
func (j *Job) Next(after int64) (int64, bool) {
	var n int64
	switch {
	case j.Every > 0:
		every := j.Every.Milliseconds()
		n = after - ((after%every)+every)%every + every
	case j.wallTime:
		// Cron on the wall clock of Location: the schedule runs on naive times (wall clock as
		// UTC), each mapped to its instant; a wall time the instant after repeats (fall back)
		// is passed over.
		a := time.UnixMilli(after).In(j.Location)
		naive := time.Date(a.Year(), a.Month(), a.Day(), a.Hour(), a.Minute(), a.Second(), 0, time.UTC)
		for range 1000 {
			naive = j.sched.Next(naive)
			if naive.IsZero() {
				return 0, false
			}
			t := time.Date(naive.Year(), naive.Month(), naive.Day(), naive.Hour(), naive.Minute(), naive.Second(), 0, j.Location)
			if n = t.UnixMilli(); n > after {
				break
			}
		}
		if n <= after {
			return 0, false
		}
	default:
		t := j.sched.Next(time.UnixMilli(after).In(j.Location))
		if t.IsZero() {
			return 0, false
		}
		n = t.UnixMilli()
	}
	return n, n <= operators.MaxTime
}

// Due appends to dst the times to fire in (last, now], Unix ms, oldest first and at most max,
// as the catch-up policy decides, and returns the time up to which they are decided: the job's
// new last, now unless max cut the list short.
func (j *Job) Due(last, now int64, dst []int64, maxFires int) ([]int64, int64) {
	missedBefore := now - CatchUpGrace.Milliseconds() // due before this: missed
	from := max(last, now-catchUpWindow.Milliseconds())
	if j.CatchUp != CatchUpAll && j.Every > 0 && from < missedBefore {
		// Skip the missed stretch arithmetically: an interval job can be due every second.
		every := j.Every.Milliseconds()
		lastMissed := missedBefore - ((missedBefore%every)+every)%every // the last fire <= missedBefore
		if lastMissed > from {
			if j.CatchUp == CatchUpLast {
				dst = append(dst, lastMissed)
			}
			from = lastMissed
		}
	}
	var pending int64 = -1 // CatchUpLast: the newest missed fire not yet fired
	for t, ok := j.Next(from); ok && t <= now; t, ok = j.Next(t) {
		if t <= missedBefore && j.CatchUp != CatchUpAll {
			if j.CatchUp == CatchUpLast {
				pending = t
			}
			continue
		}
		if pending >= 0 {
			dst, pending = append(dst, pending), -1
		}
		if len(dst) >= maxFires {
			return dst, dst[len(dst)-1]
		}
		dst = append(dst, t)
	}
	if pending >= 0 {
		dst = append(dst, pending)
	}
	return dst, now
}

// JobID derives a fired job's event id from the job's name, the scheduled time and the key
// ("" for a job without for_each), so a replay, or a fire repeated by mistake, has the same id.
func JobID(name string, scheduled int64, key string) [16]byte {
	return derivedID("job", scheduled, name, key)
}

// loadJob loads one entry of `jobs:`.
func loadJob(n *yaml.Node, cp *compiler) (*Job, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errAt(n, "", "a job must be a mapping")
	}
	j := &Job{Location: time.UTC}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "name" {
			j.Name = n.Content[i+1].Value
		}
	}
	if j.Name == "" {
		return nil, errAt(n, "", "a job needs a name")
	}
	what := "job " + j.Name
	var cronNode, emitNode, forEachNode *yaml.Node
	err := eachKey(n, what, func(k string, kn, v *yaml.Node) error {
		var err error
		switch k {
		case "name":
		case "cron":
			j.Cron, err = scalar(v, what, "cron")
			cronNode = v
		case "every":
			j.Every, err = parseEvery(v.Value)
			if err != nil || v.Kind != yaml.ScalarNode {
				return errAt(v, what, "every: %q is not a duration: use Go's units (90s, 15m, 1h30m) or days (1d)", v.Value)
			}
			if j.Every < time.Second || j.Every%time.Second != 0 {
				return errAt(v, what, "every must be a duration of whole seconds, at least 1s (15m, 1h)")
			}
		case "timezone":
			var tz string
			if tz, err = scalar(v, what, "timezone"); err == nil {
				if j.Location, err = time.LoadLocation(tz); err != nil {
					return errAt(v, what, "timezone: %v", err)
				}
			}
		case "emit":
			emitNode = v
		case "for_each":
			j.ForEach, err = scalar(v, what, "for_each")
			forEachNode = v
		case "catch_up":
			c := slices.Index(catchUpNames[:], v.Value)
			if c < 0 || v.Kind != yaml.ScalarNode {
				return errAt(v, what, "catch_up must be all, last or none")
			}
			j.CatchUp = CatchUp(c)
		default:
			return errAt(kn, what, "unknown key %q", k)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if (j.Cron == "") == (j.Every == 0) {
		return nil, errAt(n, what, "a job needs exactly one of cron and every")
	}
	if j.Cron != "" {
		if strings.HasPrefix(j.Cron, "@every") || strings.Contains(j.Cron, "TZ=") {
			return nil, errAt(cronNode, what, "cron: write every: and timezone: as keys of their own")
		}
		if j.sched, err = cronParser.Parse(j.Cron); err != nil {
			return nil, errAt(cronNode, what, "cron: %v", err)
		}
		j.wallTime = fixedHour(j.Cron)
	}
	if emitNode == nil {
		return nil, errAt(n, what, "a job needs emit: {type: T, properties: {...}}")
	}
	err = eachKey(emitNode, what, func(k string, kn, v *yaml.Node) error {
		var err error
		switch k {
		case "type":
			j.Type, err = scalar(v, what, "emit: type")
			j.Type = normType(j.Type)
		case "properties":
			err = eachKey(v, what, func(k string, _, pv *yaml.Node) error {
				s, err := scalar(pv, what, "emit: properties."+k)
				if err != nil {
					return err
				}
				t, err := parseTemplate("properties."+k, s, cp.lim)
				if err != nil {
					return errAt(pv, what, "emit: properties.%s: %v", k, err)
				}
				j.props = append(j.props, namedTmpl{name: k, t: t})
				return nil
			})
			slices.SortFunc(j.props, func(a, b namedTmpl) int { return strings.Compare(a.name, b.name) })
		default:
			return errAt(kn, what, "emit: unknown field %q", k)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if j.Type == "" {
		return nil, errAt(emitNode, what, "emit needs a type")
	}
	if _, ok := operators.ParseSystemType(j.Type); ok {
		return nil, errAt(emitNode, what, "emit: %s is a system-event type", j.Type)
	}
	if forEachNode != nil && strings.TrimSpace(j.ForEach) != "" {
		c, err := cp.compile(j.ForEach)
		if err != nil {
			return nil, errAt(forEachNode, what, "for_each: %v", err)
		}
		// A fire has no event of its own to test: a condition on event.* is never what was meant.
		if tree, err := parser.Parse(j.ForEach); err == nil && ast.Find(tree.Node, func(n ast.Node) bool {
			id, ok := n.(*ast.IdentifierNode)
			return ok && id.Value == "event"
		}) != nil {
			return nil, errAt(forEachNode, what, "for_each is a condition on each profile's state (profile.*), not on event.*: a job's fire has no event to test")
		}
		j.forEach = c
	}
	return j, nil
}

// fixedHour says whether a cron expression's hour field names hours (`9`, `8-17`, `2,14`)
// rather than running every hour or every few (`*`, `*/2`): descriptors other than @hourly
// name a fixed hour.
func fixedHour(spec string) bool {
	f := strings.Fields(spec)
	if len(f) == 1 {
		return f[0] != "@hourly"
	}
	return len(f) >= 2 && !strings.HasPrefix(f[1], "*")
}

// String describes the job's schedule: its cron expression and zone, or its interval.
func (j *Job) String() string {
	if j.Every > 0 {
		return "every " + shortDuration(j.Every)
	}
	return fmt.Sprintf("cron %q %s", j.Cron, j.Location)
}

// JobEvent fills env with the event that job j emits at scheduled (Unix ms) for key (the
// profile id, or "" for a job without for_each, whose event has no key) and returns it as a
// Timer to Apply like a fired schedule: its id is JobID, its name the job's, its Deadline the
// scheduled time, its Data the job's properties rendered against env and st (the key's state;
// an empty one for a job without for_each). A template's error is returned, with the Timer
// filled but for Data.
func (e *Engine) JobEvent(j *Job, scheduled int64, key string, env *Env, st *ProfileState) (Timer, error) {
	t := Timer{ID: JobID(j.Name, scheduled, key), Name: j.Name, Type: j.Type, Deadline: scheduled}
	env.SetTimer(key, &t)
	if len(j.props) == 0 || e.cfg == nil {
		return t, nil
	}
	cfg := e.cfg
	env.ensureSlots(&cfg.paths)
	r := &e.run
	var out Outcome
	r.env, r.st, r.out, r.lim, r.paths = env, st, &out, &cfg.Limits, &cfg.paths
	r.ctx = evalCtx{env: env, st: st, budget: cfg.Limits.MaxConditionBytes}
	r.rule, r.tdata, r.built, r.stateGen, r.builtGen, r.props, r.propsDone = "", nil, 0, 0, 0, nil, false
	defer func() { r.env, r.st, r.out, r.ctx, r.props, r.tdata = nil, nil, nil, evalCtx{}, nil, nil }()
	props, err := r.renderProps(j.props)
	if err != nil {
		return t, fmt.Errorf("job %s: %w", j.Name, err)
	}
	var w jsonObject
	w.b = r.jbuf[:0]
	for i, p := range j.props {
		w.str(p.name, props[i])
	}
	r.jbuf = w.end()
	t.Data = slices.Clone(r.jbuf)
	env.Event.Properties = t.Data
	return t, nil
}

// Matches reports whether key's state st matches j's for_each condition (always true for a
// job without one). A condition's error is returned as not matching.
func (e *Engine) Matches(j *Job, env *Env, st *ProfileState) (bool, error) {
	if j.forEach == nil {
		return true, nil
	}
	ctx := evalCtx{env: env, st: st}
	if e.cfg != nil {
		env.ensureSlots(&e.cfg.paths)
		ctx.budget = e.cfg.Limits.MaxConditionBytes
	}
	return j.forEach.eval(&ctx)
}

// parseEvery reads a job's every: a Go duration, or a whole number of days ("1d", "7d").
func parseEvery(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return 0, fmt.Errorf("bad day count %q", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// shortDuration writes d as a user writes it: 7d, 1h, 15m, 1h30m, 90s (not 1h0m0s).
func shortDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
