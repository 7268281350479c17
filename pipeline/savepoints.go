package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline/deadletter"
	"github.com/dwellhq/dwell/pipeline/savepoint"
	"github.com/dwellhq/dwell/state"
)

// Savepoints, apart from the cycle (the format is pipeline/savepoint's). Each partition's
// worker writes one every SavepointInterval of wall clock, in three steps that ride on the
// cycles, never holding one up beyond SavepointCycleBytes:
//
//  1. At the end of a committed cycle, once one is due, right after the cycle's Pebble batch
//     committed: a Pebble snapshot of the partition (state.Snapshot: every key, evicted or
//     not, and the partition record), and the descriptor's fields as of then (the next input
//     offsets the snapshot's partition record holds, the sessionizer's watermark, the time).
//  2. In each following cycle, up to SavepointCycleBytes of the snapshot's records, into the
//     cycle's transaction (at-least-once: with the cycle's records), to the partition's
//     partition of the data topic. Their offsets are known once the cycle's flush returns; a
//     cycle that commits adds them to the data's span.
//  3. Once the cycle that produced the last data record has committed, the descriptor, in the
//     next cycle's transaction; when that one commits the savepoint is complete, and its time
//     goes into Pebble with the cycle's batch, so that a restart keeps the interval.
//
// A savepoint in progress is abandoned, its snapshot closed and nothing of it counted, when a
// cycle does not commit, when its partition stops (revoked, lost, a failed cycle, the
// processor stopping) and on errors; the next one starts at the next committed cycle's end
// once due. After an error (Kafka refused one of its records, which fails the cycle, or a
// record larger than the data topic takes) the partition's next savepoint waits an interval,
// also across the partition's restore, so that a savepoint never keeps processing from going
// on. Its data records stay behind without a descriptor, which readers never see. A partition
// whose data dir has no savepoint time (a new data dir, or before its first savepoint) writes
// one at once.

// savepointer is a worker's savepoints. Like the batch, it belongs to the worker while it runs
// a job and to Run's goroutine between jobs.
type savepointer struct {
	last   time.Time // the last completed savepoint's time; zero: none known
	loaded bool      // last was read from Pebble
	run    *savepointRun
}

// savepointRun is a savepoint in progress.
type savepointRun struct {
	d     savepoint.Descriptor
	id    []byte // the header value of its data records
	snap  *state.Snapshot
	began time.Time // wall clock (time.Now), for the duration logged
	// read: every data record has been produced; written: and committed, so the descriptor
	// goes next; described: the descriptor was produced in the cycle in flight; timeSaved: the
	// cycle's Pebble batch records the savepoint's time.
	read, written, described, timeSaved bool
	spanned                             bool // DataStart is set
	// The cycle in flight: data records produced, and their lowest and highest offsets, which
	// the produce promises set, as they set refused to the first error of its records.
	pending int
	lo, hi  atomic.Int64
	refused atomic.Pointer[error]
}

// newCycle clears what the savepoint noted of the cycle in flight.
func (r *savepointRun) newCycle() {
	r.pending, r.described = 0, false
	r.lo.Store(math.MaxInt64)
	r.hi.Store(-1)
	r.refused.Store(nil)
}

// promise wraps the cycle's promise for the savepoint's records: it notes the first error,
// and the offsets of data records.
func (r *savepointRun) promise(promise func(*kgo.Record, error), data bool) func(*kgo.Record, error) {
	return func(rec *kgo.Record, err error) {
		if err != nil {
			r.refused.CompareAndSwap(nil, &err)
		} else if data {
			for cur := r.lo.Load(); rec.Offset < cur && !r.lo.CompareAndSwap(cur, rec.Offset); cur = r.lo.Load() {
			}
			for cur := r.hi.Load(); rec.Offset > cur && !r.hi.CompareAndSwap(cur, rec.Offset); cur = r.hi.Load() {
			}
		}
		promise(rec, err)
	}
}

