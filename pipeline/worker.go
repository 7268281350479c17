package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/state"
)

// job is one cycle of work for a partition's worker.
type job struct {
	recs    []*kgo.Record
	now     time.Time
	expired func() bool // the cycle's time is up, or the processor is stopping
	promise func(*kgo.Record, error)
	done    *sync.WaitGroup
}

// worker owns one partition: its sessionizer and flow, and its Pebble batch between the
// cycle's produce and its end. Run's goroutine hands it a job per cycle and reads its fields
// only while it waits between jobs (after done, before the next send).
type worker struct {
	l         *Live
	partition int32
	s         *operators.Sessionizer
	f         *flow
	out       emitter
	jobs      chan job
	quit      chan struct{}
	exited    chan struct{}
	batch     *state.Batch
	partSnap  []byte
	lastCL    atomic.Int64 // offset of the last changelog record produced this cycle
	err       error
	counts    cycleCounts        // this cycle's metrics, applied when it commits
	prev      operators.Stats    // the sessionizer's counters when last applied
	prevFlow  flowStats          // the flow's counters when last applied
	next      map[string]int64   // next input offset per topic that the state does not hold yet
	reset     *state.ResetMarker // the last dwell reset of the partition's state, nil if none
	// behind says the cycle's budget stopped work that goes on at the next cycle
	// (operators.Budget); paused says Run has paused fetching the partition for it. Run's
	// goroutine reads behind between jobs, and owns paused.
	behind bool
	held   int // records held, when behind
	paused bool
	worked bool        // the cycle changed the partition's state (health.go)
	sp     savepointer // savepoints.go

	queries chan func() // interactive queries, run between jobs (query.go)
	// stateMu is held by Run's goroutine while it changes the sessionizer between jobs (finish:
	// Evict), and by the worker's goroutine while it answers a query between jobs. The rest of
	// finish (the Pebble commit, savepoints) touches nothing a query reads.
	stateMu sync.Mutex
}

// startWorker restores partition p (restore.go) and starts its goroutine.
func (l *Live) startWorker(ctx context.Context, p int32) (*worker, error) {
	w := &worker{l: l, partition: p, jobs: make(chan job), queries: make(chan func()), quit: make(chan struct{}), exited: make(chan struct{})}
	w.out = emitter{l: l, w: w}
	if err := w.restore(ctx); err != nil {
		return nil, err
	}
	go w.run()
	return w, nil
}

func (w *worker) run() {
	defer close(w.exited)
	for {
		select {
		case j := <-w.jobs:
			w.work(j)
			j.done.Done()
		case q := <-w.queries:
			w.stateMu.Lock()
			q()
			w.stateMu.Unlock()
		case <-w.quit:
			return
		}
	}
}

// work runs the partition's part of a cycle, within the cycle's budget: go on with what the
// last cycle's budget left, process the records (held, while behind), punctuate, and write
// what changed (outputs and changelog records into the cycle's transaction, and the Pebble
// batch that finish commits).
func (w *worker) work(j job) {
	w.err, w.worked = nil, false
	w.lastCL.Store(-1)
	w.out.promise = j.promise
	if rs := w.l.rules.Load(); rs != w.f.rs {
		w.f.setRules(rs) // at the cycle boundary
	}
	before, target := w.s.Watermark(), w.s.Target()
	if w.l.cfg.Metrics != nil {
		w.counts = cycleCounts{in: map[string]int{}, out: map[string]int{}, times: w.counts.times[:0]}
	} else {
		w.counts.skipped = 0
	}
	w.s.SetWallClock(j.now) // polled before now: no record of the cycle is later (the guard's bound)
	w.s.SetBudget(operators.Budget{Work: w.l.cfg.MaxCycleWork, Loads: w.l.cfg.MaxCycleLoads, Expired: j.expired})
	w.s.Continue()
	w.out.replay = nil
	if w.reset != nil && w.reset.Replaying(w.next) {
		w.out.replay = []byte(w.reset.ID)
	}
	w.process(j.recs)
	w.punctuate(j.now)
	jobs := w.f.fireJobs(j.now.UnixMilli()) // jobs.go: on the wall clock
	if w.f.jobErr != nil {
		w.err, w.f.jobErr = w.f.jobErr, nil
		return
	}
	w.behind, w.held = w.s.Behind(), w.s.Held()
	if w.err = w.s.Err(); w.err != nil {
		return
	}
	w.writeChanges(len(j.recs) > 0 || jobs || w.s.Watermark() != before || w.s.Target() != target, j.promise)
	if w.err == nil {
		w.writeSavepoint(j.promise)
	}
}

// process runs the cycle's records through the sessionizer (and the flow's rules), skipping
// those the restored state already holds (read again after a crash without a transaction).
func (w *worker) process(recs []*kgo.Record) {
	metered := w.l.cfg.Metrics != nil
	for i, r := range recs {
		if i%queryEvery == queryEvery-1 {
			w.answerQueries()
		}
		if next, ok := w.next[r.Topic]; ok && r.Offset < next {
			w.skip(r, next)
			continue
		}
		w.next[r.Topic] = r.Offset + 1
		if metered {
			w.counts.in[r.Topic]++
			w.counts.times = append(w.counts.times, r.Timestamp.UnixMilli())
		}
		if w.quarantined(r) { // Kafka refused its outputs in an earlier try: dead-lettered instead (poison.go)
			continue
		}
		w.s.Process(&operators.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp.UnixMilli()})
	}
}

