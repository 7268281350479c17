// Package pipelinetest gives tests a Kafka to run against: an in-process kfake cluster by
// default, or the real Apache Kafka named by DWELL_TEST_BROKERS (a comma-separated bootstrap
// list; `make test-kafka` starts one with deploy/kafka and sets it). The same test then runs on
// both.
//
// On a real broker many tests share one cluster, so every topic and group a test names is given
// a unique prefix (Env.Name) and the topics are deleted when the test ends.
package pipelinetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BrokersEnv is the variable that selects a real broker.
const BrokersEnv = "DWELL_TEST_BROKERS"

// RealBrokers returns the bootstrap list in DWELL_TEST_BROKERS, or nil.
func RealBrokers() []string {
	v := strings.TrimSpace(os.Getenv(BrokersEnv))
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// Env is one test's Kafka.
type Env struct {
	Brokers []string
	// Real is true on an Apache Kafka broker, false on kfake.
	Real   bool
	prefix string
	kfake  *kfake.Cluster
}

// Option changes how New creates topics.
type Option func(*options)

type options struct {
	compacted map[string]bool
	configs   map[string]map[string]string
	rf        int16
}

// TopicConfig sets a topic config (max.message.bytes, say) of the named topic, on kfake as on
// a real broker.
func TopicConfig(name, key, value string) Option {
	return func(o *options) {
		if o.configs[name] == nil {
			o.configs[name] = map[string]string{}
		}
		o.configs[name][key] = value
	}
}

// Compacted makes the named topics log-compacted on a real broker (as --create-topics makes
// the changelog).
func Compacted(names ...string) Option {
	return func(o *options) {
		for _, n := range names {
			o.compacted[n] = true
		}
	}
}

// New returns a Kafka with topics names, partitions each. It fails the test if the broker
// cannot be reached or the topics cannot be created; everything is torn down at the end.
func New(t testing.TB, partitions int, names []string, opts ...Option) *Env {
	t.Helper()
	o := options{compacted: map[string]bool{}, configs: map[string]map[string]string{}, rf: 1}
	for _, opt := range opts {
		opt(&o)
	}
	if brokers := RealBrokers(); brokers != nil {
		var b [4]byte
		_, _ = rand.Read(b[:])
		e := &Env{Brokers: brokers, Real: true, prefix: "t" + hex.EncodeToString(b[:]) + "-"}
		if rf, err := strconv.Atoi(os.Getenv("DWELL_TEST_REPLICATION")); err == nil && rf > 0 {
			o.rf = int16(rf)
		}
		e.createTopics(t, partitions, names, o)
		return e
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), names...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e := &Env{Brokers: c.ListenAddrs(), kfake: c}
	for name, cfg := range o.configs {
		var alter []kadm.AlterConfig
		for k, v := range cfg {
			alter = append(alter, kadm.AlterConfig{Name: k, Value: &v})
		}
		resp, err := e.admin(t).AlterTopicConfigs(context.Background(), alter, name)
		if err == nil {
			var r kadm.AlterConfigsResponse
			if r, err = resp.On(name, nil); err == nil {
				err = r.Err
			}
		}
		if err != nil {
			t.Fatalf("pipelinetest: configuring topic %s: %v", name, err)
		}
	}
	return e
}

func (e *Env) createTopics(t testing.TB, partitions int, names []string, o options) {
	t.Helper()
	adm := e.admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var real []string
	for _, n := range names {
		cfg := map[string]*string{}
		if o.compacted[n] {
			compact := "compact"
			cfg["cleanup.policy"] = &compact
		}
		for k, v := range o.configs[n] {
			cfg[k] = &v
		}
		real = append(real, e.Name(n))
		resp, err := adm.CreateTopic(ctx, int32(partitions), o.rf, cfg, e.Name(n))
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("pipelinetest: creating topic %s on %v: %v", e.Name(n), e.Brokers, err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		adm := e.admin(t)
		_, _ = adm.DeleteTopics(ctx, real...)
		_, _ = adm.DeleteGroups(ctx, e.Name("dwell"))
	})
	// Metadata reaches every broker asynchronously: wait until each partition has a leader.
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := adm.Metadata(ctx, real...)
		ok := err == nil
		if ok {
			for _, name := range real {
				td, found := md.Topics[name]
				if !found || td.Err != nil || len(td.Partitions) != partitions {
					ok = false
					break
				}
				for _, p := range td.Partitions {
					if p.Leader < 0 || p.Err != nil {
						ok = false
					}
				}
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipelinetest: topics %v have no leaders after 30s (%v)", real, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// admin returns an admin client closed at the end of the test.
func (e *Env) admin(t testing.TB) *kadm.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// Name is the real name of the topic or group a test calls base: unchanged on kfake, prefixed
// uniquely on a shared real broker.
func (e *Env) Name(base string) string { return e.prefix + base }

// Names maps Name over bases.
func (e *Env) Names(bases ...string) []string {
	out := make([]string, len(bases))
	for i, b := range bases {
		out[i] = e.Name(b)
	}
	return out
}

// Fake is the kfake cluster, or nil on a real broker.
func (e *Env) Fake() *kfake.Cluster { return e.kfake }

// ReadCommitted returns every record of topic up to its last stable offsets at the time of the
// call, read_committed: what a downstream consumer sees once the transactions in flight are
// decided. Control records are kept by the client (and dropped here) so that every offset up to
// the end is seen.
func ReadCommitted(t testing.TB, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("pipelinetest: stable offsets of %s: %v", topic, err)
	}
	next := map[int32]int64{}
	var out []*kgo.Record
	for {
		done := true
		ends.Each(func(o kadm.ListedOffset) {
			if next[o.Partition] < o.Offset {
				done = false
			}
		})
		if done {
			return out
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("pipelinetest: reading %s: timed out after %d records", topic, len(out))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			next[r.Partition] = r.Offset + 1
		})
	}
}

// WaitFor polls cond until it holds, failing the test (naming what it waited for) once timeout
// has passed. Tests wait on conditions rather than sleep, so that they hold on a busy machine:
// give timeout room for one. Polls start 5ms apart and back off to 50ms, so an expensive cond
// (one that asks the broker) is not called in a tight loop.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for pause := 5 * time.Millisecond; !cond(); pause = min(2*pause, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(pause)
	}
}

// CaughtUp reports whether group has committed the end of every partition of topic that has
// records: whether a processor has consumed everything produced to it so far.
func CaughtUp(t testing.TB, brokers []string, group, topic string) bool {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return false
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false
	}
	done := true
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := committed.Lookup(topic, o.Partition); o.Offset > 0 && (!ok || c.At < o.Offset) {
			done = false
		}
	})
	return done
}
