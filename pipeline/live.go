package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline/deadletter"
	"github.com/dwellhq/dwell/state"
)

// Live is the exactly-once live processor: a consumer group whose every processing cycle is
// one Kafka transaction holding the outputs, the changelog records of every key the cycle
// changed, and the consumed offsets. Each assigned partition has one worker goroutine that owns
// its sessionizer; the partition's Pebble batch is committed after the transaction commits, and
// when a transaction does not commit, the partitions it touched are rebuilt from Pebble plus
// the changelog, so memory never runs ahead of what Kafka holds.
type Live struct {
	cfg   LiveConfig
	log   *slog.Logger
	store *state.Store
	sess  *kgo.GroupTransactSession // exactly-once
	cl    *kgo.Client               // the client that polls and produces, in either mode
	adm   *kadm.Client
	parts map[int32]*worker

	// crashAt, set by tests, abandons the processor at a named point of a cycle: "before-end"
	// (transaction open) or "after-end" (transaction committed, Pebble not).
	crashAt func(point string) bool

	inTxn     bool         // a transaction was begun and not ended (Run's goroutine only)
	ready     atomic.Bool  // every assigned partition is restored
	restores  atomic.Int64 // partitions restored
	committed atomic.Int64 // transactions committed
	aborted   atomic.Int64 // transactions aborted

	statsMu   sync.Mutex
	partStats map[int32]operators.Stats // each worker's stats after its last cycle

	logLevel rules.LogLevel
	rules    atomic.Pointer[RuleSet] // the rule set workers switch to at their next cycle
	rulesMu  sync.Mutex              // serialises SetRules

	mu       sync.Mutex
	revoked  map[int32]bool // partitions lost since the last cycle
	assigned map[int32]bool // partitions assigned and not yet started
}

// NewLive connects and opens the state store. Run starts processing; Close releases both.
func NewLive(cfg LiveConfig) (*Live, error) {
	cfg.ensureDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	codec, err := compressionCodec(cfg.Compression)
	if err != nil {
		return nil, err
	}
	st, err := state.Open(state.Options{Dir: cfg.DataDir, FS: cfg.FS, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	l := &Live{cfg: cfg, log: cfg.Logger, store: st, parts: map[int32]*worker{}, revoked: map[int32]bool{},
		assigned: map[int32]bool{}, partStats: map[int32]operators.Stats{}}
	l.logLevel, _ = rules.ParseLogLevel(cfg.EventLog)
	instance, err := st.InstanceID()
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	klog, err := newKafkaLogger(cfg.Logger, cfg.KafkaLogLevel)
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.SessionTimeout(cfg.GroupSessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, cfg.GroupSessionTimeout/3)),
		kgo.TransactionTimeout(cfg.TransactionTimeout),
		kgo.WithLogger(klog),
		kgo.ConsumeTopics(cfg.Inputs...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.RecordPartitioner(kgo.BasicConsistentPartitioner(l.partitionFor)),
		kgo.ProducerBatchCompression(codec),
		kgo.OnPartitionsAssigned(l.onAssigned),
		kgo.OnPartitionsRevoked(l.onLost),
		kgo.OnPartitionsLost(l.onLost),
	}, cfg.ClientOpts...)
	if cfg.Metrics != nil {
		opts = append(opts, kgo.WithHooks(cfg.Metrics.kprom))
	}
	if cfg.Guarantee == ExactlyOnce {
		// The group generation fences zombies (KIP-447), so the transactional id need not be
		// stable for correctness; it is stable per data dir so that a restarted process aborts
		// its predecessor's open transaction at once instead of after TransactionTimeout.
		opts = append(opts, kgo.TransactionalID(cfg.Group+"-"+instance))
		if l.sess, err = kgo.NewGroupTransactSession(opts...); err == nil {
			l.cl = l.sess.Client()
		}
	} else {
		// Offsets are committed after the cycle's state; rebalances wait for the cycle's end.
		opts = append(opts, kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll())
		l.cl, err = kgo.NewClient(opts...)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("pipeline: %w", err), st.Close())
	}
	l.adm = kadm.NewClient(l.cl)
	if cfg.Rules != nil {
		if err := l.SetRules(cfg.Rules); err != nil {
			l.cl.Close()
			return nil, errors.Join(err, st.Close())
		}
	}
	if cfg.Metrics != nil {
		cfg.Metrics.attach(l)
	}
	return l, nil
}

