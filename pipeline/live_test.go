package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
)

const livePartitions = 4

func newCluster(t *testing.T, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(livePartitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// produceWeb writes n generated records to topic, keyed as a collector would, and returns the
// values in order for the offline comparison.
func produceWeb(t *testing.T, brokers []string, topic string, cfg bench.WebConfig, n int) [][]byte {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	g, err := bench.NewWeb(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var values [][]byte
	var recs []*kgo.Record
	for range n {
		r := g.Next(nil)
		values = append(values, r.Value)
		recs = append(recs, &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return values
}

// consumeAll reads every committed record of topic.
func consumeAll(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	var out []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seen := map[int32]int64{}
	for {
		total := int64(0)
		ends.Each(func(o kadm.ListedOffset) {
			if seen[o.Partition] >= o.Offset {
				total += o.Offset
			}
		})
		if total == want {
			return out
		}
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: timed out with %d records", topic, len(out))
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			seen[r.Partition] = r.Offset + 1
		})
		// Transaction markers take offsets too: count a partition done at its end.
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if p.LastStableOffset > 0 && seen[p.Partition] < p.LastStableOffset && len(p.Records) == 0 {
				seen[p.Partition] = p.LastStableOffset
			}
		})
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// groupCaughtUp reports whether the group has committed the end of every input partition.
func groupCaughtUp(t *testing.T, brokers []string, group, topic string) bool {
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
		c, ok := committed.Lookup(topic, o.Partition)
		if !ok || c.At < o.Offset {
			done = false
		}
	})
	return done
}

var reasonField = regexp.MustCompile(`"reason":"[a-z-]+"`)

// byKey groups system events by key, in order, with the close reason blanked: offline ends
// what is open at end of input with shutdown-flush, live with its natural reason once the wall
// clock moves on.
func byKey(lines []string) map[string][]string {
	out := map[string][]string{}
	for _, l := range lines {
		var e struct{ Profile, Session *string }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			panic(err)
		}
		k := "s:" + *e.Session
		if e.Profile != nil {
			k = "p:" + *e.Profile
		}
		out[k] = append(out[k], reasonField.ReplaceAllString(l, `"reason":"*"`))
	}
	return out
}

// TestLiveMatchesOffline is the end-to-end test: a generated stream through the live processor
// on an in-process Kafka gives, per key and in order, the system events dwell process gives.
func TestLiveMatchesOffline(t *testing.T) {
	topics := DefaultTopics()
	c := newCluster(t, "events", topics.System, topics.Events, topics.Late, topics.Dead, topics.Changelog)
	brokers := c.ListenAddrs()
	web := bench.WebConfig{Profiles: 400, Rate: 20, IdleEvery: 3000, MalformedShare: 0.005, Jitter: time.Second}
	values := produceWeb(t, brokers, "events", web, 8000)

	var offline bytes.Buffer
	_, err := RunOffline(context.Background(), OfflineConfig{Partitions: livePartitions},
		strings.NewReader(string(bytes.Join(values, []byte("\n")))), OfflineOutputs{System: &offline})
	if err != nil {
		t.Fatal(err)
	}
	want := byKey(strings.Split(strings.TrimSpace(offline.String()), "\n"))

	var now atomic.Int64
	now.Store(web.EnsureDefaults().Start.UnixMilli())
	live, err := NewLive(LiveConfig{
		Brokers: brokers, Inputs: []string{"events"}, DataDir: "data", FS: vfs.NewMem(),
		Now: func() time.Time { return time.UnixMilli(now.Load()) }, PollTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- live.Run(ctx) }()
	waitFor(t, "the group to consume every record", 60*time.Second, func() bool { return groupCaughtUp(t, brokers, "dwell", "events") })
	// Traffic has stopped: move the wall clock on so idle advancement ends every visit.
	now.Store(now.Load() + 48*time.Hour.Milliseconds())
	wantCount := 0
	for _, v := range want {
		wantCount += len(v)
	}
	var got []*kgo.Record
	waitFor(t, "every system event", 60*time.Second, func() bool {
		got = consumeAll(t, brokers, topics.System)
		return len(got) >= wantCount
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range got {
		lines = append(lines, string(r.Value))
	}
	gotByKey := byKey(lines)
	if len(gotByKey) != len(want) {
		t.Fatalf("%d keys with system events, offline has %d", len(gotByKey), len(want))
	}
	for k, w := range want {
		if !slices.Equal(gotByKey[k], w) {
			t.Fatalf("key %s: live system events differ from offline:\nlive:    %v\noffline: %v", k, head(gotByKey[k]), head(w))
		}
	}
	t.Logf("%d system events over %d keys match the offline run", len(lines), len(want))
}

func head(s []string) string {
	if len(s) > 3 {
		s = s[:3]
	}
	return fmt.Sprint(s)
}
