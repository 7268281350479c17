package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
)

// Topics names the output topics.
type Topics struct {
	System, Events, Late, Dead string
	// Changelog, Savepoints and SavepointData are the application's internal topics: its state
	// (compacted), the descriptors of its savepoints, and their data. Their defaults derive
	// from the application id (InternalTopics), so two applications never share state.
	Changelog, Savepoints, SavepointData string
	// EventLog is the event log's topic (written unless LiveConfig.EventLog is none).
	EventLog string
	// QueuePrefix names queue topics: QueuePrefix + queue name.
	QueuePrefix string
}

// DefaultTopics are the default output topic names (README, Outputs), and those of the rules'
// outputs.
func DefaultTopics() Topics {
	t := defaultOutputs()
	t.Changelog, t.Savepoints, t.SavepointData = InternalTopics(DefaultLiveConfig().Group)
	return t
}

// defaultOutputs are DefaultTopics without the internal topics.
func defaultOutputs() Topics {
	return Topics{System: "dwell.system-events", Events: "dwell.events", Late: "dwell.late", Dead: "dwell.dlq",
		EventLog: "dwell.event-log", QueuePrefix: "dwell.queue."}
}

// InternalTopics returns the default names of an application's internal topics, as Kafka
// Streams derives its internal topics from application.id: <app>.changelog, <app>.savepoints
// and <app>.savepoint-data. The default application id, the group "dwell", gives the
// changelog name dwell used before application ids existed, so such a deployment keeps its
// state.
func InternalTopics(app string) (changelog, savepoints, savepointData string) {
	return app + ".changelog", app + ".savepoints", app + ".savepoint-data"
}

