package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Run processes until ctx is cancelled, then finishes the cycle in flight and returns nil. A
// cycle that fails (the brokers unreachable, a transaction that cannot end, a partition that
// cannot restore) is aborted, every partition is rebuilt from what Kafka holds, and the cycle is
// retried with backoff; Run returns an error only when cycles have kept failing for
// FailureTimeout, so that a supervisor can restart the process.
func (l *Live) Run(ctx context.Context) error {
	defer l.stopWorkers()
	// Stopping cuts the cycle in flight short: workers stop at their next budget check, and
	// the cycle commits what it did (its end is bounded by TransactionTimeout, see commit).
	defer context.AfterFunc(ctx, func() { l.stopping.Store(true) })()
	var failingSince time.Time
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		err := l.runOnce(ctx)
		switch {
		case err == nil:
			failingSince, backoff = time.Time{}, 250*time.Millisecond
			continue
		case errors.Is(err, errCrashed):
			return err
		case errors.Is(err, ErrOffsetsBehindState):
			l.recover()
			return err
		case ctx.Err() != nil:
			// Stopping interrupted the cycle (a restore, say): nothing of it was committed.
			l.recover()
			return nil
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		if failed := time.Since(failingSince); failed > l.cfg.FailureTimeout {
			l.recover()
			return fmt.Errorf("pipeline: processing has failed for %s (--failure-timeout); last error: %w", failed.Round(time.Second), err)
		}
		l.log.Warn("cycle failed; partitions will restore and the cycle is retried", "reason", failureReason(err), "err", err, "retry_in", backoff)
		if m := l.cfg.Metrics; m != nil {
			m.cycleFailures.WithLabelValues(failureReason(err)).Inc()
		}
		l.recover()
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	return nil
}

// recover undoes a failed cycle: an open transaction is aborted (which rewinds the consumer to
// the committed offsets), or without transactions the consumer is rewound; every partition
// stops, to restore from Pebble and the changelog at its next cycle.
func (l *Live) recover() {
	if err := l.abortOpen(); err != nil {
		l.log.Warn("aborting the failed cycle's transaction; the next cycle tries again", "err", err)
	}
	if l.sess == nil {
		l.cl.SetOffsets(l.cl.CommittedOffsets())
	}
	l.stopWorkers()
	l.ready.Store(false)
}

// abortOpen aborts a transaction left open: a cycle whose End failed (franz-go leaves it open
// then) or that stopped midway. Until that succeeds no new transaction can begin.
func (l *Live) abortOpen() error {
	if l.sess == nil || !l.inTxn {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.TransactionTimeout)
	defer cancel()
	if _, err := l.sess.End(ctx, kgo.TryAbort); err != nil {
		return err
	}
	l.inTxn = false
	return nil
}

// errCrashed ends Run where a test abandons the processor.
var errCrashed = errors.New("pipeline: crashed (test)")

// cycleFailureReasons label dwell_cycle_failures_total: what made a cycle fail.
var cycleFailureReasons = []string{"transaction", "restore", "produce", "state", "offsets", "timeout", "rebalance"}

// cycleError is a failed cycle's error with the reason it is counted under.
type cycleError struct {
	reason string
	err    error
}

func (e cycleError) Error() string { return e.err.Error() }
func (e cycleError) Unwrap() error { return e.err }

func failed(reason string, err error) error {
	if err == nil {
		return nil
	}
	return cycleError{reason, err}
}

// failureReason is the label err is counted under.
func failureReason(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	var ce cycleError
	if errors.As(err, &ce) {
		return ce.reason
	}
	return "state"
}

// crashed reports whether a test abandons the processor at point.
func (l *Live) crashed(point string) bool { return l.crashAt != nil && l.crashAt(point) }

// cycle is one processing cycle: what it polled, when, and what went wrong in it.
type cycle struct {
	began   time.Time
	now     time.Time // the wall clock every worker sees this cycle (idle advancement)
	records int
	byPart  map[int32][]*kgo.Record
	// produceErr is the first produce that failed (promises run on the client's goroutines);
	// workErr joins the workers' errors.
	produceErr atomic.Pointer[error]
	workErr    error
}

// promise is the callback of every record the cycle produces.
func (c *cycle) promise(_ *kgo.Record, err error) {
	if err != nil {
		c.produceErr.CompareAndSwap(nil, &err)
	}
}

// ok reports whether everything of the cycle was produced and processed: only then may it commit.
func (c *cycle) ok() bool { return c.produceErr.Load() == nil && c.workErr == nil }

// produceFailure is the first produce error, or nil.
func (c *cycle) produceFailure() error {
	if p := c.produceErr.Load(); p != nil {
		return *p
	}
	return nil
}

// runOnce runs one cycle in phases, as Kafka Streams' StreamThread.runOnce does: poll; begin
// the transaction (exactly-once); restore the partitions new to this instance; process, where
// each worker processes its records and punctuates (timers, idle advancement) and writes its
// changes; commit, shared by both guarantees.
func (l *Live) runOnce(ctx context.Context) error {
	c := &cycle{began: time.Now()}
	l.poll(ctx, c)
	if l.sess == nil {
		defer l.cl.AllowRebalance() // at the cycle's end, after offsets are committed
	} else {
		if err := l.abortOpen(); err != nil {
			return failed("transaction", fmt.Errorf("pipeline: aborting the transaction a failed cycle left open: %w", err))
		}
		if err := l.sess.Begin(); err != nil {
			return failed("transaction", fmt.Errorf("pipeline: beginning a transaction: %w", err))
		}
		l.inTxn = true
	}
	c.now = l.cfg.Now()
	if err := l.restore(ctx, c); err != nil {
		return failed("restore", err)
	}
	l.process(c)
	// The cycle in flight finishes even when stopping, but within the transaction timeout of
	// the stop: a broker that does not answer must not hold a stopping process for ever. (While
	// running, a cycle waits for a broker that is down, as the producer does, and shows as
	// stalled meanwhile: ending it early would leave its transaction half-written.)
	// (A timer left behind fires once, at most, on a context already done.)
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(ctx, func() { time.AfterFunc(l.cfg.TransactionTimeout, cancel) })()
	return l.commit(cctx, c)
}

// poll fetches at most MaxPollRecords, waiting at most PollTimeout (a cycle runs without
// records too: timers and idle advancement need none), stops the workers of partitions lost
// meanwhile, and groups the records by partition.
func (l *Live) poll(ctx context.Context, c *cycle) {
	wait := l.cfg.PollTimeout
	for _, w := range l.parts {
		if w.behind {
			wait = min(wait, 10*time.Millisecond) // work is waiting: do not idle for records
		}
	}
	pollCtx, cancel := context.WithTimeout(ctx, wait)
	var fetches kgo.Fetches
	if l.sess != nil {
		fetches = l.sess.PollRecords(pollCtx, l.cfg.MaxPollRecords)
	} else {
		fetches = l.cl.PollRecords(pollCtx, l.cfg.MaxPollRecords)
	}
	cancel()
	l.dropRevoked()
	for _, fe := range fetches.Errors() {
		if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
			continue
		}
		l.log.Warn("fetch error", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
	}
	c.byPart = map[int32][]*kgo.Record{}
	fetches.EachRecord(func(r *kgo.Record) {
		c.byPart[r.Partition] = append(c.byPart[r.Partition], r)
		c.records++
	})
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if p.Err == nil && p.HighWatermark >= 0 {
			l.hwm.set(p.Partition, p.Topic, p.HighWatermark)
		}
	})
	if m := l.cfg.Metrics; m != nil {
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if n := len(p.Records); n > 0 {
				m.consumerLag.WithLabelValues(partitionLabel(p.Partition)).Set(float64(p.HighWatermark - p.Records[n-1].Offset - 1))
			}
		})
	}
}

