package pipeline

import (
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline/deadletter"
	"github.com/dwellhq/dwell/state"
)

// A flow is one partition's processing, shared by the live and the offline pipelines: the
// sessionizer, and the rules engine run on everything it emits (input events, system events,
// late events and fired schedules). The sessionizer's outputs pass through to a sink; what the
// rules produce (derived events, notifications, routed events, dead letters of failed events,
// the fired schedules themselves) and the event log go to the sink as records. Rule state is the
// sessionizer's key extension (operators/ext.go), so it is snapshotted, changelogged, evicted
// and restored with the key, and scheduled events fire from the sessionizer's timer wheel.
//
// Everything a flow writes derives from its input, never from the clock, except the event log's
// processing time when a clock is given; so live, offline, after a crash and after a rewind,
// the same input gives the same records.
type flow struct {
	s         *operators.Sessionizer
	eng       *rules.Engine
	rs        *RuleSet
	down      sink
	topics    Topics
	partition int32
	logLevel  rules.LogLevel
	clock     func() time.Time // measures processing time for the event log; nil: not measured

	// active: there is something to run (rules, a registry or an event log); otherwise input
	// events pass straight through.
	active bool

	env     rules.Env
	out     rules.Outcome
	fresh   *rules.ProfileState // the state handed to Apply for a key that has none yet
	scratch rules.ProfileState  // the state of keyless (pass-through) events, never kept
	due     []rules.Timer
	buf     []byte // event-log records
	sched   []byte // the fired schedule being applied
	hdrs    []kgo.RecordHeader

	// cause is the input what the flow is writing derives from (poison.go): the event or
	// record of the sessionizer's output at hand, or the event being admitted; none for
	// timers.
	cause cause

	// rejected describes the event the admission hook just dead-lettered, for its log entry.
	rejected struct {
		typ, id, key string
		time         int64
	}

	stats flowStats

	// Scheduled jobs (jobs.go): the inputs' partition count (0: not known, no job fires), each
	// job's state (part of the partition record), where a for_each job finds the partition's
	// keys and how many it takes a cycle, the fires at hand, a job's rules running (keyless:
	// against a throwaway state), the live pipeline's hook for its metrics, and the first
	// error listing keys.
	nparts     int32
	jobState   map[string]state.JobState
	keysAfter  func(after string, n int, fn func(key []byte)) error
	sweepKeys  int
	fires      []int64
	keyBuf     []string
	dirtyBuf   []string
	firingJob  bool
	jobKeyless bool
	onJob      func(job string, ok bool, delayMs int64)
	jobErr     error
}

// flowStats are a flow's counters, cumulative.
type flowStats = RuleCounts

// RuleCounts are what the rules did: events by state, outputs by kind, fired schedules, errors
// and dead letters. The live pipeline exports them as metrics (dwell_rule_*), the offline one
// in OfflineSummary.Rules.
type RuleCounts struct {
	// States counts events by their event-log state (rules.LogState), logged or not.
	States [rules.NumLogStates]uint64
	// Outputs counts rule outputs by kind (rules.OutputKind); Scheduled the fired schedules.
	Outputs   [rules.NumOutputKinds]uint64
	Scheduled uint64
	// Jobs counts the fires of scheduled jobs.
	Jobs uint64
	// RuleErrors counts rule run-time errors; RuleDead events dead-lettered for them.
	RuleErrors, RuleDead uint64
	// Logged counts event-log records.
	Logged uint64
}

// add adds o's counts to c.
func (c *RuleCounts) add(o *RuleCounts) {
	for i := range c.States {
		c.States[i] += o.States[i]
	}
	for i := range c.Outputs {
		c.Outputs[i] += o.Outputs[i]
	}
	c.Scheduled += o.Scheduled
	c.Jobs += o.Jobs
	c.RuleErrors += o.RuleErrors
	c.RuleDead += o.RuleDead
	c.Logged += o.Logged
}

// sink is where a flow writes: the sessionizer's outputs, and records for other topics.
type sink interface {
	operators.Emitter
	// Record writes one record. key, value and headers are owned by the sink after the call
	// only if it copies them: they may be reused once Record returns.
	Record(topic string, key, value []byte, headers []kgo.RecordHeader)
}

// newFlow makes the flow of partition over s's outputs. The caller creates s with the flow as
// its emitter (setSessionizer).
func newFlow(rs *RuleSet, topics Topics, partition int32, logLevel rules.LogLevel, down sink) *flow {
	f := &flow{eng: rules.NewEngine(nil, nil), topics: topics, partition: partition, logLevel: logLevel, down: down}
	f.setRules(rs)
	return f
}

