package pipeline

import (
	"math"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
)

// Metrics are the live processor's Prometheus series, on a registry the caller owns. Counters
// move when a cycle's transaction commits, so a cycle that aborts and is processed again is
// counted once.
type Metrics struct {
	reg           prometheus.Registerer
	recordsIn     *prometheus.CounterVec // topic
	recordsOut    *prometheus.CounterVec // topic
	system        *prometheus.CounterVec // type
	dead          *prometheus.CounterVec // reason
	late          *prometheus.CounterVec
	cycle         prometheus.Histogram
	latency       prometheus.Histogram
	txns          *prometheus.CounterVec // result
	rebalances    prometheus.Counter
	restores      prometheus.Counter
	watermarkLag  *prometheus.GaugeVec   // partition
	consumerLag   *prometheus.GaugeVec   // partition
	ruleEvents    *prometheus.CounterVec // state
	ruleOutputs   *prometheus.CounterVec // kind
	ruleErrors    prometheus.Counter
	cycleFailures *prometheus.CounterVec // reason
	skipped       *prometheus.CounterVec // reason
	scheduled     prometheus.Counter
	eventLog      prometheus.Counter
	savepoints    *prometheus.CounterVec // result
	jobFires      *prometheus.CounterVec // job, result
	jobDelay      prometheus.Histogram
	kprom         *kprom.Metrics
}

func histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "dwell", Name: name, Help: help, Buckets: buckets,
		// Native buckets as well as classic ones: exact quantiles where the server supports them.
		NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 160,
	})
}

// NewMetrics creates the series and registers them, with franz-go's client metrics, on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		recordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "records_in_total",
			Help: "Input records processed, by topic."}, []string{"topic"}),
		recordsOut: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "records_out_total",
			Help: "Output records committed, by topic (the changelog included)."}, []string{"topic"}),
		system: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "system_events_total",
			Help: "System events emitted, by type."}, []string{"type"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "dead_letters_total",
			Help: "Records dead-lettered, by reason."}, []string{"reason"}),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "late_events_total",
			Help: "Late events (behind the watermark and unable to join a visit, or beyond the allowed lateness), by reason."}, []string{"reason"}),
		cycle: histogram("cycle_duration_seconds", "Wall time of a processing cycle, poll to transaction end.",
			prometheus.ExponentialBuckets(0.001, 2, 14)),
		latency: histogram("event_to_output_latency_seconds", "Wall time from an input record's timestamp to the commit of its cycle.",
			prometheus.ExponentialBuckets(0.005, 2, 16)),
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "transactions_total",
			Help: "Transactions ended, by result (committed, aborted)."}, []string{"result"}),
		rebalances: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dwell", Name: "rebalances_total",
			Help: "Partition assignments and revocations seen."}),
		restores: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dwell", Name: "partition_restores_total",
			Help: "Partitions restored from Pebble and the changelog."}),
		watermarkLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "dwell", Name: "watermark_lag_seconds",
			Help: "Wall clock minus the partition's watermark."}, []string{"partition"}),
		consumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "dwell", Name: "consumer_lag_records",
			Help: "Records between the partition's last fetched offset and its high watermark."}, []string{"partition"}),
	}
	m.ruleEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "rule_events_total",
		Help: "Events the rules layer handled, by event-log state (processed, error, ignored, dead-lettered, late)."}, []string{"state"})
	m.ruleOutputs = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "rule_outputs_total",
		Help: "Records rules produced, by kind (emit, notify, route)."}, []string{"kind"})
	m.ruleErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dwell", Name: "rule_errors_total",
		Help: "Rule run-time errors (a condition or an action that failed on an event)."})
	m.scheduled = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dwell", Name: "scheduled_events_fired_total",
		Help: "Scheduled events (rules' schedule action) that fired."})
	m.cycleFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "cycle_failures_total",
		Help: "Processing cycles that failed (their transaction aborted or never ended) and were retried after rebuilding the partitions, by reason."}, []string{"reason"})
	for _, r := range cycleFailureReasons {
		m.cycleFailures.WithLabelValues(r)
	}
	m.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "records_skipped_total",
		Help: "Input records not processed, by reason (in-state: at-least-once, read again after a crash, and already held by the restored state)."}, []string{"reason"})
	m.skipped.WithLabelValues(skipInState)
	m.eventLog = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dwell", Name: "event_log_records_total",
		Help: "Records written to the event log."})
	m.savepoints = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "savepoints_total",
		Help: "Savepoints ended, by result: completed (the descriptor committed) or abandoned (a cycle did not commit, the partition stopped, or an error)."}, []string{"result"})
	for _, r := range []string{"completed", "abandoned"} {
		m.savepoints.WithLabelValues(r)
	}
	reg.MustRegister(m.savepoints)
	m.jobFires = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "job_fires_total",
		Help: "Scheduled jobs fired, by job and result (fired; error: a property template failed, the event went out without it)."}, []string{"job", "result"})
	m.jobDelay = histogram("job_fire_delay_seconds", "Time from a job's scheduled time to the cycle that fired it (wall clock live).",
		prometheus.ExponentialBuckets(0.01, 2, 16))
	reg.MustRegister(m.jobFires, m.jobDelay)
	reg.MustRegister(m.recordsIn, m.recordsOut, m.system, m.dead, m.late, m.cycle, m.latency, m.txns,
		m.rebalances, m.restores, m.watermarkLag, m.consumerLag, m.ruleEvents, m.ruleOutputs, m.ruleErrors, m.scheduled, m.eventLog, m.cycleFailures, m.skipped)
	for _, s := range []rules.LogState{rules.Processed, rules.Errored, rules.Ignored, rules.DeadLettered, rules.Late} {
		m.ruleEvents.WithLabelValues(s.String())
	}
	for _, k := range []rules.OutputKind{rules.OutEmit, rules.OutNotify, rules.OutRoute} {
		m.ruleOutputs.WithLabelValues(k.String())
	}
	for _, t := range operators.SystemTypes() {
		m.system.WithLabelValues(t.String())
	}
	for _, r := range operators.DeadReasons() {
		m.dead.WithLabelValues(string(r))
	}
	for _, r := range operators.LateReasons() {
		m.late.WithLabelValues(string(r))
	}
	for _, r := range []string{"committed", "aborted"} {
		m.txns.WithLabelValues(r)
	}
	m.kprom = KafkaClientMetrics(reg)
	return m
}

