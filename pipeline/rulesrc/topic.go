package rulesrc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline"
)

// DefaultTopic is the config topic: compacted, one partition.
const DefaultTopic = pipeline.DefaultConfigTopic

// RecordKey is the key of the config topic's rule-set records; compaction keeps the latest.
const RecordKey = "ruleset"

// envelopeFormat is the format this dwell writes and reads; a record of another format is
// rejected (written by a newer dwell).
const envelopeFormat = 1

// envelope is a config-topic record's value: the YAML as written, so that every instance
// compiles it itself, and who published it when.
type envelope struct {
	Format int `json:"format"`
	// Version is the rule set's version at publication (informational: readers parse the YAML).
	Version     string    `json:"version,omitempty"`
	Rules       string    `json:"rules,omitempty"`
	Registry    string    `json:"registry,omitempty"`
	PublishedAt time.Time `json:"published_at"`
	By          string    `json:"by,omitempty"`
}

func encodeEnvelope(c Content, version, by string, at time.Time) ([]byte, error) {
	return json.Marshal(envelope{Format: envelopeFormat, Version: version, Rules: string(c.Rules),
		Registry: string(c.Registry), PublishedAt: at.UTC(), By: by})
}

// decodeEnvelope reads a record value into the Content it carries.
func decodeEnvelope(b []byte) (Content, envelope, error) {
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return Content{}, e, fmt.Errorf("rulesrc: not a rule-set record: %w", err)
	}
	if e.Format != envelopeFormat {
		return Content{}, e, fmt.Errorf("rulesrc: record format %d; this dwell reads format %d (a newer dwell published it?)", e.Format, envelopeFormat)
	}
	c := Content{Rules: []byte(e.Rules), Registry: []byte(e.Registry), RulesName: "rules YAML", RegistryName: "registry YAML"}
	if e.Rules == "" {
		c.Rules = nil
	}
	if e.Registry == "" {
		c.Registry = nil
	}
	return c, e, nil
}

// Publish validates c and, if it parses, writes it to the config topic as the latest version
// (a synchronous, acknowledged produce). A rule set that does not parse is never published.
func Publish(ctx context.Context, cl *kgo.Client, topic string, c Content, by string) (*pipeline.RuleSet, error) {
	rs, err := c.Parse()
	if err != nil {
		return nil, err
	}
	value, err := encodeEnvelope(c, rs.Version, by, time.Now())
	if err != nil {
		return nil, fmt.Errorf("rulesrc: %w", err)
	}
	r := &kgo.Record{Topic: topic, Key: []byte(RecordKey), Value: value}
	if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return nil, fmt.Errorf("rulesrc: publishing to %q: %w", topic, err)
	}
	return rs, nil
}