// setSessionizer attaches the flow's sessionizer: rule state becomes its key extension, and the
// registry decides on each event before it is sessionized.
func (f *flow) setSessionizer(s *operators.Sessionizer) {
	f.s = s
	s.SetExtDecoder(decodeProfileState)
	s.SetAdmit(f.admit)
}

func decodeProfileState(b []byte) (operators.KeyExt, error) {
	st := new(rules.ProfileState)
	if err := st.Decode(b); err != nil {
		return nil, err
	}
	return st, nil
}

// setRules switches to rs (nil: none) between events.
func (f *flow) setRules(rs *RuleSet) {
	f.rs = rs
	if rs == nil {
		f.eng.SetConfig(nil, nil)
	} else {
		f.eng.SetConfig(rs.Rules, rs.Registry)
	}
	f.active = rs != nil && (rs.Rules != nil && len(rs.Rules.Rules) > 0 || rs.Registry != nil) || f.logLevel != rules.LogNone
}

func (f *flow) version() string {
	if f.rs == nil {
		return ""
	}
	return f.rs.Version
}

// admit is the sessionizer's admission hook: the registry's verdict, before sessionizing.
func (f *flow) admit(ev *operators.Event) operators.Admission {
	f.cause = cause{ev: ev}
	if f.eng.Registry() == nil {
		return operators.Admission{}
	}
	v := f.eng.Admit(ev.Type, ev.Properties)
	switch {
	case v.Reject:
		f.rejected.typ, f.rejected.key = ev.Type, string(keyOf(ev))
		f.rejected.id = string(eventID(ev))
		f.rejected.time = ev.Time
		return operators.Admission{Reason: v.Reason, Detail: v.Detail}
	case v.Ignore:
		f.stats.States[rules.Ignored]++
		if f.logLevel.Logs(rules.Ignored) {
			f.log(&rules.LogEntry{EventID: string(eventID(ev)), Type: ev.Type, Key: string(keyOf(ev)), Time: ev.Time,
				Topic: ev.Topic, Partition: ev.Partition, Offset: ev.Offset, State: rules.Ignored}, time.Time{})
		}
		return operators.Admission{Drop: true}
	}
	return operators.Admission{Ephemeral: v.Info != nil && v.Info.Ephemeral}
}

func keyOf(ev *operators.Event) []byte {
	if len(ev.Profile) > 0 {
		return ev.Profile
	}
	return ev.Session
}

func eventID(ev *operators.Event) []byte {
	if ev.ID != nil {
		return ev.ID
	}
	return operators.AppendEventID(nil, &operators.EventRef{Topic: ev.Topic, Partition: ev.Partition, Offset: ev.Offset})
}

// Emit receives the sessionizer's outputs.
func (f *flow) Emit(o *operators.Output) {
	f.cause = causeOf(o)
	if !f.active {
		switch {
		case o.Kind == operators.KindTimer:
			f.timer(o) // schedules left by an earlier rule set still fire
		case o.Event != nil && o.Event.Ephemeral && (o.Kind == operators.KindEvent || o.Kind == operators.KindPassThrough):
		default:
			f.down.Emit(o)
		}
		return
	}
	var began time.Time
	if f.clock != nil {
		began = f.clock()
	}
	switch o.Kind {
	case operators.KindDead:
		f.down.Emit(o)
		f.dead(o)
		return
	case operators.KindTimer:
		f.timer(o)
		return
	case operators.KindSystem:
		f.env.SetSystemOutput(o)
	case operators.KindEvent, operators.KindPassThrough, operators.KindLate:
		f.env.SetEvent(o.Event, o.Kind == operators.KindLate)
		f.env.Admitted = true
		if o.Visit != nil {
			f.env.SetVisit(o.VisitID, o.Visit)
		}
		if o.Session != nil {
			f.env.SetSession(o.SessionID, o.Session)
		}
	}
	if !(o.Event != nil && o.Event.Ephemeral && o.Kind != operators.KindSystem) {
		f.down.Emit(o)
	}
	f.apply(o, nil, began)
}

