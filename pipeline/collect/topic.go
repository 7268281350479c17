package collect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// SourcesRecordKey is the key of the sources records in the config topic (the topic of dwell
// config apply, whose rule sets are under another key); compaction keeps the latest.
const SourcesRecordKey = "sources"

const sourcesFormat = 1

// sourcesEnvelope is a sources record's value: the YAML as written (every collector resolves
// api_key_env in its own environment), and who published it when.
type sourcesEnvelope struct {
	Format      int       `json:"format"`
	Sources     string    `json:"sources"`
	PublishedAt time.Time `json:"published_at"`
	By          string    `json:"by,omitempty"`
}

// ValidateSources parses a sources file as a publisher can: api_key_env names variables of the
// collectors' environment, not the publisher's, so they are not looked up.
func ValidateSources(data []byte) (*Sources, error) {
	return ParseSources(data, func(string) string { return "set where the collector runs" })
}

// PublishSources checks a sources file and writes it to the config topic as the latest
// version (synchronous, acknowledged). A file that does not parse is never published.
func PublishSources(ctx context.Context, cl *kgo.Client, topic string, data []byte, by string) (*Sources, error) {
	ss, err := ValidateSources(data)
	if err != nil {
		return nil, err
	}
	v, err := json.Marshal(sourcesEnvelope{Format: sourcesFormat, Sources: string(data), PublishedAt: time.Now().UTC(), By: by})
	if err != nil {
		return nil, err
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(SourcesRecordKey), Value: v}).FirstErr(); err != nil {
		return nil, fmt.Errorf("collect: publishing sources to %q: %w", topic, err)
	}
	return ss, nil
}

// ErrNoPublishedSources is LoadSourcesTopic's error when the topic holds no valid sources.
var ErrNoPublishedSources = errors.New("no sources published")

// SourcesTopic follows the sources records of the config topic, without a consumer group:
// every collector reads every record, read_committed, from the start.
type SourcesTopic struct {
	cl     *kgo.Client
	topic  string
	log    *slog.Logger
	getenv func(string) string
	sum    [32]byte // of the sources in use
}

// NewSourcesTopic makes the client; nothing is read before Load.
func NewSourcesTopic(brokers []string, opts []kgo.Opt, topic string, logger *slog.Logger, getenv func(string) string) (*SourcesTopic, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted())}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	return &SourcesTopic{cl: cl, topic: topic, log: logger, getenv: getenv}, nil
}

// Close releases the client.
func (t *SourcesTopic) Close() { t.cl.Close() }

// Load reads the topic up to its end and returns the newest valid sources; invalid ones newer
// than it are logged. None: an error wrapping ErrNoPublishedSources.
func (t *SourcesTopic) Load(ctx context.Context) (*Sources, error) {
	ends, err := kadm.NewClient(t.cl).ListEndOffsets(ctx, t.topic)
	if err != nil {
		return nil, fmt.Errorf("collect: config topic %q: %w", t.topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("collect: config topic %q: %w", t.topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	var newest *Sources
	for len(want) > 0 {
		fs := t.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("collect: reading config topic %q: %w", t.topic, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if ss := t.parse(r); ss != nil {
				newest = ss
			}
		})
	}
	if newest == nil {
		return nil, fmt.Errorf("collect: %w in config topic %q; publish them with dwell config apply --sources FILE", ErrNoPublishedSources, t.topic)
	}
	t.sum = newest.sum
	return newest, nil
}

// Follow applies each newer valid version until ctx is done.
func (t *SourcesTopic) Follow(ctx context.Context, apply func(*Sources)) {
	for {
		fs := t.cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return
		}
		var newest *Sources
		fs.EachRecord(func(r *kgo.Record) {
			if ss := t.parse(r); ss != nil {
				newest = ss
			}
		})
		if newest != nil && newest.sum != t.sum {
			t.sum = newest.sum
			apply(newest)
			t.log.Info("sources reloaded from the config topic", "topic", t.topic, "sources", len(newest.ids))
		}
	}
}

// parse reads a sources record; another key is nil, an invalid one is logged and nil.
func (t *SourcesTopic) parse(r *kgo.Record) *Sources {
	if r.Attrs.IsControl() || !bytes.Equal(r.Key, []byte(SourcesRecordKey)) {
		return nil
	}
	at := []any{"topic", r.Topic, "offset", r.Offset}
	var e sourcesEnvelope
	if err := json.Unmarshal(r.Value, &e); err != nil || e.Format != sourcesFormat {
		t.log.Error("config topic: not a sources record of this dwell's format; the sources in use stay", append(at, "err", err, "format", e.Format)...)
		return nil
	}
	ss, err := ParseSources([]byte(e.Sources), t.getenv)
	if err != nil {
		t.log.Error("config topic: sources refused; the sources in use stay", append(at, "by", e.By, "err", err)...)
		return nil
	}
	return ss
}
