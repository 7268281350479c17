package pipeline

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline/deadletter"
)

// Poison records: outputs that Kafka refuses with an error no retry can fix.
//
// franz-go retries what can be retried by itself; an error it gives up on at once (a batch the
// broker calls INVALID_RECORD, a record over a limit the emitter did not know of) fails the
// record's promise, and with it the cycle's transaction. The cycle must abort, and since it is
// processed again byte for byte, it would fail again forever. So each output the emitter
// produces carries, in kgo.Record.Context, the input record it derives from (an origin); a
// client hook (poisonHook) remembers the inputs whose outputs failed with such an error, and
// the next try of the cycle dead-letters them (reason produce-failed, the error as detail)
// instead:
//
//   - an input the try reads again is not processed at all (worker.quarantined): its
//     dead letter takes its place;
//   - an input that an earlier, committed cycle had already read into the reorder buffer is in
//     the partition's state, and its outputs come out of the buffer again: those to the topics
//     that refused them are withheld (emitter.produce) and it is dead-lettered once; its other
//     outputs stand.
//
// An output that derives from no input (a system event of a timer, a fired schedule) is
// remembered by its content, which a retry produces again unchanged, and is dead-lettered
// itself. A dead letter written in place of a refused record that is refused too is dropped,
// with an error logged: there is nowhere left to put it.
//
// A broker refuses a whole batch, so every output in the batch that held the bad one fails
// with the same error. Of a batch refused as too large (franz-go does not split it as the Java
// producer does) only the largest record is blamed: should the retry fail again, the next
// largest is. Of a batch refused for any other reason (INVALID_RECORD names its bad records
// only in the broker's message) every input is dead-lettered, as Kafka Streams' production
// exception handler sees every record of the batch fail; `dwell move` can replay them.
// Changelog records (worker.go) carry no origin: a refused one fails its cycles until
// --failure-timeout, as any cycle that cannot commit.

// inputRef names an input record.
type inputRef struct {
	topic     string
	partition int32
	offset    int64
}

// cause is what an output derives from: an input event, an input record (a dead letter's), or
// nothing (a timer, a fired schedule).
type cause struct {
	ev  *operators.Event
	rec *operators.Record
}

// causeOf is the input an output of the sessionizer derives from: the event for events, late
// events and system events an input triggered; the record for dead letters; none for system
// events of timers and for timers.
func causeOf(o *operators.Output) cause {
	switch {
	case o.Kind == operators.KindDead:
		return cause{rec: o.Record}
	case o.Kind == operators.KindTimer:
		return cause{}
	}
	return cause{ev: o.Event}
}

func (c cause) ok() bool { return c.ev != nil || c.rec != nil }

func (c cause) ref() inputRef {
	switch {
	case c.ev != nil:
		return inputRef{c.ev.Topic, c.ev.Partition, c.ev.Offset}
	case c.rec != nil:
		return inputRef{c.rec.Topic, c.rec.Partition, c.rec.Offset}
	}
	return inputRef{}
}

// deadLetter returns the key and value of the input's dead letter, copied (an event's bytes
// may be reused once it is released), and the event id when the input is a decoded event.
func (c cause) deadLetter() (key, value []byte, id string) {
	if c.ev != nil {
		return slices.Clone(keyOf(c.ev)), slices.Clone(c.ev.Raw), string(eventID(c.ev))
	}
	return slices.Clone(c.rec.Key), slices.Clone(c.rec.Value), ""
}

// origin is the Context of every record the emitter produces: the input it derives from
// (topic "" for none), and whether it is the produce-failed dead letter written in place of a
// refused record. It is never done.
type origin struct {
	context.Context
	in         inputRef
	quarantine bool
}

type originKey struct{}

func (o *origin) Value(key any) any {
	if key == (originKey{}) {
		return o
	}
	return o.Context.Value(key)
}

var noOrigin, noOriginQuarantine = &origin{Context: context.Background()},
	&origin{Context: context.Background(), quarantine: true}