// restore starts a worker, restored from Pebble and the changelog (restore.go), for every
// partition that is assigned or has records and has none yet.
func (l *Live) restore(ctx context.Context, c *cycle) error {
	start := l.assignedPartitions()
	for p := range c.byPart {
		start = append(start, p)
	}
	for _, p := range start {
		if _, ok := l.parts[p]; !ok {
			w, err := l.startWorker(ctx, p)
			if err != nil {
				return err
			}
			l.setWorker(p, w)
		}
	}
	return nil
}

// process hands every worker its records, even none (timers and idle advancement need no
// records), and waits for all of them. A worker whose budget stopped it is behind: its
// partition's fetching pauses until it has caught up, so that the records it holds meanwhile
// stay few (operators.Budget).
func (l *Live) process(c *cycle) {
	var wg sync.WaitGroup
	deadline := l.cfg.Now().Add(l.cfg.MaxCycleTime) // from here: a restore took its own time
	expired := func() bool { return l.stopping.Load() || l.cfg.Now().After(deadline) }
	for p, w := range l.parts {
		wg.Add(1)
		w.jobs <- job{recs: c.byPart[p], now: c.now, expired: expired, promise: c.promise, done: &wg}
	}
	wg.Wait()
	for _, w := range l.parts {
		c.workErr = errors.Join(c.workErr, w.err)
		if w.behind {
			l.behind.Add(1)
		}
		if w.behind != w.paused {
			l.pauseFetching(w.partition, w.behind)
			w.paused = w.behind
			if w.behind {
				l.log.Info("partition behind: its cycle budget stopped work that goes on at the next cycle; fetching paused meanwhile",
					"partition", w.partition, "held", w.held, "max_cycle_work", l.cfg.MaxCycleWork,
					"max_cycle_loads", l.cfg.MaxCycleLoads, "max_cycle_time", l.cfg.MaxCycleTime)
			} else {
				l.log.Info("partition caught up; fetching resumed", "partition", w.partition)
			}
		}
	}
}