// apply runs the rules on the event in f.env, the cause of o, and writes what they decided.
// fired is the schedule that fired, for KindTimer.
func (f *flow) apply(o *operators.Output, fired *rules.Timer, began time.Time) {
	st, keyed := f.state(o)
	f.eng.Apply(&f.env, st, &f.out)
	out := &f.out
	if keyed && (out.StateChanged || len(out.Timers) > 0) {
		f.keep(o, st)
	}
	state := out.State
	if o.Kind == operators.KindLate && state == rules.Processed {
		state = rules.Late
	}
	f.stats.RuleErrors += uint64(len(out.Errors))
	for i := range out.Outputs {
		f.output(o, &out.Outputs[i])
	}
	if out.DeadLetter {
		f.deadLetterEvent(o, fired)
		state = rules.DeadLettered
	}
	// Counted in its final state, the one logged: metrics, the event log and dwell log agree.
	f.stats.States[state]++
	// Input events are logged at level all; system events and fired schedules only when a rule
	// matched them, or they would double the log with events no rule cares about. Every fire of
	// a job is logged: the log is where a fire is seen.
	system := o.Kind == operators.KindSystem || fired != nil
	if f.logLevel.Logs(state) && (!system || len(out.Fired) > 0 || len(out.Errors) > 0 || f.firingJob) {
		e := rules.LogEntry{EventID: f.env.Event.ID, Type: f.env.Event.Type, Key: f.env.Key, Time: f.env.Event.Time,
			State: state, Outcome: out, Offset: -1, Partition: f.partition}
		if ev := o.Event; ev != nil && o.Kind != operators.KindSystem {
			e.Topic, e.Partition, e.Offset = ev.Topic, ev.Partition, ev.Offset
		}
		f.log(&e, began)
	}
}

// state returns the rule state Apply works on: the key's extension, a fresh state for a key
// without one, or a throwaway state for keyless events.
func (f *flow) state(o *operators.Output) (_ *rules.ProfileState, keyed bool) {
	if o.Kind == operators.KindPassThrough || f.jobKeyless {
		f.scratch.Reset()
		return &f.scratch, false
	}
	if x, ok := f.s.Ext(o).(*rules.ProfileState); ok && x != nil {
		return x, true
	}
	if f.fresh == nil {
		f.fresh = new(rules.ProfileState)
	} else {
		f.fresh.Reset()
	}
	return f.fresh, true
}

// keep stores st as o's key's extension after Apply changed it.
func (f *flow) keep(o *operators.Output, st *rules.ProfileState) {
	if st == f.fresh {
		if st.Empty() {
			return
		}
		f.fresh = nil // the key owns it now
	}
	f.s.SetExt(o, st)
}

// timer fires the schedules due at o.Due: each is written to the events output as an event of
// its type, and the rules run on it.
func (f *flow) timer(o *operators.Output) {
	st, ok := f.s.Ext(o).(*rules.ProfileState)
	if !ok || st == nil {
		return
	}
	f.due = st.PopDue(o.Due, f.due[:0])
	key := string(o.Key)
	for i := range f.due {
		t := &f.due[i]
		var began time.Time
		if f.clock != nil {
			began = f.clock()
		}
		f.stats.Scheduled++
		f.sched = appendScheduledJSON(f.sched[:0], key, o.ProfileLess(), t)
		f.hdrs = append(f.hdrs[:0], kgo.RecordHeader{Key: "dwell-scheduled-by", Value: []byte(t.Cause)})
		f.down.Record(f.topics.Events, o.Key, f.sched, f.hdrs)
		f.env.SetTimerOutput(o, key, t)
		f.apply(o, t, began)
	}
	f.s.SetExt(o, st)
}

// output writes one rule output to its topic: an emit's topic, or the queue topic of the
// action's queue, else of the event type's registry queue, else DefaultQueue.
func (f *flow) output(o *operators.Output, r *rules.Output) {
	f.stats.Outputs[r.Kind]++
	topic := r.Topic
	if topic == "" {
		q := r.Queue
		if q == "" && f.out.Type != nil {
			q = f.out.Type.Queue
		}
		if q == "" {
			q = DefaultQueue
		}
		topic = QueueTopic(f.topics.QueuePrefix, q)
	}
	value := r.Value
	if r.Kind == rules.OutRoute {
		value = f.eventJSON(o)
	}
	f.hdrs = append(f.hdrs[:0],
		kgo.RecordHeader{Key: "dwell-rule", Value: []byte(r.Rule)},
		kgo.RecordHeader{Key: "dwell-kind", Value: []byte(r.Kind.String())},
		kgo.RecordHeader{Key: "dwell-cause", Value: []byte(f.env.Event.ID)})
	f.down.Record(topic, []byte(r.Key), value, f.hdrs)
}