// LiveConfig configures the live processor. Zero fields take the defaults given.
type LiveConfig struct {
	Brokers []string
	// Group is the consumer group. Default "dwell".
	Group string
	// ApplicationID names the application's internal topics (InternalTopics) and is recorded in
	// the data dir, which then refuses another. Default: the group.
	ApplicationID string
	// Inputs are the input topics; they must be co-partitioned (same partition count, keyed
	// alike): partition p of every input feeds the same state.
	Inputs []string
	// Topics are the output topics. Default DefaultTopics, with the internal topics named
	// from ApplicationID.
	Topics Topics
	// SavepointInterval is how often each partition writes a savepoint: a consistent copy of
	// its state with its input offsets, that dwell reset rewinds to. Default 1h; negative: none.
	SavepointInterval time.Duration
	// SavepointCycleBytes bounds the savepoint data (keys' and values' bytes) one partition
	// writes in one cycle, so that a savepoint of a large state is spread over many cycles and
	// slows none much: at least one record a cycle. Default 256 KiB: with a savepoint always in
	// progress, about 6-8% of the throughput at full load (README, Performance, Savepoints:
	// BenchmarkPipelineKfakeSavepoint).
	SavepointCycleBytes int
	// SavepointRetention is how long the savepoint topics keep savepoints (retention.ms of the
	// topics --create-topics makes), and so how far back dwell reset can rewind to a time
	// without replaying from the start. Default 7 days.
	SavepointRetention time.Duration
	// DataDir holds the Pebble state. Required; FS overrides the file system (tests).
	DataDir string
	FS      vfs.FS
	// Operators configures decoding and sessionization.
	Operators operators.Config
	// MaxPollRecords bounds the records of one cycle (one transaction). Default 10,000.
	MaxPollRecords int
	// PollTimeout bounds how long a cycle waits for records before it runs anyway (idle
	// advancement, timers). Default 250ms.
	PollTimeout time.Duration
	// MaxCachedKeys bounds the keys each partition keeps in memory; colder ones live in
	// Pebble. Default 1,000,000. Between two cycle ends a partition may hold up to
	// 2 x MaxPollRecords + MaxCycleLoads more: the keys a cycle creates (from this poll's
	// records and those held from the last) or loads back.
	MaxCachedKeys int
	// MaxCycleWork bounds one partition's work in one cycle, in units: each event processed,
	// timer fired, held record processed and evicted key loaded is one (operators.Budget).
	// Work left over (a timer storm after the watermark jumped) goes on at the next cycle, with
	// the same output; meanwhile the partition's records are held and its fetching paused.
	// Default 100,000.
	MaxCycleWork int
	// MaxCycleLoads bounds the evicted keys one partition loads back from Pebble in one cycle
	// (for its timers or its events), which stay in memory until the cycle ends. Default 10,000.
	MaxCycleLoads int
	// MaxCycleTime bounds the time one cycle spends processing, the same way; it must leave the
	// cycle time to end its transaction. Default a third of TransactionTimeout.
	MaxCycleTime time.Duration
	// StallTimeout: an assigned partition whose cycles have not committed for this long (the
	// cycle is stuck, or keeps failing) is stalled: /readyz fails and
	// dwell_partition_stalled{partition} is 1. Default 2m.
	StallTimeout time.Duration
	// Logger, default discard. Now is the wall clock, default time.Now.
	Logger *slog.Logger
	Now    func() time.Time
	// AdvertisedAdminURL is the admin API's URL as the group's other instances reach it
	// (pipeline/admin, --admin-advertise), e.g. http://10.0.0.7:8787. It becomes the consumer's
	// Kafka client id (AdminURLClientIDPrefix + URL), so that any instance finds which one
	// answers queries for a partition (PartitionOwners). Default none: queries for partitions
	// this instance does not own cannot be forwarded to it.
	AdvertisedAdminURL string
	// ClientOpts are added to every Kafka client (TLS, SASL, tests' settings).
	ClientOpts []kgo.Opt
	// Metrics, if set, receives the processor's series (NewMetrics).
	Metrics *Metrics
	// Compression of produced batches: lz4 (default: cheap, about 20% more throughput than
	// zstd here), zstd (smaller), snappy or none.
	Compression string
	// Guarantee is "exactly-once" (default: one transaction per cycle) or "at-least-once" (no
	// transactions: after a crash, outputs may repeat, with the same ids; state never counts an
	// input twice).
	Guarantee string
	// TransactionTimeout is how long the broker lets a transaction stay open: a cycle must end
	// within it, and a crashed process's open transaction blocks read_committed readers (and
	// the restore of its partitions by another instance) for up to this long. A restart on the
	// same data dir aborts it at once. Default 30s.
	TransactionTimeout time.Duration
	// GroupSessionTimeout is how long the group coordinator waits for a silent member before
	// moving its partitions elsewhere. Default 45s (Kafka's); the broker's
	// group.min.session.timeout.ms bounds it from below.
	GroupSessionTimeout time.Duration
	// KafkaLogLevel is what the Kafka client logs through Logger: none, error, warn (default),
	// info or debug.
	KafkaLogLevel string
	// Rules is the rule set to run from the start (nil: none); SetRules replaces it.
	Rules *RuleSet
	// EventLog says which events go to Topics.EventLog: all, errors or none (default).
	EventLog string
	// FailureTimeout is how long cycles may keep failing (a broker outage, a restore that
	// cannot read the changelog) before Run gives up and returns the error; until then each
	// failure aborts the cycle, rebuilds the partitions from Kafka and retries with backoff.
	// Default 5m.
	FailureTimeout time.Duration
	// ConfigTopic is the topic rule sets come from (pipeline/rulesrc), if any: no rule may
	// write to it.
	ConfigTopic string
	// CreateTopics lets SetRules create the topics a rule set writes to (queues, emit topics)
	// when they are missing; otherwise such a rule set is refused.
	CreateTopics bool
}

// Guarantees.
const (
	ExactlyOnce = "exactly-once"
	AtLeastOnce = "at-least-once"
)