// pauseFetching pauses (or resumes) fetching partition p of every input.
func (l *Live) pauseFetching(p int32, pause bool) {
	tps := make(map[string][]int32, len(l.cfg.Inputs))
	for _, t := range l.cfg.Inputs {
		tps[t] = []int32{p}
	}
	if pause {
		l.cl.PauseFetchPartitions(tps)
		return
	}
	l.cl.ResumeFetchPartitions(tps)
}

// commit ends the cycle. Both guarantees flush first, so that every promise has run, and end
// in two steps with a test crash point before and after the first:
//
//   - exactly-once: end the transaction (commit when the cycle is ok, else abort), then commit
//     or discard each partition's Pebble batch to match;
//   - at-least-once: the outputs are written already and cannot be taken back, so a cycle that
//     is not ok fails (Run rewinds and retries); otherwise commit each partition's Pebble batch,
//     then the consumed offsets. A crash in between repeats outputs (with the same ids) but
//     never counts an input twice in state: partition records carry the next input offsets,
//     and a restored worker skips what its state already holds.
//
// A partition whose state did not commit is stopped, to be rebuilt from what Kafka holds.
func (l *Live) commit(ctx context.Context, c *cycle) error {
	if err := l.cl.Flush(ctx); err != nil {
		return failed("timeout", fmt.Errorf("pipeline: stopping, and the cycle's records were not all written within --transaction-timeout %s: %w", l.cfg.TransactionTimeout, err))
	}
	if l.sess == nil && !c.ok() {
		_ = l.finishPartitions(false)
		return c.failure()
	}
	if l.crashed("before-end") {
		return errCrashed
	}
	var committed bool
	if l.sess != nil {
		var err error
		committed, err = l.sess.End(ctx, kgo.TransactionEndTry(c.ok()))
		if err == nil {
			l.inTxn = false // else it is still open: recover aborts it
		}
		if l.crashed("after-end") {
			return errCrashed
		}
		// Kafka holds the cycle (or not): Pebble follows. A partition whose Pebble commit
		// failed is rebuilt from the changelog; the cycle itself stands.
		_ = l.finishPartitions(committed)
		l.cycleEnded(c, committed)
		if err != nil {
			return failed("transaction", fmt.Errorf("pipeline: ending a transaction: %w", err))
		}
		// Every cycle that did not commit failed: a record could not be written, a worker
		// failed, or the group aborted it (a rebalance during the transaction). Each is counted
		// by reason and towards FailureTimeout; the partitions restore and the cycle is retried.
		if err := c.failure(); err != nil || committed {
			return err
		}
		return failed("rebalance", errors.New("pipeline: the group aborted the cycle's transaction (this instance's assignment changed during it)"))
	}
	if err := l.finishPartitions(true); err != nil {
		return failed("state", err)
	}
	if l.crashed("after-end") {
		return errCrashed
	}
	if err := l.cl.CommitUncommittedOffsets(ctx); err != nil {
		return failed("offsets", fmt.Errorf("pipeline: committing offsets: %w", err))
	}
	l.cycleEnded(c, true)
	return nil
}

// failure is what failed in the cycle, nil if nothing did: a produce, or a worker.
func (c *cycle) failure() error {
	if pe := c.produceFailure(); pe != nil {
		return failed("produce", errors.Join(c.workErr, fmt.Errorf("pipeline: producing: %w", pe)))
	}
	return failed("state", c.workErr)
}

// finishPartitions commits (committed) or discards each partition's Pebble batch. A partition
// whose state did not commit (the cycle did not, or Pebble failed) is stopped, to be rebuilt
// at its next cycle from what Kafka holds; the Pebble errors are returned.
func (l *Live) finishPartitions(committed bool) error {
	var errs []error
	for p, w := range l.parts {
		err := w.finish(committed)
		if err != nil {
			l.log.Error("partition state", "partition", p, "err", err)
			errs = append(errs, err)
		}
		if err != nil || !committed {
			// Memory ran ahead of Kafka (or Pebble failed): rebuild from what Kafka holds.
			w.stop()
			l.setWorker(p, nil)
		}
	}
	return errors.Join(errs...)
}

// cycleEnded records a cycle that ended: its metrics, the processor's readiness and
// counters.
func (l *Live) cycleEnded(c *cycle, committed bool) {
	if m := l.cfg.Metrics; m != nil {
		m.cycle.Observe(time.Since(c.began).Seconds())
		if committed {
			m.txns.WithLabelValues("committed").Inc()
		} else {
			m.txns.WithLabelValues("aborted").Inc()
		}
	}
	l.updateReady()
	l.log.Debug("cycle", "records", c.records, "partitions", len(l.parts), "committed", committed,
		"took", time.Since(c.began))
	if committed {
		l.committed.Add(1)
		fetched := l.fetches.Load()
		for p, w := range l.parts {
			if w.worked || fetched != l.seen {
				l.noteProgress(p)
			}
		}
		l.seen = fetched
		return
	}
	l.aborted.Add(1)
	l.log.Warn("transaction aborted; partitions will restore", "produce_error", c.produceFailure(), "work_error", c.workErr)
}
