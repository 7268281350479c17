package pipeline

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline/deadletter"
)

// OfflineConfig configures a run over a file instead of Kafka.
type OfflineConfig struct {
	// Operators configures decoding and sessionization, exactly as for the live pipeline.
	// A line longer than Operators.MaxEventBytes is dead-lettered (too-large) with only its
	// first MaxEventBytes bytes.
	Operators operators.Config
	// Partitions hashes keys (profile, else session) over this many partitions with Kafka's
	// default partitioner, each with its own watermark, as a keyed topic would. Default 1.
	Partitions int
	// Topic names the input in derived event ids and dead letters. Default "file".
	Topic string
	// Rules run on every event as in the live pipeline (nil: none). EventLog says which events
	// are logged: all, errors or none (default).
	Rules    *RuleSet
	EventLog string
	// Topics name the rules' output topics in Rules lines (default DefaultTopics).
	Topics Topics
	// MaxCachedKeys bounds the keys each partition keeps in memory, as LiveConfig's does; colder
	// keys wait in a temporary Pebble store and are read back when needed. Default 1,000,000.
	MaxCachedKeys int
	// TempDir is where that store is made, in a directory of its own (dwell-process-*) that the
	// run removes, also when it fails or is interrupted. Default os.TempDir(). Nothing is
	// written there unless a partition holds more than MaxCachedKeys keys.
	TempDir string
}

// OfflineOutputs are where the output streams go, as JSON Lines; a nil writer discards its
// stream (it is still counted).
type OfflineOutputs struct {
	System, Events, Late, Dead io.Writer
	// Rules gets what rules write to queues and emit topics, one JSON object per record:
	// {"topic":"dwell.queue.q","key":"p1","headers":{"dwell-rule":"r",...},"value":{...}}. Fired
	// schedules go to Events and the event log to EventLog, as their values; dead letters of
	// failed events go to Dead in the layout of every dead letter (operators.AppendDeadJSON).
	Rules, EventLog io.Writer
}

// OfflineSummary counts what a run read and wrote.
type OfflineSummary struct {
	Lines  int64 // non-empty input lines
	Totals operators.Stats
	// Rules counts what the rules did (all zero without rules and event log); its RuleDead
	// are dead letters too, next to Totals.Dead.
	Rules RuleCounts
	// Written counts the lines written to each output that has a writer: what the outputs
	// hold, also after an interrupted run.
	Written OfflineCounts
}

// OfflineCounts are lines per output stream.
type OfflineCounts struct {
	System, Events, Late, Dead, Rules, EventLog int64
}