// SetRules makes rs (nil: no rules) the rule set: every partition switches to it at its next
// cycle boundary, so a cycle runs one version throughout. It first checks that the topics rs
// writes to exist (creating them when LiveConfig.CreateTopics is set); if they do not, rs is
// refused and the running set stays. Safe to call from any goroutine.
func (l *Live) SetRules(rs *RuleSet) error {
	l.rulesMu.Lock()
	defer l.rulesMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ensureRuleTopics(ctx, l.adm, l.cfg.Inputs, rs.OutputTopics(l.cfg.Topics.QueuePrefix), l.cfg.CreateTopics); err != nil {
		return err
	}
	old := l.rules.Swap(rs)
	if old != rs {
		l.log.Info("rule set applied", "version", rs.versionOrNone(), "previous", old.versionOrNone())
	}
	return nil
}

// RuleSetVersion is the version of the rule set SetRules last applied ("none": no rules).
func (l *Live) RuleSetVersion() string { return l.rules.Load().versionOrNone() }

// Ready reports whether every partition assigned to this instance has been restored and is
// processing (for /readyz).
func (l *Live) Ready() bool { return l.ready.Load() }

// partitionFor places output records: the changelog by the partition it belongs to, everything
// else by key with Kafka's murmur2, as a Java producer would.
func (l *Live) partitionFor(topic string) func(r *kgo.Record, n int) int {
	if topic == l.cfg.Topics.Changelog {
		return func(r *kgo.Record, n int) int { return int(r.Partition) % n }
	}
	return func(r *kgo.Record, n int) int {
		if len(r.Key) == 0 {
			return int(r.Partition) % n
		}
		return int(KafkaPartition(r.Key, int32(n)))
	}
}

func (l *Live) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	if m := l.cfg.Metrics; m != nil {
		m.rebalances.Inc()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ps := range lost {
		for _, p := range ps {
			l.revoked[p] = true
			delete(l.assigned, p)
		}
	}
}

func (l *Live) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	if m := l.cfg.Metrics; m != nil {
		m.rebalances.Inc()
	}
	l.ready.Store(false)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ps := range assigned {
		for _, p := range ps {
			l.assigned[p] = true
			delete(l.revoked, p)
		}
	}
}

