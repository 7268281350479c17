package pipeline

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline/deadletter"
)

// emitter produces a worker's outputs into the cycle's transaction. Every record is checked
// first against what its topic takes (limits.go) and against the records Kafka refused in an
// earlier try (poison.go):
//
//   - an output larger than its topic's max.message.bytes is not produced; the input it derives
//     from is dead-lettered (output-too-large, the detail naming the topic and the sizes) once,
//     and the input's other outputs stand. An output that derives from no input is
//     dead-lettered itself;
//   - a dead letter larger than the dead-letter topic's max.message.bytes is cut to fit
//     (deadletter.Cut), marked with the header dwell-truncated;
//   - an output Kafka refused before is withheld, and what it derives from dead-lettered
//     (produce-failed).
type emitter struct {
	l       *Live
	w       *worker
	promise func(*kgo.Record, error)
	// replay, set while the partition replays input after a dwell reset, is the reset's id:
	// every output then carries it in the header ReplayHeader.
	replay []byte

	origin   *origin  // the Context of the last input's outputs, reused while it is the same
	origins  []origin // where origins are allocated, many at a time
	lastDead inputRef // the input last dead-lettered here, so that each is dead-lettered once
	// dead counts the dead letters of the producer's reasons (output-too-large,
	// produce-failed) this worker wrote; applied to the metrics when their cycle commits.
	dead, applied [2]uint64
}

// ReplayHeader marks the outputs a partition writes while it replays input after a dwell
// reset (from the reset's savepoint, or the start, up to the offsets the group had reached
// before it); its value is the reset's id. Their values are the bytes of the first pass.
const ReplayHeader = "dwell-replay"

const (
	deadTooLarge = iota
	deadRefused
)

// Record produces a record of the flow's (rules outputs, the event log) into the cycle's
// transaction, partitioned by key like the other outputs.
func (e *emitter) Record(topic string, key, value []byte, headers []kgo.RecordHeader) {
	r := &kgo.Record{Topic: topic, Partition: e.w.partition, Key: bytes.Clone(key), Value: bytes.Clone(value)}
	if len(headers) > 0 {
		r.Headers = make([]kgo.RecordHeader, len(headers))
		for i, h := range headers {
			r.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: bytes.Clone(h.Value)}
		}
	}
	e.produce(r, e.w.f.cause, -1)
}

func (e *emitter) Emit(o *operators.Output) {
	t := e.l.cfg.Topics
	r := &kgo.Record{Partition: e.w.partition}
	switch o.Kind {
	case operators.KindSystem:
		r.Topic = t.System
	case operators.KindEvent, operators.KindPassThrough:
		r.Topic = t.Events
	case operators.KindLate:
		r.Topic = t.Late
	case operators.KindDead:
		r.Topic = t.Dead
		rec := o.Record
		r.Key, r.Value = rec.Key, rec.Value // original bytes; still owned by the fetched record
		r.Headers = deadletter.AppendHeaders(nil, deadletter.Source{Reason: string(o.Reason), Detail: o.Detail,
			Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset})
		e.produce(r, causeOf(o), -1)
		return
	}
	// Keyed like the input: by profile, or session for profile-less events. Pass-through events
	// have no key (and may be released while another record is processed).
	if o.Key != nil {
		r.Key = append([]byte(nil), o.Key...)
	}
	r.Value = operators.AppendJSON(nil, o)
	e.produce(r, causeOf(o), -1)
}

// produce writes r, which derives from c, unless Kafka cannot take it (see emitter). made is
// the reason of a dead letter made here (deadTooLarge, deadRefused), -1 for any other record.
func (e *emitter) produce(r *kgo.Record, c cause, made int) {
	p := &e.l.poison
	if made < 0 && c.ok() && p.active() {
		if v, ok := p.input(c.ref()); ok && (r.Topic == e.l.cfg.Topics.Dead || slices.Contains(v.topics, r.Topic)) {
			// The input's own dead letters are withheld too: the produce-failed one replaces them.
			e.deadLetterRefused(c, &v)
			return
		}
	}
	if e.replay != nil {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: ReplayHeader, Value: e.replay})
	}
	limit := e.l.limits.of(r.Topic)
	if size := deadletter.RecordBatchSize(r.Key, r.Value, r.Headers); size > limit {
		if r.Topic != e.l.cfg.Topics.Dead {
			e.tooLarge(r, c, size, limit)
			return
		}
		if !deadletter.Cut(r, limit) {
			e.l.log.Error("dropping a dead letter: its headers alone are over the dead-letter topic's max.message.bytes",
				"topic", r.Topic, "size", size, "limit", limit)
			return
		}
	}
	if !c.ok() && p.active() {
		if v, ok := p.output(p.fingerprint(r)); ok {
			if v.drop || r.Topic == e.l.cfg.Topics.Dead {
				// Dead-lettering it again would write the same bytes to the same topic.
				e.l.log.Error("dropping a dead letter that Kafka refused", "topic", r.Topic, "err", v.err)
				return
			}
			e.deadLetter(r, operators.ReasonProduceFailed, v.detail(), deadRefused)
			return
		}
	}
	if made >= 0 {
		e.dead[made]++
	}
	r.Context = e.originOf(c, made == deadRefused)
	e.w.count(r.Topic)
	e.l.cl.Produce(r.Context, r, e.promise)
}