// RunOffline reads JSON Lines from r, one event per line (the line number, from 0, stands in
// for the offset; blank lines are skipped but keep their number), processes them with the
// operators, and at the end of input flushes every open visit and session (reason
// shutdown-flush); scheduled events after the last event time seen stay pending (counted in
// Totals.ExtPending). Bad lines become dead letters; only I/O errors and ctx stop a run.
//
// Cancelling ctx stops the run promptly, also while a read blocks and in the middle of a flush
// or of a long run of timers: the outputs are flushed with every line written so far (Written
// counts them) and the error wraps ctx's. Memory is bounded by MaxCachedKeys (see coldKeys)
// and, for input, by MaxEventBytes.
func RunOffline(ctx context.Context, cfg OfflineConfig, r io.Reader, out OfflineOutputs) (sum OfflineSummary, err error) {
	if cfg.Partitions == 0 {
		cfg.Partitions = 1
	}
	if cfg.Topic == "" {
		cfg.Topic = "file"
	}
	if cfg.Partitions < 1 {
		return sum, fmt.Errorf("pipeline: partitions must be positive, got %d", cfg.Partitions)
	}
	if cfg.MaxCachedKeys == 0 {
		cfg.MaxCachedKeys = DefaultLiveConfig().MaxCachedKeys
	}
	if cfg.MaxCachedKeys < 0 {
		return sum, fmt.Errorf("pipeline: the key cap must not be negative, got %d", cfg.MaxCachedKeys)
	}
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	if fi, err := os.Stat(cfg.TempDir); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return sum, fmt.Errorf("pipeline: temporary directory %s: %w", cfg.TempDir, err)
	}
	opCfg := cfg.Operators
	opCfg.EnsureDefaults()
	if cfg.EventLog == "" {
		cfg.EventLog = "none"
	}
	level, err := rules.ParseLogLevel(cfg.EventLog)
	if err != nil {
		return sum, err
	}
	def := DefaultTopics()
	if cfg.Topics.QueuePrefix == "" {
		cfg.Topics.QueuePrefix = def.QueuePrefix
	}
	if cfg.Topics.EventLog == "" {
		cfg.Topics.EventLog = def.EventLog
	}
	if cfg.Topics.Events == "" {
		cfg.Topics.Events = def.Events
	}
	if cfg.Topics.Dead == "" {
		cfg.Topics.Dead = def.Dead
	}
	if err := cfg.Rules.checkReserved(cfg.Topics.QueuePrefix, ReservedTopics(nil, cfg.Topics, "")); err != nil {
		return sum, err
	}

	// ctx is checked before every line and every output (ctx.Err of a cancelCtx is an atomic
	// load).
	w := &jsonlEmitter{topics: cfg.Topics, ctx: ctx}
	for i, dst := range []io.Writer{out.System, out.Events, out.Late, out.Dead, out.Rules, out.EventLog} {
		if dst != nil {
			w.streams[i].w = bufio.NewWriterSize(dst, 256<<10)
		}
	}
	cold := &coldKeys{parent: cfg.TempDir, max: cfg.MaxCachedKeys, ctx: ctx}
	defer func() { err = errors.Join(err, cold.close()) }()
	run := &offlineRun{cfg: &cfg, cold: cold, out: w, sum: &sum}
	run.parts = make([]*operators.Sessionizer, cfg.Partitions)
	flows := make([]*flow, cfg.Partitions)
	run.flows = flows
	for i := range run.parts {
		f := newFlow(cfg.Rules, cfg.Topics, int32(i), level, w)
		f.nparts = int32(cfg.Partitions)
		f.sweepKeys = math.MaxInt // offline: a fire goes over every key at once
		f.keysAfter = run.keysAfter(int32(i))
		flows[i] = f
		s, err := operators.NewSessionizer(opCfg, int32(i), f)
		if err != nil {
			return sum, err
		}
		f.setSessionizer(s)
		s.SetColdStore(cold.partition(int32(i)))
		s.SetBudget(run.budget())
		run.parts[i] = s
	}
	run.keyDec = operators.NewDecoder(&opCfg)

	in := newCtxReader(ctx, r)
	defer in.close()
	err = run.run(ctx, newLineReader(in, opCfg.MaxEventBytes))
	// What was written stays written, also after an error or an interruption.
	sum.Totals = addStats(run.parts)
	for _, f := range flows {
		sum.Rules.add(&f.stats)
	}
	errs := []error{err}
	for _, st := range w.streams {
		if st.w != nil {
			errs = append(errs, st.w.Flush())
		}
	}
	w.counts(&sum.Written)
	if err == nil {
		errs = append(errs, w.err)
	}
	return sum, errors.Join(errs...)
}

// interrupted is what the emitter and the cold store panic with once ctx is done, to leave a
// call into a sessionizer that would go on for long (a flush, timers firing over a long stretch
// of event time, a rule that keeps scheduling, loading evicted keys back): the sessionizer
// cannot be asked to stop, and the run does not use it again. run recovers it.
type interrupted struct{}

// offlineRun is one RunOffline: its partitions and where it is.
type offlineRun struct {
	cfg      *OfflineConfig
	parts    []*operators.Sessionizer
	flows    []*flow
	keyDec   *operators.Decoder
	ev       operators.Event
	cold     *coldKeys
	out      *jsonlEmitter
	sum      *OfflineSummary
	line     int64 // the line being read or processed
	flushing bool  // input has ended
}

// run reads every line and processes it, then flushes each partition.
func (o *offlineRun) run(ctx context.Context, lr *lineReader) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interrupted); !ok {
				panic(r)
			}
			err = o.interrupted(ctx)
		}
	}()
	for o.line = 0; ; o.line++ {
		if ctx.Err() != nil {
			return o.interrupted(ctx)
		}
		l, rerr := lr.next()
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			if ctx.Err() != nil {
				return o.interrupted(ctx)
			}
			return fmt.Errorf("pipeline: reading line %d: %w", o.line+1, rerr)
		}
		if !l.blank {
			o.sum.Lines++
			o.process(&l)
			if o.out.err != nil {
				return o.out.err
			}
		}
		if o.line%spillEvery == spillEvery-1 {
			if err := o.spill(); err != nil {
				return err
			}
		}
		if rerr != nil { // io.EOF
			break
		}
	}
	o.flushing = true
	for i := range o.parts {
		if ctx.Err() != nil {
			return o.interrupted(ctx)
		}
		if err := o.flush(int32(i)); err != nil {
			return err
		}
	}
	return nil
}