// DefaultLiveConfig returns a LiveConfig holding every default: the values the fields' comments
// name. Flags bind to its fields (cmd/dwell), and ensureDefaults fills the zero fields of a
// LiveConfig from it, so each default is written once.
func DefaultLiveConfig() LiveConfig {
	return LiveConfig{
		Group:               "dwell",
		SavepointInterval:   time.Hour,
		SavepointRetention:  7 * 24 * time.Hour,
		SavepointCycleBytes: 256 << 10,
		Topics:              defaultOutputs(),
		Operators:           *new(operators.Config).EnsureDefaults(),
		MaxPollRecords:      10_000,
		PollTimeout:         250 * time.Millisecond,
		MaxCachedKeys:       1_000_000,
		MaxCycleWork:        100_000,
		MaxCycleLoads:       10_000,
		StallTimeout:        2 * time.Minute,
		Compression:         "lz4",
		Guarantee:           ExactlyOnce,
		TransactionTimeout:  30 * time.Second,
		GroupSessionTimeout: 45 * time.Second,
		KafkaLogLevel:       "warn",
		EventLog:            "none",
		FailureTimeout:      5 * time.Minute,
	}
}

// ensureDefaults sets every zero field to its default (DefaultLiveConfig); Logger and Now, which
// have no value a flag could bind, default to discarding and to time.Now.
func (c *LiveConfig) ensureDefaults() {
	def := DefaultLiveConfig()
	if c.Group == "" {
		c.Group = def.Group
	}
	if c.ApplicationID == "" {
		c.ApplicationID = c.Group
	}
	changelog, savepoints, data := InternalTopics(c.ApplicationID)
	def.Topics.Changelog, def.Topics.Savepoints, def.Topics.SavepointData = changelog, savepoints, data
	for _, f := range []struct {
		p *string
		d string
	}{{&c.Group, def.Group}, {&c.Topics.System, def.Topics.System}, {&c.Topics.Events, def.Topics.Events},
		{&c.Topics.Late, def.Topics.Late}, {&c.Topics.Dead, def.Topics.Dead}, {&c.Topics.Changelog, def.Topics.Changelog},
		{&c.Topics.Savepoints, def.Topics.Savepoints}, {&c.Topics.SavepointData, def.Topics.SavepointData},
		{&c.Topics.EventLog, def.Topics.EventLog}, {&c.Topics.QueuePrefix, def.Topics.QueuePrefix},
		{&c.Guarantee, def.Guarantee}, {&c.EventLog, def.EventLog}} {
		if *f.p == "" {
			*f.p = f.d
		}
	}
	for _, f := range []struct {
		p *time.Duration
		d time.Duration
	}{{&c.PollTimeout, def.PollTimeout}, {&c.TransactionTimeout, def.TransactionTimeout},
		{&c.GroupSessionTimeout, def.GroupSessionTimeout}, {&c.FailureTimeout, def.FailureTimeout},
		{&c.StallTimeout, def.StallTimeout}, {&c.SavepointInterval, def.SavepointInterval},
		{&c.SavepointRetention, def.SavepointRetention}} {
		if *f.p == 0 {
			*f.p = f.d
		}
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = def.MaxPollRecords
	}
	if c.MaxCachedKeys == 0 {
		c.MaxCachedKeys = def.MaxCachedKeys
	}
	if c.SavepointCycleBytes == 0 {
		c.SavepointCycleBytes = def.SavepointCycleBytes
	}
	if c.MaxCycleWork == 0 {
		c.MaxCycleWork = def.MaxCycleWork
	}
	if c.MaxCycleLoads == 0 {
		c.MaxCycleLoads = def.MaxCycleLoads
	}
	if c.MaxCycleTime == 0 {
		c.MaxCycleTime = c.TransactionTimeout / 3
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Operators.EnsureDefaults()
}

// WithDefaults returns c with every zero field set to its default, the internal topics named
// from the application id.
func (c LiveConfig) WithDefaults() LiveConfig {
	c.ensureDefaults()
	return c
}

// Validate reports every setting of c that is missing or out of range, with its defaults
// filled in (as NewLive does), so that a command can refuse bad flags before it contacts a
// broker.
func (c LiveConfig) Validate() error {
	c.ensureDefaults()
	return c.validate()
}

func (c *LiveConfig) validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("pipeline: no brokers; pass --brokers host:port"))
	}
	if u := c.AdvertisedAdminURL; u != "" {
		if p, err := url.Parse(u); err != nil || p.Scheme != "http" && p.Scheme != "https" || p.Host == "" {
			errs = append(errs, fmt.Errorf("pipeline: advertised admin URL %q is not an http(s)://host:port URL (--admin-advertise)", u))
		}
	}
	if len(c.Inputs) == 0 {
		errs = append(errs, errors.New("pipeline: no input topics; pass --inputs"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("pipeline: no data dir; pass --data-dir"))
	}
	if c.Guarantee != ExactlyOnce && c.Guarantee != AtLeastOnce {
		errs = append(errs, fmt.Errorf("pipeline: guarantee %q: use exactly-once or at-least-once; pass --guarantee", c.Guarantee))
	}
	if c.MaxPollRecords < 1 || c.MaxCachedKeys < 0 || c.PollTimeout <= 0 {
		errs = append(errs, errors.New("pipeline: max poll records and poll timeout must be positive"))
	}
	if c.MaxCycleWork < 1 || c.MaxCycleLoads < 1 {
		errs = append(errs, fmt.Errorf("pipeline: max cycle work %d and max cycle loads %d must be positive; pass --max-cycle-work and --max-cycle-loads",
			c.MaxCycleWork, c.MaxCycleLoads))
	}
	if c.MaxCycleTime <= 0 || c.MaxCycleTime >= c.TransactionTimeout {
		errs = append(errs, fmt.Errorf("pipeline: max cycle time %s must be positive and below the transaction timeout %s, which the cycle's end needs too; pass --max-cycle-time (default a third of --transaction-timeout)",
			c.MaxCycleTime, c.TransactionTimeout))
	}
	if c.StallTimeout < 10*time.Second {
		errs = append(errs, fmt.Errorf("pipeline: stall timeout %s must be at least 10s (an idle partition proves progress by a fetch response, which brokers send every 5s when there is nothing to fetch); pass --stall-timeout", c.StallTimeout))
	}
	if c.SavepointRetention < time.Hour {
		errs = append(errs, fmt.Errorf("pipeline: savepoint retention %s must be at least 1h; pass --savepoint-retention", c.SavepointRetention))
	}
	if c.SavepointCycleBytes < 1 {
		errs = append(errs, fmt.Errorf("pipeline: savepoint cycle bytes %d must be positive; pass --savepoint-cycle-bytes", c.SavepointCycleBytes))
	}
	if _, err := rules.ParseLogLevel(c.EventLog); err != nil {
		errs = append(errs, fmt.Errorf("pipeline: event log %q: use all, errors or none; pass --event-log", c.EventLog))
	}
	errs = append(errs, c.Operators.Validate())
	return configError(errors.Join(errs...))
}

// CompressionCodec is the producer codec named name: lz4 (also for ""), zstd, snappy or none.
func CompressionCodec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "none":
		return kgo.NoCompression(), nil
	}
	return kgo.CompressionCodec{}, configError(fmt.Errorf("pipeline: compression %q: use lz4, zstd, snappy or none; pass --compression", name))
}

// ErrConfig marks errors of configuration: a value that is missing or not allowed, or a topic a
// rule set writes to that does not exist. Such an error's text names the flag that fixes it, and the
// CLI exits with its usage status (errors.Is(err, ErrConfig)).
var ErrConfig = errors.New("pipeline: invalid configuration")

// configError marks err (nil stays nil) with ErrConfig, its text unchanged.
func configError(err error) error {
	if err == nil {
		return nil
	}
	return configErr{err}
}

type configErr struct{ err error }

func (e configErr) Error() string   { return e.err.Error() }
func (e configErr) Unwrap() []error { return []error{e.err, ErrConfig} }
