package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
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
	// limits and poison: what each output topic takes, and the records Kafka refused
	// (limits.go, poison.go, emit.go).
	limits *limits
	poison poison

	// Owned by Run's goroutine.
	parts map[int32]*worker // running workers, by partition
	inTxn bool              // a transaction was begun and not ended
	// crashAt, set by tests, abandons the processor at a named point of a cycle: "before-end"
	// (transaction open) or "after-end" (transaction committed, Pebble not).
	crashAt func(point string) bool
	// savepointTaken, set by tests, is told of each savepoint's snapshot: its partition, id and
	// the changelog offset its state reflects (savepoints.go).
	savepointTaken func(partition int32, id string, changelogOffset int64)
	spTopics       savepointTopics // savepoints.go

	ready     atomic.Bool     // every assigned partition is restored
	stopping  atomic.Bool     // Run's context is done: workers cut their cycle short
	progress  progress        // health.go
	fetches   atomic.Int64    // fetch responses read from a broker (health.go)
	seen      int64           // fetches as of the last cycle's end; owned by Run's goroutine
	restores  atomic.Int64    // partitions restored
	committed atomic.Int64    // transactions committed
	aborted   atomic.Int64    // transactions aborted
	behind    atomic.Int64    // partition cycles that ended behind (their budget stopped them)
	spClocks  savepointClocks // savepoints.go

	logLevel rules.LogLevel
	rules    atomic.Pointer[RuleSet] // the rule set workers switch to at their next cycle
	rulesMu  sync.Mutex              // serialises SetRules

	// mu guards what the group's callbacks (rebalance.go) hand to Run's goroutine, which reads
	// it at the start of each cycle.
	mu struct {
		sync.Mutex
		// revoked holds the partitions revoked or lost since the last cycle: their workers stop.
		revoked map[int32]bool
		// assigned is the group's current assignment to this instance; a partition here
		// without a worker is restored at the next cycle.
		assigned map[int32]bool
		// workers are the running workers, as in parts, for queries (query.go).
		workers map[int32]*worker
	}
	nparts atomic.Int32   // the inputs' partition count, once read (query.go)
	hwm    highWatermarks // the inputs' high watermarks last fetched (query.go)
	// stats guards each worker's counters as of its last cycle, for Stats and the metrics
	// collector, which run on other goroutines.
	stats struct {
		sync.Mutex
		parts map[int32]operators.Stats
	}
}