// EnsureTopic checks that the config topic exists; with create, a missing one is created
// (one partition, compacted) and waited for. Without, the error wraps ErrNoTopic.
func EnsureTopic(ctx context.Context, cl *kgo.Client, topic string, create bool) error {
	adm := kadm.NewClient(cl)
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("rulesrc: listing topics: %w", err)
	}
	if d, ok := details[topic]; ok && d.Err == nil {
		return nil
	}
	if !create {
		return fmt.Errorf("%w: %q (create it with one partition and cleanup.policy=compact)", ErrNoTopic, topic)
	}
	compact := "compact"
	resp, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("rulesrc: creating config topic %q: %w", topic, err)
	}
	// A new topic reaches the brokers' metadata asynchronously. Asking for the authorized
	// operations bypasses the client's metadata cache, which still holds "unknown topic".
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		md, err := adm.Metadata(kadm.WithAuthorizedOps(ctx), topic)
		if err == nil {
			if d, ok := md.Topics[topic]; ok && d.Err == nil && len(d.Partitions) > 0 {
				ready := true
				for _, p := range d.Partitions {
					ready = ready && p.Leader >= 0 && p.Err == nil
				}
				if ready {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rulesrc: created config topic %q but it has no leader: %w", topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TopicConfig configures Topic. Zero fields take the defaults given.
type TopicConfig struct {
	Brokers []string
	// ClientOpts are added to the Kafka client (TLS, SASL).
	ClientOpts []kgo.Opt
	// Topic is the config topic. Default DefaultTopic.
	Topic string
	// Signals, if set: on every value received, the newest valid version is applied again if
	// Apply refused it (its output topics have been created since).
	Signals <-chan os.Signal
	// Interval bounds how long a poll waits before Signals is looked at. Default 2s.
	Interval time.Duration
	// Logger, default discard. Metrics, if set, receives the reloads and the version.
	Logger  *slog.Logger
	Metrics *Metrics
}

// Topic is a Source that follows the config topic. It reads the topic with a client of its own,
// without a consumer group: every instance reads every record.
type Topic struct {
	cfg     TopicConfig
	cl      *kgo.Client
	a       applier
	loaded  bool       // caught up once (Load, or the start of Watch)
	pending *candidate // the newest valid version, if Apply refused it
}

// candidate is a version read from the topic.
type candidate struct {
	rs    *pipeline.RuleSet
	sum   [32]byte
	attrs []any // where it was read, who published it
}

// NewTopic creates the client; nothing is read before Load or Watch.
func NewTopic(cfg TopicConfig) (*Topic, error) {
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // so that the catch-up sees every offset up to the end
	}, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("rulesrc: %w", err)
	}
	return &Topic{cfg: cfg, cl: cl, a: newApplier("topic", cfg.Logger, cfg.Metrics)}, nil
}

// WatchTopic applies the config topic's newest valid version, then every newer one, until ctx
// is done.
func WatchTopic(ctx context.Context, cfg TopicConfig, apply Apply) error {
	t, err := NewTopic(cfg)
	if err != nil {
		return err
	}
	defer t.Close()
	return t.Watch(ctx, apply)
}

// Load reads the topic up to its last stable offsets and returns the newest valid version (nil
// when there is none: no record, or only invalid ones, which are logged and counted).
func (t *Topic) Load(ctx context.Context) (*pipeline.RuleSet, error) {
	recs, err := t.catchUp(ctx)
	if err != nil {
		return nil, err
	}
	t.loaded = true
	c := t.newest(recs)
	if c == nil {
		t.a.log.Warn("no rule set in the config topic; running without rules until one is published", "topic", t.cfg.Topic)
		return nil, nil
	}
	t.a.running(c.rs, c.sum)
	t.a.log.Info("rules loaded", append(c.attrs, "version", c.rs.Version)...)
	return c.rs, nil
}

// Watch catches up if Load has not, then applies each newer valid version until ctx is done.
func (t *Topic) Watch(ctx context.Context, apply Apply) error {
	if !t.loaded {
		recs, err := t.catchUp(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		t.loaded = true
		t.consider(apply, recs)
	}
	t.a.log.Info("following the config topic", "topic", t.cfg.Topic)
	signals := t.cfg.Signals
	var lastErr string
	for {
		pollCtx, cancel := context.WithTimeout(ctx, t.cfg.Interval)
		fetches := t.cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if fetches.IsClientClosed() {
			return errors.New("rulesrc: the config topic's client is closed")
		}
		fetches.EachError(func(_ string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || err.Error() == lastErr {
				return
			}
			lastErr = err.Error() // a lasting error is logged once
			t.a.log.Warn("reading the config topic", "topic", t.cfg.Topic, "partition", p, "err", err)
		})
		if recs := records(fetches); len(recs) > 0 {
			lastErr = ""
			t.consider(apply, recs)
		}
		select {
		case sig, ok := <-signals:
			if !ok {
				signals = nil
				break
			}
			t.retry(apply, sig)
		default:
		}
	}
}

// Close releases the client.
func (t *Topic) Close() error {
	t.cl.Close()
	return nil
}

// catchUp reads the topic from the start to its last stable offsets (and whatever else the
// polls return).
func (t *Topic) catchUp(ctx context.Context) ([]*kgo.Record, error) {
	adm := kadm.NewClient(t.cl)
	ends, err := adm.ListCommittedOffsets(ctx, t.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("rulesrc: listing the end offsets of config topic %q: %w", t.cfg.Topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, t.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("rulesrc: listing the start offsets of config topic %q: %w", t.cfg.Topic, err)
	}
	parts, ok := ends[t.cfg.Topic]
	if _, missing := parts[-1]; !ok || missing {
		return nil, fmt.Errorf("%w: %q", ErrNoTopic, t.cfg.Topic)
	}
	want := map[int32]int64{} // partition -> end offset not reached yet
	for p, o := range parts {
		if o.Err != nil {
			return nil, fmt.Errorf("rulesrc: end offset of config topic %q partition %d: %w", t.cfg.Topic, p, o.Err)
		}
		if s, ok := starts.Lookup(t.cfg.Topic, p); ok && s.Err == nil && s.Offset >= o.Offset {
			continue // empty
		}
		want[p] = o.Offset
	}
	var out []*kgo.Record
	for len(want) > 0 {
		fetches := t.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("rulesrc: reading config topic %q: %w", t.cfg.Topic, err)
		}
		if fetches.IsClientClosed() {
			return nil, errors.New("rulesrc: the config topic's client is closed")
		}
		fetches.EachError(func(_ string, p int32, err error) {
			t.a.log.Warn("reading the config topic", "topic", t.cfg.Topic, "partition", p, "err", err)
		})
		fetches.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
		out = append(out, records(fetches)...)
	}
	return out, nil
}

// records returns the rule-set records of fetches, oldest first.
func records(fetches kgo.Fetches) []*kgo.Record {
	var out []*kgo.Record
	fetches.EachRecord(func(r *kgo.Record) {
		if !r.Attrs.IsControl() && bytes.Equal(r.Key, []byte(RecordKey)) {
			out = append(out, r)
		}
	})
	return out
}

// newest returns the newest of recs that holds a valid rule set; the invalid ones newer than it
// are rejected (logged and counted).
func (t *Topic) newest(recs []*kgo.Record) *candidate {
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		attrs := []any{"topic", r.Topic, "partition", r.Partition, "offset", r.Offset}
		if r.Value == nil {
			t.a.reject(errors.New("rulesrc: a tombstone (no value); publish a rule set to replace the running one"), attrs...)
			continue
		}
		c, env, err := decodeEnvelope(r.Value)
		if err != nil {
			t.a.reject(err, attrs...)
			continue
		}
		attrs = append(attrs, "published_at", env.PublishedAt, "by", env.By)
		rs, err := c.Parse()
		if err != nil {
			t.a.reject(err, attrs...)
			continue
		}
		return &candidate{rs: rs, sum: c.sum(), attrs: attrs}
	}
	return nil
}

// consider applies the newest valid version of recs if it is not the one running.
func (t *Topic) consider(apply Apply, recs []*kgo.Record) {
	c := t.newest(recs)
	if c == nil {
		return
	}
	if c.sum == t.a.sum {
		t.pending = nil
		t.a.log.Debug("rules unchanged", append(c.attrs, "version", c.rs.Version)...)
		return
	}
	t.pending = nil
	if !t.a.apply(apply, c.rs, c.sum, c.attrs...) {
		t.pending = c
	}
}

// retry applies again the newest valid version, which Apply refused.
func (t *Topic) retry(apply Apply, sig os.Signal) {
	if t.pending == nil {
		t.a.log.Info("rules unchanged: the newest valid version in the config topic runs", "signal", sig, "version", t.a.version)
		return
	}
	t.a.log.Info("reloading rules", "signal", sig)
	if t.a.apply(apply, t.pending.rs, t.pending.sum, t.pending.attrs...) {
		t.pending = nil
	}
}