func (o *offlineRun) interrupted(ctx context.Context) error {
	if o.flushing {
		return fmt.Errorf("pipeline: interrupted in the end-of-input flush: %w", ctx.Err())
	}
	return fmt.Errorf("pipeline: interrupted at line %d: %w", o.line, ctx.Err())
}

// process hands one line to its partition.
func (o *offlineRun) process(l *line) {
	rec := &operators.Record{Topic: o.cfg.Topic, Offset: o.line, Value: l.value, Timestamp: operators.NoTimestamp}
	if l.cut() {
		// Only its start was kept: it is dead-lettered with that, as the decoder would have
		// dead-lettered the whole line, on partition 0 as every undecodable record.
		o.parts[0].Reject(rec, operators.ReasonTooLarge, fmt.Sprintf("line of %d bytes cut to the first %d", l.size, len(l.value)))
		return
	}
	if len(o.parts) > 1 {
		// Route by key as a Kafka producer would; undecodable records go to partition 0, where
		// they are dead-lettered.
		if err := o.keyDec.Decode(rec, &o.ev); err == nil || err == operators.ErrBatch { // a batch: its own profile
			key := o.ev.Profile
			if len(key) == 0 {
				key = o.ev.Session
			}
			if len(key) > 0 {
				rec.Partition = KafkaPartition(key, int32(len(o.parts)))
			}
		}
	}
	s := o.parts[rec.Partition]
	s.Process(rec)
	// Jobs fire on event time: the partition's watermark, after what it fired.
	if wm := s.Watermark(); wm > 0 {
		o.flows[rec.Partition].fireAllJobs(wm)
	}
}

// spill moves the keys of every partition over the cap (or with more changed keys than the
// cap, forgotten ones included, which are only recycled once drained) to the cold store.
func (o *offlineRun) spill() error {
	for i, s := range o.parts {
		keys, undrained := s.Resident()
		if keys > o.cfg.MaxCachedKeys || undrained > o.cfg.MaxCachedKeys || s.Behind() {
			if err := o.cold.spill(int32(i), s); err != nil {
				return err
			}
		}
		// A watermark that jumped (a timer storm) is worked off in steps of loads, a spill
		// after each, before more input is read (what arrived meanwhile is held).
		for s.Behind() {
			s.SetBudget(o.budget())
			s.Continue()
			if err := s.Err(); err != nil {
				return err
			}
			if err := o.cold.spill(int32(i), s); err != nil {
				return err
			}
		}
		s.SetBudget(o.budget())
	}
	return nil
}

// flush ends partition p's input. Flushing fires every remaining timer, and so loads every
// evicted key with one back: it runs in steps of at most MaxCachedKeys keys loaded
// (operators.Budget), each followed by a spill to the cold store, so that the flush too stays
// within MaxCachedKeys. ctx is checked by the emitter and the cold store (interrupted).
func (o *offlineRun) flush(p int32) error {
	s := o.parts[p]
	for {
		s.SetBudget(o.budget())
		s.Flush()
		if o.out.err != nil {
			return o.out.err
		}
		if err := s.Err(); err != nil || !s.Behind() {
			// Jobs fire up to the largest event time seen, as schedules do.
			if t, seen := s.MaxSeen(); err == nil && seen && t > 0 {
				o.flows[p].fireAllJobs(t)
			}
			return err
		}
		if err := o.cold.spill(p, s); err != nil {
			return err
		}
	}
}