// NewLive connects and opens the state store. Run starts processing; Close releases both.
func NewLive(cfg LiveConfig) (*Live, error) {
	cfg.ensureDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	codec, err := CompressionCodec(cfg.Compression)
	if err != nil {
		return nil, err
	}
	st, err := state.Open(state.Options{Dir: cfg.DataDir, FS: cfg.FS, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	l := &Live{cfg: cfg, log: cfg.Logger, store: st, parts: map[int32]*worker{}, limits: newLimits(cfg.Logger)}
	l.poison.init(cfg.Logger)
	l.mu.revoked, l.mu.assigned, l.mu.workers = map[int32]bool{}, map[int32]bool{}, map[int32]*worker{}
	l.stats.parts = map[int32]operators.Stats{}
	l.progress.last = map[int32]time.Time{}
	l.spClocks.since, l.spClocks.retry = map[int32]time.Time{}, map[int32]time.Time{}
	l.logLevel, _ = rules.ParseLogLevel(cfg.EventLog)
	if err := st.ClaimApplication(cfg.ApplicationID, cfg.DataDir); err != nil {
		return nil, errors.Join(configError(err), st.Close())
	}
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
		kgo.OnPartitionsRevoked(l.onRevokedOrLost),
		kgo.OnPartitionsLost(l.onRevokedOrLost),
		kgo.ProducerBatchMaxBytesFn(l.limits.producerMax), // each topic's max.message.bytes (limits.go)
		kgo.WithHooks(poisonHook{&l.poison}),              // records Kafka refuses (poison.go)
		kgo.WithHooks(fetchHook{&l.fetches}),              // fetch responses read (health.go)
	}, cfg.ClientOpts...)
	if cfg.AdvertisedAdminURL != "" {
		opts = append(opts, kgo.ClientID(AdminURLClientIDPrefix+strings.TrimSuffix(cfg.AdvertisedAdminURL, "/")))
	}
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
	l.loadLimits(cfg.Topics)
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
// cycle boundary, so a cycle runs one version throughout. It first checks that rs writes to
// no topic dwell reads or writes itself (ReservedTopics: this processor's inputs, outputs and
// config topic) and that the topics it writes to exist (creating them when
// LiveConfig.CreateTopics is set); otherwise rs is refused and the running set stays. Safe to call from any goroutine.
func (l *Live) SetRules(rs *RuleSet) error {
	l.rulesMu.Lock()
	defer l.rulesMu.Unlock()
	reserved := ReservedTopics(l.cfg.Inputs, l.cfg.Topics, l.cfg.ConfigTopic)
	if err := rs.checkReserved(l.cfg.Topics.QueuePrefix, reserved); err != nil {
		return configError(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ensureRuleTopics(ctx, l.adm, l.cfg.Inputs, rs.OutputTopics(l.cfg.Topics.QueuePrefix), l.cfg.CreateTopics, -1); err != nil {
		return err
	}
	l.limits.load(ctx, l.adm, rs.OutputTopics(l.cfg.Topics.QueuePrefix)) // before the first record to them
	old := l.rules.Swap(rs)
	if old != rs {
		l.log.Info("rule set applied", "version", rs.versionOrNone(), "previous", old.versionOrNone())
	}
	return nil
}

// RuleSetVersion is the version of the rule set SetRules last applied ("none": no rules).
func (l *Live) RuleSetVersion() string { return l.rules.Load().versionOrNone() }

// Ready reports whether every partition assigned to this instance has been restored and none
// is stalled (Readiness says why not).
func (l *Live) Ready() bool { return l.Readiness() == nil }

// partitionFor places output records: the internal topics (changelog, savepoints) by the
// partition they belong to, everything else by key with Kafka's murmur2, as a Java producer
// would.
func (l *Live) partitionFor(topic string) func(r *kgo.Record, n int) int {
	if t := l.cfg.Topics; topic == t.Changelog || topic == t.Savepoints || topic == t.SavepointData {
		return func(r *kgo.Record, n int) int { return int(r.Partition) % n }
	}
	return func(r *kgo.Record, n int) int {
		if len(r.Key) == 0 {
			return int(r.Partition) % n
		}
		return int(KafkaPartition(r.Key, int32(n)))
	}
}

// LiveStats is a consistent view of the processor for summaries and metrics.
type LiveStats struct {
	operators.Stats    // summed over the partitions this instance owns
	Partitions         int
	Committed, Aborted int64 // transactions
	Restores           int64 // partitions restored
	// BehindCycles counts partition cycles whose budget stopped work that went on at the next
	// cycle (MaxCycleWork, MaxCycleTime).
	BehindCycles int64
}

// Stats sums the partitions' counters as of their last cycle. Safe to call while Run runs.
func (l *Live) Stats() LiveStats {
	st := LiveStats{Committed: l.committed.Load(), Aborted: l.aborted.Load(), Restores: l.restores.Load(), BehindCycles: l.behind.Load()}
	st.DeadByReason = map[operators.Reason]uint64{}
	l.stats.Lock()
	defer l.stats.Unlock()
	st.Partitions = len(l.stats.parts)
	for _, p := range l.stats.parts {
		st.Add(p)
	}
	l.poison.addStats(&st.Stats)
	return st
}

// setPartitionStats records partition's counters after a cycle (nil: the partition is gone).
func (l *Live) setPartitionStats(partition int32, s *operators.Stats) {
	l.stats.Lock()
	defer l.stats.Unlock()
	if s == nil {
		delete(l.stats.parts, partition)
		return
	}
	l.stats.parts[partition] = *s
}

// stopWorkers stops every worker; their partitions restore at their next cycle.
func (l *Live) stopWorkers() {
	for p, w := range l.parts {
		w.stop()
		l.setWorker(p, nil)
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