// Run processes until ctx is cancelled, then finishes the cycle in flight and returns nil. A
// cycle that fails (the brokers unreachable, a transaction that cannot end, a partition that
// cannot restore) is aborted, every partition is rebuilt from what Kafka holds, and the cycle is
// retried with backoff; Run returns an error only when cycles have kept failing for
// FailureTimeout, so that a supervisor can restart the process.
func (l *Live) Run(ctx context.Context) error {
	defer l.stopWorkers()
	var failingSince time.Time
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		err := l.cycle(ctx)
		switch {
		case err == nil:
			failingSince, backoff = time.Time{}, 250*time.Millisecond
			continue
		case errors.Is(err, errCrashed):
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
		l.log.Warn("cycle failed; partitions will restore and the cycle is retried", "err", err, "retry_in", backoff)
		if m := l.cfg.Metrics; m != nil {
			m.cycleFailures.Inc()
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
	if l.sess != nil && l.inTxn {
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.TransactionTimeout)
		if _, err := l.sess.End(ctx, kgo.TryAbort); err != nil {
			l.log.Warn("aborting the failed cycle's transaction", "err", err)
		}
		cancel()
		l.inTxn = false
	}
	if l.sess == nil {
		l.cl.SetOffsets(l.cl.CommittedOffsets())
	}
	l.stopWorkers()
	l.ready.Store(false)
}

// cycle runs one transaction.
func (l *Live) cycle(ctx context.Context) error {
	began := time.Now()
	pollCtx, cancel := context.WithTimeout(ctx, l.cfg.PollTimeout)
	var fetches kgo.Fetches
	if l.sess != nil {
		fetches = l.sess.PollRecords(pollCtx, l.cfg.MaxPollRecords)
	} else {
		fetches = l.cl.PollRecords(pollCtx, l.cfg.MaxPollRecords)
		defer l.cl.AllowRebalance() // at the cycle's end, after offsets are committed
	}
	cancel()
	l.dropRevoked()
	for _, fe := range fetches.Errors() {
		if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
			continue
		}
		l.log.Warn("fetch error", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
	}
	byPart := map[int32][]*kgo.Record{}
	fetches.EachRecord(func(r *kgo.Record) { byPart[r.Partition] = append(byPart[r.Partition], r) })
	if m := l.cfg.Metrics; m != nil {
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if n := len(p.Records); n > 0 {
				m.consumerLag.WithLabelValues(partitionLabel(p.Partition)).Set(float64(p.HighWatermark - p.Records[n-1].Offset - 1))
			}
		})
	}
	if l.sess != nil {
		if err := l.sess.Begin(); err != nil {
			return fmt.Errorf("pipeline: beginning a transaction: %w", err)
		}
		l.inTxn = true
	}
	var produceErr atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			produceErr.CompareAndSwap(nil, &err)
		}
	}
	now := l.cfg.Now()
	// Every assigned partition runs a cycle (timers and idle advancement need no records);
	// partitions new to this instance are restored first.
	l.mu.Lock()
	start := make([]int32, 0, len(l.assigned))
	for p := range l.assigned {
		start = append(start, p)
	}
	l.mu.Unlock()
	for p := range byPart {
		start = append(start, p)
	}
	for _, p := range start {
		if _, ok := l.parts[p]; !ok {
			w, err := l.startWorker(ctx, p)
			if err != nil {
				return err
			}
			l.parts[p] = w
		}
	}
	var wg sync.WaitGroup
	for p, w := range l.parts {
		wg.Add(1)
		w.jobs <- job{recs: byPart[p], now: now, promise: promise, done: &wg}
	}
	wg.Wait()
	var workErr error
	for _, w := range l.parts {
		workErr = errors.Join(workErr, w.err)
	}
	// Flush first: every promise has run before the cycle commits or aborts.
	endCtx := context.WithoutCancel(ctx) // finish the cycle in flight even when stopping
	if err := l.cl.Flush(endCtx); err != nil {
		return fmt.Errorf("pipeline: flushing: %w", err)
	}
	commit := produceErr.Load() == nil && workErr == nil
	if l.sess == nil {
		return l.endAtLeastOnce(endCtx, commit, workErr, produceErr.Load(), began)
	}
	if l.crashAt != nil && l.crashAt("before-end") {
		return errCrashed
	}
	committed, err := l.sess.End(endCtx, kgo.TransactionEndTry(commit))
	l.inTxn = false
	if l.crashAt != nil && l.crashAt("after-end") {
		return errCrashed
	}
	for p, w := range l.parts {
		if cerr := w.finish(committed); cerr != nil || !committed {
			if cerr != nil {
				l.log.Error("partition state", "partition", p, "err", cerr)
			}
			// Memory ran ahead of Kafka (or Pebble failed): rebuild from what Kafka holds.
			w.stop()
			delete(l.parts, p)
		}
	}
	if err != nil {
		return fmt.Errorf("pipeline: ending a transaction: %w", err)
	}
	if workErr != nil {
		return workErr
	}
	if m := l.cfg.Metrics; m != nil {
		m.cycle.Observe(time.Since(began).Seconds())
		if committed {
			m.txns.WithLabelValues("committed").Inc()
		} else {
			m.txns.WithLabelValues("aborted").Inc()
		}
	}
	l.updateReady()
	l.log.Debug("cycle", "records", len(fetches.Records()), "partitions", len(l.parts), "committed", committed,
		"took", time.Since(began))
	if committed {
		l.committed.Add(1)
	} else {
		l.aborted.Add(1)
		var produceFailure error
		if p := produceErr.Load(); p != nil {
			produceFailure = *p
		}
		l.log.Warn("transaction aborted; partitions will restore", "produce_error", produceFailure, "work_error", workErr)
	}
	return nil
}

// LiveStats is a consistent view of the processor for summaries and metrics.
type LiveStats struct {
	operators.Stats    // summed over the partitions this instance owns
	Partitions         int
	Committed, Aborted int64 // transactions
	Restores           int64 // partitions restored
}

// Stats sums the partitions' counters as of their last cycle. Safe to call while Run runs.
func (l *Live) Stats() LiveStats {
	st := LiveStats{Committed: l.committed.Load(), Aborted: l.aborted.Load(), Restores: l.restores.Load()}
	st.DeadByReason = map[operators.Reason]uint64{}
	l.statsMu.Lock()
	defer l.statsMu.Unlock()
	st.Partitions = len(l.partStats)
	for _, p := range l.partStats {
		st.Add(p)
	}
	return st
}

