package rulesrc

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

func client(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func publish(t *testing.T, cl *kgo.Client, topic, rules string) {
	t.Helper()
	if _, err := Publish(context.Background(), cl, topic, Content{Rules: []byte(rules), RulesName: "rules.yaml"}, "test"); err != nil {
		t.Fatal(err)
	}
}

func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestTopicPublishWatch: dwell config apply's Publish refuses a bad rule set; an instance
// follows the topic, applies each new version, and skips bad records, keeping the version it
// runs.
func TestTopicPublishWatch(t *testing.T) {
	k := pipelinetest.New(t, 1, []string{"dwell.config"}, pipelinetest.Compacted("dwell.config"))
	topic := k.Name("dwell.config")
	cl := client(t, k.Brokers)
	publish(t, cl, topic, rulesYAML("v1"))

	_, err := Publish(context.Background(), cl, topic, Content{Rules: []byte(badRulesYAML), RulesName: "rules.yaml"}, "test")
	var le *rules.LoadError
	if err == nil || !strings.Contains(err.Error(), `rules.yaml: rules: line 5, column 17: rule "typo"`) || !errors.As(err, &le) || le.Line != 5 {
		t.Fatalf("Publish of a bad rule set: %v", err)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup(topic, 0); o.Offset != 1 {
		t.Fatalf("end offset %d after a refused publication, want 1", o.Offset)
	}

	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var log syncBuffer
	src, err := NewTopic(TopicConfig{Brokers: k.Brokers, Topic: topic, Interval: 50 * time.Millisecond, Metrics: m,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close() })
	rs, err := src.Load(context.Background())
	if err != nil || rs == nil || rs.Version != "v1" {
		t.Fatalf("Load: %v, %+v", err, rs)
	}
	if v := runningVersion(t, reg); v != "v1" {
		t.Fatalf("version metric %q, want v1", v)
	}
	var rec recorder
	watch(t, src, rec.apply)

	publish(t, cl, topic, rulesYAML("v2"))
	pipelinetest.WaitFor(t, "v2 applied", 10*time.Second, func() bool { return slices.Equal(rec.versions(), []string{"v2"}) })
	if v := runningVersion(t, reg); v != "v2" {
		t.Fatalf("version metric %q, want v2", v)
	}

	badYAML, err := encodeEnvelope(Content{Rules: []byte(badRulesYAML)}, "bad", "someone", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key := []byte(RecordKey)
	produce(t, cl,
		&kgo.Record{Topic: topic, Key: key, Value: []byte("not json")},
		&kgo.Record{Topic: topic, Key: key, Value: []byte(`{"format":2,"rules":"version: v9"}`)},
		&kgo.Record{Topic: topic, Key: key, Value: badYAML},
		&kgo.Record{Topic: topic, Key: key}, // a tombstone
		&kgo.Record{Topic: topic, Key: []byte("something-else"), Value: []byte("ignored")},
	)
	pipelinetest.WaitFor(t, "4 bad records rejected", 10*time.Second, func() bool { return reloads(m, "topic", "rejected") == 4 })
	logContains(t, &log, "rules rejected", "line=5", "column=17", "rule=typo", "by=someone", "running=v2")
	logContains(t, &log, "rules rejected", "format 2")
	if v := runningVersion(t, reg); v != "v2" {
		t.Fatalf("version metric %q after bad records, want v2", v)
	}

	publish(t, cl, topic, rulesYAML("v2")) // the same content again: nothing to apply
	publish(t, cl, topic, rulesYAML("v3"))
	pipelinetest.WaitFor(t, "v3 applied", 10*time.Second, func() bool { return slices.Equal(rec.versions(), []string{"v2", "v3"}) })
	if a, r := reloads(m, "topic", "applied"), reloads(m, "topic", "rejected"); a != 2 || r != 4 {
		t.Fatalf("reloads applied=%v rejected=%v, want 2 and 4", a, r)
	}
}

// TestTopicNewestValid: an instance starting after a bad publication runs the newest valid
// version; WatchTopic without Load applies it once.
func TestTopicNewestValid(t *testing.T) {
	k := pipelinetest.New(t, 1, []string{"dwell.config"}, pipelinetest.Compacted("dwell.config"))
	topic := k.Name("dwell.config")
	cl := client(t, k.Brokers)
	publish(t, cl, topic, rulesYAML("v1"))
	publish(t, cl, topic, rulesYAML("v2"))
	produce(t, cl, &kgo.Record{Topic: topic, Key: []byte(RecordKey), Value: []byte(`{"format":1}`)})

	m := NewMetrics(prometheus.NewRegistry())
	src, err := NewTopic(TopicConfig{Brokers: k.Brokers, Topic: topic, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rs, err := src.Load(context.Background())
	if err != nil || rs == nil || rs.Version != "v2" {
		t.Fatalf("Load: %v, %+v; want v2", err, rs)
	}
	if n := reloads(m, "topic", "rejected"); n != 1 {
		t.Fatalf("rejected %v, want the empty record once", n)
	}

	var rec recorder
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- WatchTopic(ctx, TopicConfig{Brokers: k.Brokers, Topic: topic, Interval: 20 * time.Millisecond}, rec.apply)
	}()
	pipelinetest.WaitFor(t, "v2 applied", 10*time.Second, func() bool { return len(rec.versions()) > 0 })
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := rec.versions(); !slices.Equal(got, []string{"v2"}) {
		t.Fatalf("applied %v, want [v2]", got)
	}
}

// TestTopicMissing: a missing config topic is an error that says so, until EnsureTopic creates
// it; an empty topic means no rules.
func TestTopicMissing(t *testing.T) {
	k := pipelinetest.New(t, 1, []string{"events"})
	topic := k.Name("dwell.config-missing")
	cl := client(t, k.Brokers)
	t.Cleanup(func() {
		if k.Real {
			_, _ = kadm.NewClient(cl).DeleteTopics(context.Background(), topic)
		}
	})
	src, err := NewTopic(TopicConfig{Brokers: k.Brokers, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := src.Load(ctx); !errors.Is(err, ErrNoTopic) {
		t.Fatalf("Load of a missing topic: %v", err)
	}
	if err := EnsureTopic(ctx, cl, topic, false); !errors.Is(err, ErrNoTopic) || !strings.Contains(err.Error(), topic) {
		t.Fatalf("EnsureTopic without create: %v", err)
	}
	if err := EnsureTopic(ctx, cl, topic, true); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopic(ctx, cl, topic, false); err != nil {
		t.Fatalf("EnsureTopic after creating it: %v", err)
	}
	details, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details[topic].Partitions); n != 1 {
		t.Fatalf("config topic has %d partitions, want 1", n)
	}
	src2, err := NewTopic(TopicConfig{Brokers: k.Brokers, Topic: topic}) // src's metadata cache says "unknown topic" for 5s
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	if rs, err := src2.Load(ctx); rs != nil || err != nil {
		t.Fatalf("Load of an empty topic: %+v, %v; want nothing", rs, err)
	}
}

// FuzzDecodeEnvelope: any record value decodes or fails without panicking, and a decoded
// rule set that parses survives a round trip.
func FuzzDecodeEnvelope(f *testing.F) {
	good, _ := encodeEnvelope(Content{Rules: []byte(rulesYAML("v1")), Registry: []byte("version: r1\n")}, "v1/r1", "me", time.Unix(0, 0))
	f.Add(good)
	f.Add([]byte(`{"format":1,"rules":"rules: []"}`))
	f.Add([]byte(`{"format":2}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, env, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		rs, err := c.Parse()
		if err != nil {
			return
		}
		again, err := encodeEnvelope(c, rs.Version, env.By, env.PublishedAt)
		if err != nil {
			t.Fatal(err)
		}
		c2, _, err := decodeEnvelope(again)
		if err != nil || c2.sum() != c.sum() {
			t.Fatalf("round trip: %v", err)
		}
	})
}