// queryEvery is how many records a worker processes between two looks for queries waiting,
// so that a query waits for a few records rather than for the whole cycle's work.
const queryEvery = 64

// answerQueries answers the queries waiting, without waiting for any, in the middle of a
// cycle's work: between records, where the state is as consistent as between cycles (Run's
// goroutine touches none of it while the worker works).
func (w *worker) answerQueries() {
	for {
		select {
		case q := <-w.queries:
			q()
		default:
			return
		}
	}
}

// skipInState labels dwell_records_skipped_total for records the state already holds.
const skipInState = "in-state"

// skip counts and logs (once per cycle) a record the restored state already holds: without
// transactions, a crash between the state's commit and the offsets' leaves up to a cycle's
// records to be read again (restore's checkOffsets refuses a larger gap).
func (w *worker) skip(r *kgo.Record, next int64) {
	if w.counts.skipped == 0 {
		w.l.log.Warn("skipping input records the state already holds (read again after a crash without a transaction)",
			"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "state_next_offset", next)
	}
	w.counts.skipped++
}

// punctuate fires the timers the watermark has passed, after advancing it with the wall clock
// when the partition is idle, and records the partition's counters.
func (w *worker) punctuate(now time.Time) {
	w.s.Tick(now)
	stats := w.s.Stats()
	w.counts.stats = stats
	w.counts.flow = w.f.stats
	w.l.setPartitionStats(w.partition, &stats)
}

// writeChanges writes the changelog record of every key the cycle changed and, when anything
// changed (changed: records or a moved watermark), the partition record, into the cycle's
// transaction, and prepares the Pebble batch that holds the same.
func (w *worker) writeChanges(changed bool, promise func(*kgo.Record, error)) {
	w.batch = w.l.store.NewBatch(w.partition)
	defer func() { w.worked = changed }()
	var snap []byte
	w.s.DrainChanges(func(c operators.Change) {
		changed = true
		var ok bool
		snap, ok = w.s.AppendKeySnapshot(snap[:0], c.Key)
		if !ok && !c.Deleted {
			w.err = fmt.Errorf("pipeline: partition %d: changed key %q has no state", w.partition, c.Key)
			return
		}
		if err := w.batch.PutKey(c, snap); err != nil {
			w.err = err
		}
		k, v := state.ChangeRecord(c, snap)
		w.produceChangelog(k, v, promise)
	})
	if !changed {
		w.batch.Discard()
		w.batch = nil
		return
	}
	w.partSnap = state.AppendPartitionRecordJobs(w.partSnap[:0], w.next, w.f.jobState, w.s.AppendPartitionSnapshot(nil))
	// A large reorder buffer makes a snapshot larger than a Kafka record may be: it goes out in
	// chunks, followed by the partition record (state.PartitionRecords).
	keys, values := state.PartitionRecords(append([]byte(nil), w.partSnap...), state.MaxPartitionChunk)
	for i := range keys {
		w.produceChangelog(keys[i], values[i], promise)
	}
}

// produceChangelog produces a changelog record, noting its offset once it is written: finish
// records the offset after the cycle's last one in Pebble.
func (w *worker) produceChangelog(key, value []byte, promise func(*kgo.Record, error)) {
	w.count(w.l.cfg.Topics.Changelog)
	r := &kgo.Record{Topic: w.l.cfg.Topics.Changelog, Partition: w.partition, Key: key, Value: value}
	w.l.cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
		if err == nil {
			for {
				cur := w.lastCL.Load()
				if r.Offset <= cur || w.lastCL.CompareAndSwap(cur, r.Offset) {
					break
				}
			}
		}
		promise(r, err)
	})
}

// finish commits the cycle's Pebble batch when the cycle committed, with the changelog offset
// after the cycle's last changelog record, and evicts cold keys; otherwise it discards it.
// Then the savepoint in progress follows (savepoints.go).
func (w *worker) finish(committed bool) error {
	if committed {
		w.applyMetrics()
	}
	err := w.finishBatch(committed)
	w.savepointCycleEnded(committed && err == nil)
	return err
}

func (w *worker) finishBatch(committed bool) error {
	b := w.batch
	w.batch = nil
	if b == nil {
		return nil
	}
	if !committed {
		b.Discard()
		return nil
	}
	if w.lastCL.Load() < 0 {
		b.Discard()
		return errors.New("pipeline: committed a cycle whose changelog records have no offsets")
	}
	if err := b.PutPartition(w.partSnap, w.lastCL.Load()+1); err != nil {
		b.Discard()
		return err
	}
	if err := w.savepointToBatch(b); err != nil {
		b.Discard()
		return err
	}
	if err := b.Commit(); err != nil {
		return err
	}
	w.stateMu.Lock() // queries read the keys Evict drops
	w.s.Evict(w.l.cfg.MaxCachedKeys)
	w.stateMu.Unlock()
	return nil
}

// stop ends the worker goroutine and waits for it, discarding an uncommitted batch.
func (w *worker) stop() {
	if m := w.l.cfg.Metrics; m != nil {
		m.watermarkLag.DeleteLabelValues(partitionLabel(w.partition))
		m.consumerLag.DeleteLabelValues(partitionLabel(w.partition))
	}
	w.l.setPartitionStats(w.partition, nil)
	if w.paused {
		w.l.pauseFetching(w.partition, false) // a restore starts over; it pauses again if behind
		w.paused = false
	}
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	<-w.exited
	if w.batch != nil {
		w.batch.Discard()
		w.batch = nil
	}
	w.stopSavepoints()
}