// endAtLeastOnce ends a cycle without a transaction: the outputs and changelog records are
// flushed already; then each partition's state is committed to Pebble, and only then the
// consumed offsets. A crash in between repeats outputs (with the same ids) but never counts an
// input twice in state: partition records carry the next input offsets, and a restored worker
// skips what its state already holds.
func (l *Live) endAtLeastOnce(ctx context.Context, ok bool, workErr error, produceErr *error, began time.Time) error {
	if !ok {
		for p, w := range l.parts {
			_ = w.finish(false)
			w.stop()
			delete(l.parts, p)
		}
		err := workErr
		if produceErr != nil {
			err = errors.Join(err, fmt.Errorf("pipeline: producing: %w", *produceErr))
		}
		return err
	}
	if l.crashAt != nil && l.crashAt("before-end") {
		return errCrashed
	}
	for p, w := range l.parts {
		if err := w.finish(true); err != nil {
			w.stop()
			delete(l.parts, p)
			return err
		}
	}
	if l.crashAt != nil && l.crashAt("after-end") {
		return errCrashed
	}
	if err := l.cl.CommitUncommittedOffsets(ctx); err != nil {
		return fmt.Errorf("pipeline: committing offsets: %w", err)
	}
	if m := l.cfg.Metrics; m != nil {
		m.cycle.Observe(time.Since(began).Seconds())
		m.txns.WithLabelValues("committed").Inc()
	}
	l.updateReady()
	l.committed.Add(1)
	return nil
}

// updateReady records whether every assigned partition has a running worker.
func (l *Live) updateReady() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := range l.assigned {
		if _, ok := l.parts[p]; !ok {
			l.ready.Store(false)
			return
		}
	}
	l.ready.Store(len(l.assigned) > 0)
}

func (l *Live) dropRevoked() {
	l.mu.Lock()
	revoked := l.revoked
	l.revoked = map[int32]bool{}
	l.mu.Unlock()
	for p := range revoked {
		if w, ok := l.parts[p]; ok {
			w.stop()
			delete(l.parts, p)
		}
	}
}

func (l *Live) stopWorkers() {
	for p, w := range l.parts {
		w.stop()
		delete(l.parts, p)
	}
}

// Close stops consuming and closes the state store.
func (l *Live) Close() error {
	l.stopWorkers()
	if l.sess != nil {
		l.sess.Close()
	} else {
		l.cl.CloseAllowingRebalance()
	}
	return l.store.Close()
}

// errCrashed ends Run where a test abandons the processor.
var errCrashed = errors.New("pipeline: crashed (test)")

// job is one cycle of work for a partition's worker.
type job struct {
	recs    []*kgo.Record
	now     time.Time
	promise func(*kgo.Record, error)
	done    *sync.WaitGroup
}

// worker owns one partition: its sessionizer, and its Pebble batch between the transaction's
// produce and its end.
type worker struct {
	l         *Live
	partition int32
	s         *operators.Sessionizer
	jobs      chan job
	quit      chan struct{}
	exited    chan struct{}
	batch     *state.Batch
	partSnap  []byte
	lastCL    atomic.Int64 // offset of the last changelog record produced this cycle
	err       error
	out       emitter
	f         *flow
	counts    cycleCounts      // this cycle's metrics, applied when it commits
	prev      operators.Stats  // the sessionizer's counters when last applied
	prevFlow  flowStats        // the flow's counters when last applied
	next      map[string]int64 // next input offset per topic that the state does not hold yet
}

func (l *Live) startWorker(ctx context.Context, p int32) (*worker, error) {
	w := &worker{l: l, partition: p, jobs: make(chan job), quit: make(chan struct{}), exited: make(chan struct{})}
	w.out = emitter{l: l, w: w}
	if err := w.restore(ctx); err != nil {
		return nil, err
	}
	go w.run()
	return w, nil
}