// writeSavepoint produces the savepoint's share of the cycle (on the worker's goroutine, at the
// end of its job): the next SavepointCycleBytes of data, or the descriptor once the data is
// all committed.
func (w *worker) writeSavepoint(promise func(*kgo.Record, error)) {
	r := w.sp.run
	if r == nil {
		return
	}
	r.newCycle()
	t := w.l.cfg.Topics
	if r.written {
		w.count(t.Savepoints)
		w.l.cl.Produce(context.Background(), &kgo.Record{Topic: t.Savepoints, Partition: w.partition, Key: r.id, Value: r.d.Marshal()}, r.promise(promise, false))
		r.described = true
		return
	}
	if r.read { // cannot happen: the cycle that read the end either committed (written) or abandoned it
		return
	}
	limit := w.l.limits.of(t.SavepointData)
	headers := []kgo.RecordHeader{{Key: savepoint.Header, Value: r.id}}
	noteOffset := r.promise(promise, true)
	done, err := r.snap.Read(w.l.cfg.SavepointCycleBytes, func(k, v []byte) error {
		if size := deadletter.RecordBatchSize(k, v, headers); size > limit {
			return fmt.Errorf("a record of the state (key %q) takes %d bytes, more than topic %s takes (max.message.bytes %d); raise it",
				k, size, t.SavepointData, limit)
		}
		b := make([]byte, len(k)+len(v)) // the producer keeps the record until it is written
		copy(b, k)
		copy(b[len(k):], v)
		w.count(t.SavepointData)
		w.l.cl.Produce(context.Background(), &kgo.Record{Topic: t.SavepointData, Partition: w.partition,
			Key: b[:len(k):len(k)], Value: b[len(k):], Headers: headers}, noteOffset)
		r.pending++
		r.d.Records++
		r.d.Bytes += int64(len(k) + len(v))
		return nil
	})
	r.d.Keys = r.snap.Keys()
	if err != nil {
		w.abandonSavepoint("", err)
		return
	}
	r.read = done
}

// savepointToBatch records the savepoint's time in the cycle's Pebble batch when the cycle
// carries its descriptor (finish, before the batch commits).
func (w *worker) savepointToBatch(b *state.Batch) error {
	if r := w.sp.run; r != nil && r.described {
		if err := b.PutSavepointTime(r.d.Time); err != nil {
			return err
		}
		r.timeSaved = true
	}
	return nil
}

// savepointCycleEnded follows the cycle's end (finish, on Run's goroutine; committed: Kafka and
// Pebble hold it): the savepoint in progress notes its data's offsets, completes once its
// descriptor is committed, or is abandoned when the cycle did not commit; then a savepoint
// starts if one is due.
func (w *worker) savepointCycleEnded(committed bool) {
	if !committed {
		var err error
		if r := w.sp.run; r != nil && r.refused.Load() != nil {
			err = fmt.Errorf("Kafka refused a record of the savepoint, which failed the cycle: %w", *r.refused.Load())
		}
		w.abandonSavepoint("the cycle did not commit", err)
		return
	}
	now := w.l.cfg.Now()
	if r := w.sp.run; r != nil {
		if r.pending > 0 {
			lo, hi := r.lo.Load(), r.hi.Load()
			if hi < 0 || lo > hi {
				w.abandonSavepoint("", errors.New("a committed cycle's savepoint records have no offsets"))
				return
			}
			if !r.spanned {
				r.d.DataStart, r.spanned = lo, true
			}
			r.d.DataEnd = hi + 1
		}
		switch {
		case r.described:
			w.completeSavepoint(r, now)
		case r.read:
			r.written = true
		}
		if w.sp.run != nil {
			r.newCycle()
		}
	}
	if w.sp.run == nil && w.savepointDue(now) {
		w.startSavepoint(now)
	}
}

// savepointDue reports whether the partition's next savepoint is due at now: SavepointInterval
// after the last one (read from Pebble the first time), at once when none is known.
func (w *worker) savepointDue(now time.Time) bool {
	l := w.l
	interval := l.cfg.SavepointInterval
	if interval < 0 || now.Before(l.savepointRetry(w.partition)) {
		return false
	}
	if !w.sp.loaded {
		w.sp.loaded = true
		t, ok, err := l.store.SavepointTime(w.partition)
		if err != nil {
			l.log.Warn("reading the last savepoint's time; the next savepoint starts now", "partition", w.partition, "err", err)
		}
		if ok {
			w.sp.last = t
		}
		l.noteSavepoint(w.partition, t, now)
	}
	// A last time far ahead (a clock that was wrong) does not hold savepoints back for ever.
	return w.sp.last.IsZero() || now.Sub(w.sp.last) >= interval || w.sp.last.After(now.Add(interval))
}