// attach registers the gauges that read l's state.
func (m *Metrics) attach(l *Live) {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "dwell", Name: name, Help: help}, f)
	}
	stats := func(f func(LiveStats) float64) func() float64 { return func() float64 { return f(l.Stats()) } }
	m.reg.MustRegister(
		newStallCollector(l),
		newSavepointAgeCollector(l),
		gauge("partitions_behind", "Partitions whose cycle budget (--max-cycle-work, --max-cycle-time) stopped work that goes on at the next cycle; their fetching is paused meanwhile.",
			stats(func(s LiveStats) float64 { return float64(s.Behind) })),
		gauge("held_records", "Records held while their partition's watermark catches up.", stats(func(s LiveStats) float64 { return float64(s.Held) })),
		gauge("ready", "1 when /readyz answers 200 (every assigned partition restored, none stalled), else 0: restoring, waiting for an assignment, or stalled.",
			func() float64 { return map[bool]float64{true: 1}[l.Readiness() == nil] }),
		gauge("assigned_partitions", "Partitions this instance processes.", stats(func(s LiveStats) float64 { return float64(s.Partitions) })),
		gauge("open_visits", "Visits open on this instance's partitions.", stats(func(s LiveStats) float64 { return float64(s.OpenVisits) })),
		gauge("open_sessions", "Sessions open on this instance's partitions.", stats(func(s LiveStats) float64 { return float64(s.OpenSessions) })),
		gauge("pending_timers", "Timers pending in memory.", stats(func(s LiveStats) float64 { return float64(s.Timers) })),
		gauge("keys_in_memory", "Keys held in memory (the rest are in Pebble).", stats(func(s LiveStats) float64 { return float64(s.Keys) })),
		gauge("pebble_compaction_debt_bytes", "Pebble's estimate of bytes to compact.", func() float64 { return float64(l.store.Health().CompactionDebtBytes) }),
		gauge("pebble_l0_files", "Pebble L0 sstables.", func() float64 { return float64(l.store.Health().L0Files) }),
		gauge("pebble_cache_hit_ratio", "Pebble block cache hits over lookups.", func() float64 {
			h := l.store.Health()
			if h.CacheHits+h.CacheMisses == 0 {
				return 0
			}
			return float64(h.CacheHits) / float64(h.CacheHits+h.CacheMisses)
		}),
	)
}

// cycleCounts is what one worker's cycle adds to the counters once its transaction commits.
type cycleCounts struct {
	in      map[string]int
	out     map[string]int
	stats   operators.Stats // the sessionizer's counters at the end of the cycle
	flow    flowStats       // the flow's counters at the end of the cycle
	times   []int64         // input record timestamps (Unix ms), for latency
	jobs    []jobFire       // the cycle's job fires
	skipped int             // input records skipped (skipInState)
}

// jobFire is one fire of a scheduled job, for the metrics once its cycle commits.
type jobFire struct {
	job     string
	ok      bool
	delayMs int64
}

func partitionLabel(p int32) string { return strconv.Itoa(int(p)) }

// applyFlow adds the flow's counters since prev.
func (m *Metrics) applyFlow(cur, prev *flowStats) {
	for s := range cur.States {
		if n := cur.States[s] - prev.States[s]; n > 0 {
			m.ruleEvents.WithLabelValues(rules.LogState(s).String()).Add(float64(n))
		}
	}
	for k := range cur.Outputs {
		if n := cur.Outputs[k] - prev.Outputs[k]; n > 0 {
			m.ruleOutputs.WithLabelValues(rules.OutputKind(k).String()).Add(float64(n))
		}
	}
	m.ruleErrors.Add(float64(cur.RuleErrors - prev.RuleErrors))
	m.scheduled.Add(float64(cur.Scheduled - prev.Scheduled))
	m.eventLog.Add(float64(cur.Logged - prev.Logged))
	m.dead.WithLabelValues(string(operators.ReasonRuleError)).Add(float64(cur.RuleDead - prev.RuleDead))
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
	w.out.committed() // the producer's dead letters (emit.go), also counted without metrics
	m := w.l.cfg.Metrics
	if m == nil || w.counts.in == nil {
		return
	}
	c, prev := &w.counts, &w.prev
	for t, n := range c.in {
		m.recordsIn.WithLabelValues(t).Add(float64(n))
	}
	if c.skipped > 0 {
		m.skipped.WithLabelValues(skipInState).Add(float64(c.skipped))
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
	for r, n := range c.stats.LateByReason {
		m.late.WithLabelValues(string(r)).Add(float64(n - prev.LateByReason[r]))
	}
	m.applyFlow(&c.flow, &w.prevFlow)
	for _, f := range c.jobs {
		result := "fired"
		if !f.ok {
			result = "error"
		}
		m.jobFires.WithLabelValues(f.job, result).Inc()
		m.jobDelay.Observe(float64(f.delayMs) / 1000)
	}
	c.jobs = c.jobs[:0]
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