// restore rebuilds the partition: replay the changelog from the offset Pebble's state reflects
// to the last stable offset, then load Pebble into a new sessionizer.
func (w *worker) restore(ctx context.Context) error {
	l := w.l
	p, err := l.store.Load(w.partition, func([]byte) error { return nil })
	if err != nil {
		return err
	}
	from := max(p.ChangelogOffset, 0)
	end, err := l.stableChangelogEnd(ctx, w.partition)
	if err != nil {
		return err
	}
	if from < end.Offset {
		recs, err := l.readChangelog(ctx, w.partition, from, end.Offset)
		if err != nil {
			return err
		}
		// Only whole cycles: a cycle's changelog ends with its partition record, so key records
		// after the last one belong to a cycle that crashed before its end (possible without
		// transactions); its input is read again from the offsets that record holds.
		last := -1
		for i, r := range recs {
			if bytes.Equal(r.Key, state.PartitionRecordKey) {
				last = i
			}
		}
		recs = recs[:last+1]
		if err := l.store.Replay(w.partition, recs); err != nil {
			return err
		}
	}
	w.f = newFlow(l.rules.Load(), l.cfg.Topics, w.partition, l.logLevel, &w.out)
	w.f.clock = l.cfg.Now
	s, err := operators.NewSessionizer(l.cfg.Operators, w.partition, w.f)
	if err != nil {
		return err
	}
	w.f.setSessionizer(s)
	loaded, err := l.store.Load(w.partition, func(b []byte) error { return s.RestoreKey(b) })
	if err != nil {
		return err
	}
	w.next = map[string]int64{}
	if loaded.Snapshot != nil {
		snap, err := state.ParsePartitionRecord(loaded.Snapshot, w.next)
		if err != nil {
			return fmt.Errorf("pipeline: partition %d: %w", w.partition, err)
		}
		if err := s.RestorePartition(snap); err != nil {
			return err
		}
	}
	s.SetColdStore(l.store.Cold(w.partition))
	s.Evict(l.cfg.MaxCachedKeys)
	w.s = s
	l.restores.Add(1)
	if m := l.cfg.Metrics; m != nil {
		m.restores.Inc()
	}
	l.log.Info("partition restored", "partition", w.partition, "keys", loaded.Keys, "changelog_from", from, "changelog_end", end.Offset)
	return nil
}

// stableChangelogEnd waits until the changelog partition has no open transaction (its last
// stable offset reached its high watermark) and returns that end. A transaction left open by a
// crashed process hides every record after it from read_committed readers, including cycles that
// a later owner committed; restoring before the broker aborts it (after the transaction timeout)
// would miss them while the group's offsets already count them.
func (l *Live) stableChangelogEnd(ctx context.Context, partition int32) (kadm.ListedOffset, error) {
	topic := l.cfg.Topics.Changelog
	waited := false
	for {
		stable, err := l.adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			return kadm.ListedOffset{}, fmt.Errorf("pipeline: listing changelog offsets: %w", err)
		}
		end, ok := stable.Lookup(topic, partition)
		if !ok || end.Err != nil {
			return kadm.ListedOffset{}, fmt.Errorf("pipeline: topic %q has no partition %d; create it with as many partitions as the inputs, compacted (or pass --create-topics)", topic, partition)
		}
		hw, err := l.adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return kadm.ListedOffset{}, fmt.Errorf("pipeline: listing changelog offsets: %w", err)
		}
		if h, ok := hw.Lookup(topic, partition); ok && h.Err == nil && h.Offset <= end.Offset {
			return end, nil
		}
		if !waited {
			l.log.Info("waiting for an open transaction on the changelog to end (a crashed process's, aborted after its timeout)",
				"partition", partition)
			waited = true
		}
		select {
		case <-ctx.Done():
			return kadm.ListedOffset{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readChangelog reads partition's changelog records in [from, end) with read_committed
// isolation; transaction markers are kept so that reaching end needs no timeout.
func (l *Live) readChangelog(ctx context.Context, partition int32, from, end int64) ([]state.ChangelogRecord, error) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(l.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{l.cfg.Topics.Changelog: {partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	}, l.cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	defer cl.Close()
	var recs []state.ChangelogRecord
	for next := from; next < end; {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			return nil, fmt.Errorf("pipeline: reading changelog partition %d: %w", partition, errs[0].Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			next = r.Offset + 1
			if !r.Attrs.IsControl() && r.Offset < end {
				recs = append(recs, state.ChangelogRecord{Offset: r.Offset, Key: r.Key, Value: r.Value})
			}
		})
	}
	return recs, nil
}

func (w *worker) run() {
	defer close(w.exited)
	for {
		select {
		case j := <-w.jobs:
			w.work(j)
			j.done.Done()
		case <-w.quit:
			return
		}
	}
}

// work processes one cycle's records, produces outputs and changelog records, and prepares the
// Pebble batch that finish commits.
func (w *worker) work(j job) {
	l := w.l
	w.err = nil
	w.lastCL.Store(-1)
	w.out.promise = j.promise
	if rs := l.rules.Load(); rs != w.f.rs {
		w.f.setRules(rs) // at the cycle boundary
	}
	before := w.s.Watermark()
	metered := l.cfg.Metrics != nil
	if metered {
		w.counts = cycleCounts{in: map[string]int{}, out: map[string]int{}, times: w.counts.times[:0]}
	}
	for _, r := range j.recs {
		if next, ok := w.next[r.Topic]; ok && r.Offset < next {
			continue // already in the restored state (read again after a crash without a transaction)
		}
		w.next[r.Topic] = r.Offset + 1
		if metered {
			w.counts.in[r.Topic]++
			w.counts.times = append(w.counts.times, r.Timestamp.UnixMilli())
		}
		w.s.Process(&operators.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp.UnixMilli()})
	}
	w.s.Tick(j.now)
	stats := w.s.Stats()
	w.counts.stats = stats
	w.counts.flow = w.f.stats
	l.statsMu.Lock()
	l.partStats[w.partition] = stats
	l.statsMu.Unlock()
	if err := w.s.Err(); err != nil {
		w.err = err
		return
	}
	w.batch = l.store.NewBatch(w.partition)
	var snap []byte
	changed := len(j.recs) > 0 || w.s.Watermark() != before
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
		w.produceChangelog(k, v, j.promise)
	})
	if !changed {
		w.batch.Discard()
		w.batch = nil
		return
	}
	w.partSnap = state.AppendPartitionRecord(w.partSnap[:0], w.next, w.s.AppendPartitionSnapshot(nil))
	// A large reorder buffer makes a snapshot larger than a Kafka record may be: it goes out in
	// chunks, followed by the partition record (state.PartitionRecords).
	keys, values := state.PartitionRecords(append([]byte(nil), w.partSnap...), state.MaxPartitionChunk)
	for i := range keys {
		w.produceChangelog(keys[i], values[i], j.promise)
	}
}

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