// unfixable reports whether a produce error is the record's own and no retry can fix it.
// Errors of the connection, the transaction or the topic (authorization, an unknown topic, a
// fenced producer, retries or time exhausted) are not: they are every record's, and the cycle
// is retried as it is.
func unfixable(err error) bool {
	for _, e := range []error{kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord,
		kerr.CorruptMessage, kerr.InvalidTimestamp} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// poisonKey names what a refusal is about: an input record, or (by fingerprint) an output
// that derives from none.
type poisonKey struct {
	in inputRef
	fp uint64
}

// refusal is what is remembered of a refused input or output.
type refusal struct {
	err    error
	topics []string // the topics that refused its outputs
	drop   bool     // its produce-failed dead letter was refused too
	// batch is the batch a size error refused with it last: of a batch the broker found too
	// large, only the largest record is held responsible.
	batch *refusedBatch
}

// refusedBatch is a batch a broker refused as too large (MESSAGE_TOO_LARGE,
// RECORD_LIST_TOO_LARGE; franz-go does not split batches as the Java producer does). Only
// the origin of its largest record is dead-lettered; should the retry fail again, the next
// largest is, and so on, instead of everything that shared the batch at once.
type refusedBatch struct {
	err     error
	largest poisonKey
	size    int
	origins int
}

// holds reports whether k is held responsible for the refusal.
func (v *refusal) holds(k poisonKey) bool {
	return v.batch == nil || v.batch.origins == 1 || v.batch.largest == k
}

// detail is the dead letter's dwell-detail.
func (v *refusal) detail() string {
	return fmt.Sprintf("Kafka refused its output to %s: %v", strings.Join(v.topics, ", "), v.err)
}

// poison remembers refused inputs and outputs for the rest of the process (each cost an
// aborted cycle, so they are few), and counts the dead letters of the producer's reasons
// (output-too-large, produce-failed) that committed, for Stats.
type poison struct {
	log       *slog.Logger
	n         atomic.Int32 // refusals remembered: 0 keeps the hot path off the lock
	mu        sync.RWMutex // the hook writes, workers read
	refusals  map[poisonKey]*refusal
	lastBatch *refusedBatch // the hook sees a batch's records one after the other
	seed      maphash.Seed

	committed [2]atomic.Uint64 // dead letters committed: output-too-large, produce-failed
}

func (p *poison) init(log *slog.Logger) {
	p.log, p.seed = log, maphash.MakeSeed()
	p.refusals = map[poisonKey]*refusal{}
}

// addStats adds the committed dead letters of the producer's reasons to st.
func (p *poison) addStats(st *operators.Stats) {
	for i, r := range producerReasons {
		if n := p.committed[i].Load(); n > 0 {
			st.DeadByReason[r] += n
			st.Dead += n
		}
	}
}

func (p *poison) active() bool { return p.n.Load() > 0 }

// fingerprint identifies an output that derives from no input.
func (p *poison) fingerprint(r *kgo.Record) uint64 {
	var h maphash.Hash
	h.SetSeed(p.seed)
	_, _ = h.WriteString(r.Topic)
	_ = h.WriteByte(0)
	_, _ = h.Write(r.Key)
	_ = h.WriteByte(0)
	_, _ = h.Write(r.Value)
	return h.Sum64()
}

// input returns what is remembered of input in (a copy), if it is held responsible.
func (p *poison) input(in inputRef) (refusal, bool) { return p.lookup(poisonKey{in: in}) }

// output returns what is remembered of the output with fingerprint fp (a copy), if it is held
// responsible.
func (p *poison) output(fp uint64) (refusal, bool) { return p.lookup(poisonKey{fp: fp}) }

func (p *poison) lookup(k poisonKey) (refusal, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if v, ok := p.refusals[k]; ok && v.holds(k) {
		return *v, true
	}
	return refusal{}, false
}

// refused notes that Kafka refused r, produced with origin o, with err.
func (p *poison) refused(r *kgo.Record, o *origin, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := poisonKey{in: o.in}
	if o.in.topic == "" {
		k.fp = p.fingerprint(r)
	}
	v := p.refusals[k]
	if v == nil {
		v = &refusal{err: err}
		p.refusals[k] = v
	}
	prev := v.batch
	v.batch = nil
	if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
		b := p.lastBatch
		if b == nil || !sameError(b.err, err) {
			b = &refusedBatch{err: err}
			p.lastBatch = b
		}
		if prev != b {
			b.origins++
		}
		v.batch = b
		if size := deadletter.RecordBatchSize(r.Key, r.Value, r.Headers); size > b.size {
			b.largest, b.size = k, size
		}
	}
	if o.quarantine {
		v.drop = true
	}
	if !slices.Contains(v.topics, r.Topic) {
		v.topics = append(v.topics, r.Topic)
		p.log.Warn("Kafka refused an output with an error no retry fixes; the cycle is aborted, and its retry dead-letters (produce-failed) the input the refused batch is blamed on",
			"topic", r.Topic, "input_topic", o.in.topic, "input_partition", o.in.partition, "input_offset", o.in.offset,
			"dead_letter", o.quarantine, "err", err)
	}
	p.n.Store(int32(len(p.refusals)))
}

// sameError reports whether a and b are the same error value: franz-go fails every record of
// a refused batch with one error value.
func sameError(a, b error) bool {
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && ta.Comparable() && a == b
}

// poisonHook is the client hook that sees every record's end, before its promise: Flush
// returns only after it ran for every record of the cycle.
type poisonHook struct{ p *poison }

var _ kgo.HookProduceRecordUnbuffered = poisonHook{}

func (h poisonHook) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	if err == nil || !unfixable(err) || r.Context == nil {
		return
	}
	if o, ok := r.Context.Value(originKey{}).(*origin); ok {
		h.p.refused(r, o, err)
	}
}

// quarantined reports whether input r is one whose outputs Kafka refused in an earlier try of
// this cycle: then it is dead-lettered (produce-failed) in place of being processed, and the
// caller skips it.
func (w *worker) quarantined(r *kgo.Record) bool {
	p := &w.l.poison
	if !p.active() {
		return false
	}
	in := inputRef{r.Topic, r.Partition, r.Offset}
	v, ok := p.input(in)
	if !ok {
		return false
	}
	w.out.deadLetterRefused(cause{rec: &operators.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Key: r.Key, Value: r.Value}}, &v)
	return true
}