// startSavepoint takes the snapshot of a savepoint (step 1): the state the cycle just
// committed to Pebble.
func (w *worker) startSavepoint(now time.Time) {
	l := w.l
	if !l.savepointTopicsExist(now) {
		return
	}
	sn, err := l.store.Snapshot(w.partition)
	if err != nil {
		w.savepointFailed(now, err)
		return
	}
	if sn.Partition() == nil { // nothing committed yet: nothing to save
		_ = sn.Close()
		return
	}
	next := map[string]int64{}
	if _, err := state.ParsePartitionRecord(sn.Partition(), next); err != nil {
		_ = sn.Close()
		w.savepointFailed(now, err)
		return
	}
	r := &savepointRun{snap: sn, began: time.Now(), d: savepoint.Descriptor{
		ID: savepoint.ID(w.partition, now), Application: l.cfg.ApplicationID, Partition: w.partition,
		Time: now, Watermark: w.s.Watermark(), Next: next,
	}}
	r.id = []byte(r.d.ID)
	r.newCycle()
	w.sp.run = r
	l.log.Debug("savepoint started", "partition", w.partition, "id", r.d.ID, "changelog_offset", sn.ChangelogOffset())
	if l.savepointTaken != nil {
		l.savepointTaken(w.partition, r.d.ID, sn.ChangelogOffset())
	}
}

// savepointFailed logs an error that keeps a savepoint from starting; the next try is one
// interval later.
func (w *worker) savepointFailed(now time.Time, err error) {
	at := w.l.retrySavepoint(w.partition, now)
	w.l.log.Warn("cannot start a savepoint; the next try is one interval later", "partition", w.partition, "retry_at", at, "err", err)
}

// completeSavepoint counts a savepoint whose descriptor has committed.
func (w *worker) completeSavepoint(r *savepointRun, now time.Time) {
	l := w.l
	w.sp.run = nil
	_ = r.snap.Close()
	w.sp.last = r.d.Time
	if !r.timeSaved { // the descriptor's cycle changed nothing else: no batch of its own
		b := l.store.NewBatch(w.partition)
		err := b.PutSavepointTime(r.d.Time)
		if err == nil {
			err = b.Commit()
		} else {
			b.Discard()
		}
		if err != nil {
			l.log.Warn("recording the savepoint's time; a restart writes the next one sooner", "partition", w.partition, "err", err)
		}
	}
	l.noteSavepoint(w.partition, r.d.Time, now)
	if m := l.cfg.Metrics; m != nil {
		m.savepoints.WithLabelValues("completed").Inc()
	}
	l.log.Info("savepoint completed", "partition", w.partition, "id", r.d.ID, "keys", r.d.Keys, "records", r.d.Records,
		"bytes", r.d.Bytes, "data_start", r.d.DataStart, "data_end", r.d.DataEnd, "took", time.Since(r.began).Round(time.Millisecond))
}

// abandonSavepoint drops the savepoint in progress, if any: why says what ended it, or err
// (then the partition's next savepoint waits an interval).
func (w *worker) abandonSavepoint(why string, err error) {
	r := w.sp.run
	if r == nil {
		return
	}
	w.sp.run = nil
	_ = r.snap.Close()
	l := w.l
	if m := l.cfg.Metrics; m != nil {
		m.savepoints.WithLabelValues("abandoned").Inc()
	}
	if err != nil {
		at := l.retrySavepoint(w.partition, l.cfg.Now())
		l.log.Warn("savepoint abandoned; the next try is one interval later", "partition", w.partition, "id", r.d.ID,
			"retry_at", at, "err", err)
		return
	}
	l.log.Info("savepoint abandoned; the next one starts once a cycle commits", "partition", w.partition, "id", r.d.ID, "reason", why)
}