// finish commits the cycle's Pebble batch when the transaction committed, with the changelog
// offset after the cycle's last changelog record; otherwise it discards it.
func (w *worker) finish(committed bool) error {
	if committed {
		w.applyMetrics()
	}
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
	if err := b.Commit(); err != nil {
		return err
	}
	w.s.Evict(w.l.cfg.MaxCachedKeys)
	return nil
}

// count notes an output record to topic for this cycle's metrics.
func (w *worker) count(topic string) {
	if w.counts.out != nil {
		w.counts.out[topic]++
	}
}

// applyMetrics adds a committed cycle to the counters: the sessionizer's counters since the
// last commit, the records in and out, and each input record's latency to this commit.
func (w *worker) applyMetrics() {
	m := w.l.cfg.Metrics
	if m == nil || w.counts.in == nil {
		return
	}
	c, prev := &w.counts, &w.prev
	for t, n := range c.in {
		m.recordsIn.WithLabelValues(t).Add(float64(n))
	}
	for t, n := range c.out {
		m.recordsOut.WithLabelValues(t).Add(float64(n))
	}
	for _, t := range operators.SystemTypes() {
		m.system.WithLabelValues(t.String()).Add(float64(c.stats.System[t] - prev.System[t]))
	}
	for r, n := range c.stats.DeadByReason {
		m.dead.WithLabelValues(string(r)).Add(float64(n - prev.DeadByReason[r]))
	}
	m.late.Add(float64(c.stats.Late - prev.Late))
	m.applyFlow(&c.flow, &w.prevFlow)
	w.prevFlow = c.flow
	now := time.Now().UnixMilli()
	for _, t := range c.times {
		m.latency.Observe(float64(now-t) / 1000)
	}
	if wm := c.stats.Watermark; wm != math.MinInt64 && wm != math.MaxInt64 {
		m.watermarkLag.WithLabelValues(partitionLabel(w.partition)).Set(float64(w.l.cfg.Now().UnixMilli()-wm) / 1000)
	}
	w.prev = c.stats
	w.counts.in, w.counts.out = nil, nil
}

// stop ends the worker goroutine and waits for it.
func (w *worker) stop() {
	if m := w.l.cfg.Metrics; m != nil {
		m.watermarkLag.DeleteLabelValues(partitionLabel(w.partition))
		m.consumerLag.DeleteLabelValues(partitionLabel(w.partition))
	}
	w.l.statsMu.Lock()
	delete(w.l.partStats, w.partition)
	w.l.statsMu.Unlock()
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
}

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