// eventJSON is the JSON of the event the rules ran on, as it is written to its output (routes
// send it to a queue).
func (f *flow) eventJSON(o *operators.Output) []byte {
	if o.Kind == operators.KindTimer {
		return append([]byte(nil), f.sched...) // the fired schedule, as timer() wrote it
	}
	return operators.AppendJSON(nil, o)
}

// deadLetterEvent writes an event whose rules failed to the dead-letter topic: an input
// event's original bytes, a system event or fired schedule as JSON.
func (f *flow) deadLetterEvent(o *operators.Output, fired *rules.Timer) {
	f.stats.RuleDead++
	var key, value []byte
	topic, partition, offset := "", f.partition, int64(-1)
	switch {
	case fired != nil:
		key, value = o.Key, append([]byte(nil), f.sched...)
	case o.Kind == operators.KindSystem:
		key, value = o.Key, operators.AppendJSON(nil, o)
	default:
		ev := o.Event
		key, value = keyOf(ev), ev.Raw
		topic, partition, offset = ev.Topic, ev.Partition, ev.Offset
	}
	f.hdrs = deadletter.AppendHeaders(f.hdrs[:0], deadletter.Source{Reason: string(f.out.Reason), Detail: f.out.Detail,
		Topic: topic, Partition: partition, Offset: offset, EventID: f.env.Event.ID})
	f.down.Record(f.topics.Dead, key, value, f.hdrs)
}

// dead logs a record the sessionizer dead-lettered: undecodable, or rejected by the registry.
func (f *flow) dead(o *operators.Output) {
	f.stats.States[rules.DeadLettered]++
	if !f.logLevel.Logs(rules.DeadLettered) {
		return
	}
	rec := o.Record
	e := rules.LogEntry{Key: string(rec.Key), Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
		State: rules.DeadLettered, Outcome: &rules.Outcome{State: rules.DeadLettered, Reason: o.Reason, Detail: o.Detail}}
	e.EventID = string(operators.AppendEventID(nil, &operators.EventRef{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset}))
	// Its time: the record's timestamp, else the largest event time its partition had seen
	// (a file's lines have no timestamp); none before any.
	switch {
	case rec.Timestamp != operators.NoTimestamp && rec.Timestamp >= 0:
		e.Time = rec.Timestamp
	default:
		t, seen := f.s.MaxSeen()
		e.Time, e.NoTime = t, !seen
	}
	if o.Reason == operators.ReasonUnregistered || o.Reason == operators.ReasonSchemaViolation {
		e.Type, e.EventID, e.Key = f.rejected.typ, f.rejected.id, f.rejected.key
		e.Unregistered = o.Reason == operators.ReasonUnregistered
		e.Time, e.NoTime = f.rejected.time, false // the event was decoded: its own time
	}
	f.log(&e, time.Time{})
}

// log writes one event-log record, keyed by the event's key.
func (f *flow) log(e *rules.LogEntry, began time.Time) {
	e.ConfigVersion = f.version()
	if f.clock != nil && !began.IsZero() {
		e.ProcessingMicros = max(f.clock().Sub(began).Microseconds(), 1)
	}
	f.stats.Logged++
	f.buf = rules.AppendLogJSON(f.buf[:0], e)
	f.down.Record(f.topics.EventLog, []byte(e.Key), f.buf, nil)
}

// appendScheduledJSON appends the event a fired schedule of key (a profile id, or a session
// id) emits.
func appendScheduledJSON(dst []byte, key string, session bool, t *rules.Timer) []byte {
	v := struct {
		ID         string          `json:"id"`
		Type       string          `json:"type"`
		Time       string          `json:"time"`
		Profile    string          `json:"profile,omitempty"`
		Session    string          `json:"session,omitempty"`
		Properties json.RawMessage `json:"properties,omitempty"`
		Scheduled  struct {
			Name  string `json:"name"`
			Cause string `json:"cause_event_id"`
		} `json:"scheduled"`
	}{ID: hex.EncodeToString(t.ID[:]), Type: t.Type, Time: string(operators.AppendTime(nil, t.Deadline)), Properties: t.Data}
	if session {
		v.Session = key
	} else {
		v.Profile = key
	}
	v.Scheduled.Name, v.Scheduled.Cause = t.Name, t.Cause
	b, err := json.Marshal(v)
	if err != nil { // Data is a JSON object the rules wrote, so this does not happen; keep the rest
		v.Properties = nil
		b, _ = json.Marshal(v)
	}
	return append(dst, b...)
}