// savepointTopics is whether the savepoint topics exist (Run's goroutine).
type savepointTopics struct {
	ok      bool
	checkAt time.Time // when to look again after they were missing
}

// savepointTopicsExist reports whether the savepoint topics exist with the inputs' partition
// count, looking them up the first time (and again an interval after they were missing). A
// processor whose savepoint topics are missing processes as before, without savepoints, and
// says so.
func (l *Live) savepointTopicsExist(now time.Time) bool {
	st := &l.spTopics
	if st.ok || now.Before(st.checkAt) {
		return st.ok
	}
	t := l.cfg.Topics
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	details, err := l.adm.ListTopics(ctx, append([]string{t.Savepoints, t.SavepointData}, l.cfg.Inputs...)...)
	if err != nil {
		st.checkAt = now.Add(time.Minute)
		l.log.Warn("cannot list the savepoint topics; savepoints wait", "err", err)
		return false
	}
	partitions := -1
	if d, ok := details[l.cfg.Inputs[0]]; ok && d.Err == nil {
		partitions = len(d.Partitions)
	}
	for _, name := range []string{t.Savepoints, t.SavepointData} {
		d, ok := details[name]
		if !ok || d.Err != nil || len(d.Partitions) != partitions {
			st.checkAt = now.Add(max(l.cfg.SavepointInterval, time.Minute))
			l.log.Warn("no savepoints: a savepoint topic is missing or has another partition count than the inputs; create it with dwell run --create-topics",
				"topic", name, "input_partitions", partitions, "look_again_at", st.checkAt)
			return false
		}
	}
	l.limits.load(ctx, l.adm, []string{t.Savepoints, t.SavepointData})
	st.ok = true
	return true
}

// savepointClocks is, per partition, when it last completed a savepoint (of those this
// instance owns, for dwell_savepoint_age_seconds, which scrapes read) and, after an error,
// when its next one may start (kept across the partition's restores: a record Kafka refuses
// would fail the next try as well).
type savepointClocks struct {
	sync.Mutex
	since, retry map[int32]time.Time
}

// retrySavepoint makes partition p's next savepoint wait an interval from now, and returns when.
func (l *Live) retrySavepoint(p int32, now time.Time) time.Time {
	at := now.Add(l.cfg.SavepointInterval)
	l.spClocks.Lock()
	defer l.spClocks.Unlock()
	l.spClocks.retry[p] = at
	return at
}

// savepointRetry is when partition p's next savepoint may start at the earliest.
func (l *Live) savepointRetry(p int32) time.Time {
	l.spClocks.Lock()
	defer l.spClocks.Unlock()
	return l.spClocks.retry[p]
}

// noteSavepoint records partition p's last savepoint time t; a zero t (none known) starts the
// clock at now. stopSavepoints forgets the partition.
func (l *Live) noteSavepoint(p int32, t, now time.Time) {
	if t.IsZero() {
		t = now
	}
	l.spClocks.Lock()
	defer l.spClocks.Unlock()
	l.spClocks.since[p] = t
}

// stopSavepoints ends the partition's savepoints when its worker stops.
func (w *worker) stopSavepoints() {
	w.abandonSavepoint("the partition stopped", nil)
	w.l.spClocks.Lock()
	defer w.l.spClocks.Unlock()
	delete(w.l.spClocks.since, w.partition)
}

// savepointAgeCollector exports dwell_savepoint_age_seconds{partition}, evaluated at each scrape.
type savepointAgeCollector struct {
	l    *Live
	desc *prometheus.Desc
}

func newSavepointAgeCollector(l *Live) savepointAgeCollector {
	return savepointAgeCollector{l: l, desc: prometheus.NewDesc("dwell_savepoint_age_seconds",
		"Wall clock since the partition's last completed savepoint (when none is known on this instance, since its first cycle here).",
		[]string{"partition"}, nil)}
}

func (c savepointAgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c savepointAgeCollector) Collect(ch chan<- prometheus.Metric) {
	l := c.l
	now := l.cfg.Now()
	l.spClocks.Lock()
	defer l.spClocks.Unlock()
	for p, t := range l.spClocks.since {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, now.Sub(t).Seconds(), partitionLabel(p))
	}
}
