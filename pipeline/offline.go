package pipeline

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
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
}

// OfflineOutputs are where the output streams go, as JSON Lines; a nil writer discards its
// stream (it is still counted).
type OfflineOutputs struct {
	System, Events, Late, Dead io.Writer
	// Rules gets what rules write to queues and emit topics, one JSON object per record:
	// {"topic":"dwell.queue.q","key":"p1","headers":{"dwell-rule":"r",...},"value":{...}}. Fired
	// schedules go to Events and the event log to EventLog, as their values; dead letters of
	// failed events go to Dead as Rules lines.
	Rules, EventLog io.Writer
}

// OfflineSummary counts what a run read and wrote.
type OfflineSummary struct {
	Lines  int64 // non-empty input lines
	Totals operators.Stats
}

// RunOffline reads JSON Lines from r, one event per line (the line number, from 0, stands in
// for the offset; blank lines are skipped but keep their number), processes them with the
// operators, and at the end of input flushes every open visit and session (reason
// shutdown-flush). Bad lines become dead letters; only I/O errors and ctx stop a run.
func RunOffline(ctx context.Context, cfg OfflineConfig, r io.Reader, out OfflineOutputs) (OfflineSummary, error) {
	if cfg.Partitions == 0 {
		cfg.Partitions = 1
	}
	if cfg.Topic == "" {
		cfg.Topic = "file"
	}
	var sum OfflineSummary
	if cfg.Partitions < 1 {
		return sum, fmt.Errorf("pipeline: partitions must be positive, got %d", cfg.Partitions)
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
	w := &jsonlEmitter{topics: cfg.Topics}
	for _, o := range []struct {
		w   **bufio.Writer
		dst io.Writer
	}{{&w.system, out.System}, {&w.events, out.Events}, {&w.late, out.Late}, {&w.dead, out.Dead},
		{&w.rules, out.Rules}, {&w.eventLog, out.EventLog}} {
		if o.dst != nil {
			*o.w = bufio.NewWriterSize(o.dst, 256<<10)
		}
	}
	parts := make([]*operators.Sessionizer, cfg.Partitions)
	for i := range parts {
		f := newFlow(cfg.Rules, cfg.Topics, int32(i), level, w)
		s, err := operators.NewSessionizer(opCfg, int32(i), f)
		if err != nil {
			return sum, err
		}
		f.setSessionizer(s)
		parts[i] = s
	}
	keyDec := operators.NewDecoder(&opCfg)
	var ev operators.Event

	lr := newLineReader(r, opCfg.MaxEventBytes)
	var line int64 = -1
	for {
		line++
		if line&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return sum, err
			}
		}
		l, err := lr.next()
		if !l.blank {
			sum.Lines++
			rec := &operators.Record{Topic: cfg.Topic, Offset: line, Value: l.value, Timestamp: operators.NoTimestamp}
			switch {
			case l.cut():
				// Only its start was kept: it is dead-lettered with that, as the decoder would
				// have dead-lettered the whole line, on partition 0 as every undecodable record.
				parts[0].Reject(rec, operators.ReasonTooLarge, fmt.Sprintf("line of %d bytes cut to the first %d", l.size, len(l.value)))
			case cfg.Partitions > 1:
				// Route by key as a Kafka producer would; undecodable records go to partition
				// 0, where they are dead-lettered.
				if keyDec.Decode(rec, &ev) == nil {
					key := ev.Profile
					if len(key) == 0 {
						key = ev.Session
					}
					if len(key) > 0 {
						rec.Partition = KafkaPartition(key, int32(cfg.Partitions))
					}
				}
				fallthrough
			default:
				parts[rec.Partition].Process(rec)
			}
			if w.err != nil {
				return sum, w.err
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return sum, fmt.Errorf("pipeline: reading line %d: %w", line+1, err)
		}
	}
	for _, s := range parts {
		s.Flush()
	}
	sum.Totals = addStats(parts)
	var errs []error
	for _, bw := range []*bufio.Writer{w.system, w.events, w.late, w.dead, w.rules, w.eventLog} {
		if bw != nil {
			errs = append(errs, bw.Flush())
		}
	}
	return sum, errors.Join(append(errs, w.err)...)
}

func addStats(parts []*operators.Sessionizer) operators.Stats {
	t := operators.Stats{DeadByReason: map[operators.Reason]uint64{}}
	for _, s := range parts {
		t.Add(s.Stats())
	}
	return t
}

// jsonlEmitter writes each output stream as JSON Lines.
type jsonlEmitter struct {
	// One writer per output stream (OfflineOutputs); nil: the stream is not written.
	system, events, late, dead, rules, eventLog *bufio.Writer
	topics                                      Topics
	buf                                         []byte
	err                                         error
}

// Record writes a flow's record: fired schedules to the events stream and event-log records to
// the event log as their values; the rest, as Rules lines, to the dead stream (dead letters)
// or the rules stream.
func (e *jsonlEmitter) Record(topic string, key, value []byte, headers []kgo.RecordHeader) {
	var w *bufio.Writer
	switch topic {
	case e.topics.Events:
		w = e.events
	case e.topics.EventLog:
		w = e.eventLog
	case e.topics.Dead:
		w = e.dead
	default:
		w = e.rules
	}
	if w == nil || e.err != nil {
		return
	}
	if topic == e.topics.Events || topic == e.topics.EventLog {
		e.buf = append(append(e.buf[:0], value...), '\n')
	} else {
		e.buf = appendRecordLine(e.buf[:0], topic, key, value, headers)
	}
	if _, err := w.Write(e.buf); err != nil {
		e.err = fmt.Errorf("pipeline: writing %s output: %w", topic, err)
	}
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
	if o.Event != nil && o.Event.Ephemeral && (o.Kind == operators.KindEvent || o.Kind == operators.KindPassThrough) {
		return
	}
	var w *bufio.Writer
	switch o.Kind {
	case operators.KindSystem:
		w = e.system
	case operators.KindEvent, operators.KindPassThrough:
		w = e.events
	case operators.KindLate:
		w = e.late
	case operators.KindDead:
		w = e.dead
	}
	if w == nil || e.err != nil {
		return
	}
	e.buf = append(operators.AppendJSON(e.buf[:0], o), '\n')
	if _, err := w.Write(e.buf); err != nil {
		e.err = fmt.Errorf("pipeline: writing %s output: %w", o.Kind, err)
	}
}