// tooLarge replaces output r, size bytes alone in a batch, over its topic's limit: the input
// it derives from is dead-lettered (once), or r itself when it derives from none.
func (e *emitter) tooLarge(r *kgo.Record, c cause, size, limit int) {
	if c.ok() && e.lastDead == c.ref() {
		return // its input is dead-lettered already
	}
	detail := fmt.Sprintf("its output to %s takes %d bytes in a record batch, over the %d the topic takes (max.message.bytes)",
		r.Topic, size, limit)
	e.l.log.Warn("an output is larger than its topic takes; dead-lettered (output-too-large)", "topic", r.Topic,
		"size", size, "limit", limit, "input_topic", c.ref().topic, "input_partition", c.ref().partition, "input_offset", c.ref().offset)
	if !c.ok() {
		e.deadLetter(r, operators.ReasonOutputTooLarge, detail, deadTooLarge)
		return
	}
	e.lastDead = c.ref()
	key, value, id := c.deadLetter()
	ref := c.ref()
	e.produce(&kgo.Record{Topic: e.l.cfg.Topics.Dead, Partition: e.w.partition, Key: key, Value: value,
		Headers: deadletter.AppendHeaders(nil, deadletter.Source{Reason: string(operators.ReasonOutputTooLarge), Detail: detail,
			Topic: ref.topic, Partition: ref.partition, Offset: ref.offset, EventID: id})}, c, deadTooLarge)
}

// deadLetterRefused dead-letters input c, whose outputs Kafka refused (v), once; or, when its
// dead letter was refused as well, drops it with an error.
func (e *emitter) deadLetterRefused(c cause, v *refusal) {
	ref := c.ref()
	if e.lastDead == ref {
		return
	}
	e.lastDead = ref
	if v.drop {
		e.l.log.Error("dropping an input: Kafka refused its outputs and its dead letter", "topic", ref.topic,
			"partition", ref.partition, "offset", ref.offset, "err", v.err)
		return
	}
	key, value, id := c.deadLetter()
	e.produce(&kgo.Record{Topic: e.l.cfg.Topics.Dead, Partition: e.w.partition, Key: key, Value: value,
		Headers: deadletter.AppendHeaders(nil, deadletter.Source{Reason: string(operators.ReasonProduceFailed), Detail: v.detail(),
			Topic: ref.topic, Partition: ref.partition, Offset: ref.offset, EventID: id})}, c, deadRefused)
}

// deadLetter dead-letters output r itself, which derives from no input: its key, value and
// headers, with the dead-letter headers (an earlier dead letter's replaced).
func (e *emitter) deadLetter(r *kgo.Record, reason operators.Reason, detail string, made int) {
	e.produce(&kgo.Record{Topic: e.l.cfg.Topics.Dead, Partition: e.w.partition, Key: r.Key, Value: r.Value,
		Headers: deadletter.Rewrap(r.Headers, deadletter.Source{Reason: string(reason), Detail: detail,
			Partition: e.w.partition, Offset: -1})}, cause{}, made)
}

// originOf is the Context of a record that derives from c.
func (e *emitter) originOf(c cause, quarantine bool) *origin {
	if !c.ok() {
		if quarantine {
			return noOriginQuarantine
		}
		return noOrigin
	}
	ref := c.ref()
	if o := e.origin; o != nil && o.in == ref && o.quarantine == quarantine {
		return o
	}
	if len(e.origins) == cap(e.origins) {
		e.origins = make([]origin, 0, 256) // franz-go holds the earlier ones until their promises
	}
	e.origins = append(e.origins, origin{Context: noOrigin.Context, in: ref, quarantine: quarantine})
	o := &e.origins[len(e.origins)-1]
	if !quarantine {
		e.origin = o
	}
	return o
}

// committed adds the dead letters of this worker's committed cycle to the counters.
func (e *emitter) committed() {
	for i, n := range e.dead {
		if d := n - e.applied[i]; d > 0 {
			e.l.poison.committed[i].Add(d)
			if m := e.l.cfg.Metrics; m != nil {
				m.dead.WithLabelValues(string(producerReasons[i])).Add(float64(d))
			}
		}
	}
	e.applied = e.dead
}

var producerReasons = [2]operators.Reason{operators.ReasonOutputTooLarge, operators.ReasonProduceFailed}