// keysAfter lists partition p's keys for a for_each job (jobs.go): those in memory and those
// evicted to the cold store, in byte order.
func (o *offlineRun) keysAfter(p int32) func(after string, n int, fn func(key []byte)) error {
	return func(after string, n int, fn func(key []byte)) error {
		keys := o.parts[p].AppendKeys(nil)
		if st := o.cold.store; st != nil {
			if err := st.KeysAfter(p, after, math.MaxInt, func(k []byte) { keys = append(keys, string(k)) }); err != nil {
				return err
			}
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		for _, k := range keys {
			if k > after && n > 0 {
				fn([]byte(k))
				n--
			}
		}
		return nil
	}
}

// budget bounds the evicted keys a partition loads back between two spills.
func (o *offlineRun) budget() operators.Budget {
	return operators.Budget{Loads: max(o.cfg.MaxCachedKeys, 1000)}
}

func addStats(parts []*operators.Sessionizer) operators.Stats {
	t := operators.Stats{DeadByReason: map[operators.Reason]uint64{}}
	for _, s := range parts {
		t.Add(s.Stats())
	}
	return t
}

// The output streams of jsonlEmitter, in OfflineOutputs' order.
const (
	streamSystem = iota
	streamEvents
	streamLate
	streamDead
	streamRules
	streamEventLog
	numStreams
)

// jsonlEmitter writes each output stream as JSON Lines.
type jsonlEmitter struct {
	// One writer per output stream (OfflineOutputs); nil: the stream is not written.
	streams [numStreams]struct {
		w *bufio.Writer
		n int64 // lines written
	}
	topics Topics
	buf    []byte
	err    error
	// Once ctx is done, the next output panics with interrupted.
	ctx context.Context
}

// counts reports the lines written per stream.
func (e *jsonlEmitter) counts(c *OfflineCounts) {
	*c = OfflineCounts{System: e.streams[streamSystem].n, Events: e.streams[streamEvents].n,
		Late: e.streams[streamLate].n, Dead: e.streams[streamDead].n, Rules: e.streams[streamRules].n,
		EventLog: e.streams[streamEventLog].n}
}

// write writes e.buf, one line, to stream i.
func (e *jsonlEmitter) write(i int, what string) {
	if _, err := e.streams[i].w.Write(e.buf); err != nil {
		e.err = fmt.Errorf("pipeline: writing %s output: %w", what, err)
		return
	}
	e.streams[i].n++
}

// Record writes a flow's record: fired schedules to the events stream and event-log records to
// the event log as their values, dead letters of failed events to the dead stream in the one
// dead-letter layout (operators.AppendDeadJSON), the rest as Rules lines to the rules stream.
func (e *jsonlEmitter) Record(topic string, key, value []byte, headers []kgo.RecordHeader) {
	if e.ctx.Err() != nil {
		panic(interrupted{})
	}
	var i int
	switch topic {
	case e.topics.Events:
		i = streamEvents
	case e.topics.EventLog:
		i = streamEventLog
	case e.topics.Dead:
		i = streamDead
	default:
		i = streamRules
	}
	if e.streams[i].w == nil || e.err != nil {
		return
	}
	switch {
	case topic == e.topics.Events || topic == e.topics.EventLog:
		e.buf = append(append(e.buf[:0], value...), '\n')
	case i == streamDead:
		// One layout for every line of the dead stream: as the sessionizer's own.
		src, _ := deadletter.Read(headers)
		e.buf = append(operators.AppendDeadJSON(e.buf[:0], operators.DeadLetter{Reason: src.Reason, Detail: src.Detail,
			Topic: src.Topic, Partition: src.Partition, Offset: src.Offset, EventID: src.EventID, Value: value}), '\n')
	default:
		e.buf = appendRecordLine(e.buf[:0], topic, key, value, headers)
	}
	e.write(i, topic)
}

// appendRecordLine appends a Rules line (see OfflineOutputs) and a newline. A value that is not
// JSON (a dead letter's original bytes) is written as a JSON string.
func appendRecordLine(dst []byte, topic string, key, value []byte, headers []kgo.RecordHeader) []byte {
	h := make(map[string]string, len(headers))
	for _, x := range headers {
		h[x.Key] = string(x.Value)
	}
	v := json.RawMessage(value)
	if !json.Valid(value) {
		v, _ = json.Marshal(string(value))
	}
	b, _ := json.Marshal(struct {
		Topic   string            `json:"topic"`
		Key     string            `json:"key"`
		Headers map[string]string `json:"headers,omitempty"`
		Value   json.RawMessage   `json:"value"`
	}{topic, string(key), h, v})
	return append(append(dst, b...), '\n')
}

func (e *jsonlEmitter) Emit(o *operators.Output) {
	if e.ctx.Err() != nil {
		panic(interrupted{})
	}
	if o.Event != nil && o.Event.Ephemeral && (o.Kind == operators.KindEvent || o.Kind == operators.KindPassThrough) {
		return
	}
	var i int
	switch o.Kind {
	case operators.KindSystem:
		i = streamSystem
	case operators.KindEvent, operators.KindPassThrough:
		i = streamEvents
	case operators.KindLate:
		i = streamLate
	case operators.KindDead:
		i = streamDead
	default:
		return
	}
	if e.streams[i].w == nil || e.err != nil {
		return
	}
	e.buf = append(operators.AppendJSON(e.buf[:0], o), '\n')
	e.write(i, o.Kind.String())
}
