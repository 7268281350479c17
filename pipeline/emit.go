package pipeline

import (
	"bytes"
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline/deadletter"
)

// emitter produces a worker's outputs into the cycle's transaction.
type emitter struct {
	l       *Live
	w       *worker
	promise func(*kgo.Record, error)
}

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
	e.w.count(topic)
	e.l.cl.Produce(context.Background(), r, e.promise)
}

func (e *emitter) Emit(o *operators.Output) {
	t := e.l.cfg.Topics
	r := &kgo.Record{Partition: e.w.partition}
	defer func() { e.w.count(r.Topic) }()
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
		e.l.cl.Produce(context.Background(), r, e.promise)
		return
	}
	// Keyed like the input: by profile, or session for profile-less events. Pass-through events
	// have no key (and may be released while another record is processed).
	if o.Key != nil {
		r.Key = append([]byte(nil), o.Key...)
	}
	r.Value = operators.AppendJSON(nil, o)
	e.l.cl.Produce(context.Background(), r, e.promise)
}
