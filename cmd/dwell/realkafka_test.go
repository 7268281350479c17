package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// Helpers shared by the Kafka acceptance tests (kcat) and the fault suite: a generated stream
// closed by one sentinel event per partition, its expected system events from dwell process,
// and a comparison that counts what is missing or repeated instead of stopping at the first
// difference.

// stream is a generated input and what dwell process makes of it.
type stream struct {
	recs      []*kgo.Record // keyed as a collector would; the sentinels last
	big       []*kgo.Record // the large events among recs (newStream's big)
	sentinels map[string]bool
	want      map[string][]string // system events by key, in order (sentinel keys left out)
	wantCount int
}

// newStream generates n records and appends, for each of partitions, an event 20 hours after
// the stream's end for a key of that partition: it moves every partition's watermark past
// every timer (the latest is a 12h cap), so the live run ends each visit and session for its
// own reason, as dwell process does when it reads the same sentinels. It stays within
// --max-time-jump (24h): further ahead, dwell process would dead-letter the sentinels. The sentinels' own keys are not compared (dwell
// process flushes them at end of input; the live run leaves them open).
//
// For each size in big, a valid event of that many bytes (incompressible properties) is put
// among the generated ones, evenly spaced, at the event time of the record before it: event
// evt-big-i of profile prof-big-i.
func newStream(t testing.TB, web bench.WebConfig, n, partitions int, big ...int) *stream {
	t.Helper()
	return newStreamWith(t, web, n, partitions, nil, big...)
}

// newStreamWith is newStream with inject (if set) changing the records before the sentinels are
// added and the offline run computes what to expect.
func newStreamWith(t testing.TB, web bench.WebConfig, n, partitions int, inject func([]*kgo.Record) []*kgo.Record, big ...int) *stream {
	t.Helper()
	g, err := bench.NewWeb(web)
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{sentinels: map[string]bool{}}
	var last int64
	for len(s.recs)-len(s.big) < n {
		r := g.Next(nil)
		if bytes.ContainsAny(r.Value, "\t\n") || bytes.ContainsAny(r.Key, "\t\n") {
			continue // kept out so the stream can be written as kcat's key<TAB>value lines
		}
		last = max(last, r.Timestamp)
		s.recs = append(s.recs, &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)})
		if i := len(s.big); i < len(big) && len(s.recs)-i == (i+1)*n/(len(big)+1) {
			b := bigEvent(i, time.UnixMilli(r.Timestamp), big[i])
			s.recs = append(s.recs, b)
			s.big = append(s.big, b)
		}
	}
	if inject != nil {
		s.recs = inject(s.recs)
	}
	at := time.UnixMilli(last).Add(20 * time.Hour).UTC()
	for p, i := 0, 0; p < partitions; i++ {
		key := fmt.Sprintf("prof-sentinel-%d", i)
		if int(pipeline.KafkaPartition([]byte(key), int32(partitions))) != p {
			continue
		}
		v := fmt.Sprintf(`{"id":"evt-sentinel-%d","type":"page-view","time":%q,"profile":{"id":%q},"session":{"id":"sess-sentinel-%d"},"source":{"id":"web"}}`,
			p, at.Format(time.RFC3339Nano), key, p)
		s.recs = append(s.recs, &kgo.Record{Key: []byte(key), Value: []byte(v), Timestamp: at})
		s.sentinels["p:"+key] = true
		p++
	}
	var out bytes.Buffer
	if _, err := pipeline.RunOffline(context.Background(), pipeline.OfflineConfig{Partitions: partitions},
		bytes.NewReader(s.values()), pipeline.OfflineOutputs{System: &out}); err != nil {
		t.Fatal(err)
	}
	s.want = map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		k := eventKey(t, []byte(l))
		if !s.sentinels[k] {
			s.want[k] = append(s.want[k], l)
			s.wantCount++
		}
	}
	return s
}

// values is the input as JSON Lines.
// bigEvent is valid event evt-big-i at at, size bytes long, its properties random base64.
func bigEvent(i int, at time.Time, size int) *kgo.Record {
	key := fmt.Sprintf("prof-big-%d", i)
	head := fmt.Sprintf(`{"id":"evt-big-%d","type":"page-view","time":%q,"profile":{"id":%q},"session":{"id":"sess-big-%d"},"source":{"id":"web"},"properties":{"blob":"`,
		i, at.UTC().Format(time.RFC3339Nano), key, i)
	const tail = `"}}`
	rng := rand.New(rand.NewPCG(uint64(i), uint64(size)))
	raw := make([]byte, size)
	for j := range raw {
		raw[j] = byte(rng.Uint32())
	}
	blob := base64.StdEncoding.EncodeToString(raw)[:size-len(head)-len(tail)]
	return &kgo.Record{Key: []byte(key), Value: []byte(head + blob + tail), Timestamp: at}
}

func (s *stream) values() []byte {
	var b bytes.Buffer
	for _, r := range s.recs {
		b.Write(r.Value)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// eventKey is the key a system event belongs to: its profile, else its session.
func eventKey(t testing.TB, v []byte) string {
	var e struct{ Profile, Session *string }
	if err := json.Unmarshal(v, &e); err != nil || (e.Profile == nil && e.Session == nil) {
		t.Fatalf("system event without a key: %v: %s", err, v)
	}
	if e.Profile != nil {
		return "p:" + *e.Profile
	}
	return "s:" + *e.Session
}

// verdict compares system events read from Kafka with the stream's expected ones.
type verdict struct {
	got        int // records read, sentinel keys left out
	missing    int // expected events not read
	duplicated int // records whose id was read before
	extra      int // events read that were not expected
	problems   []string
}

func (s *stream) check(t testing.TB, values [][]byte, allowIdenticalRepeats bool) verdict {
	var v verdict
	seen := map[string][]byte{}
	gotByKey := map[string][]string{}
	for _, val := range values {
		k := eventKey(t, val)
		if s.sentinels[k] {
			continue
		}
		v.got++
		var id struct{ ID string }
		_ = json.Unmarshal(val, &id)
		if prev, ok := seen[id.ID]; ok {
			v.duplicated++
			if !allowIdenticalRepeats {
				v.problem("duplicate id %s", id.ID)
			} else if !bytes.Equal(prev, val) {
				v.problem("id %s repeated with different content:\n%s\n%s", id.ID, prev, val)
			}
			continue
		}
		seen[id.ID] = val
		gotByKey[k] = append(gotByKey[k], string(val))
	}
	for k, want := range s.want {
		got := gotByKey[k]
		if slices.Equal(got, want) {
			continue
		}
		wantSet := map[string]int{}
		for _, w := range want {
			wantSet[w]++
		}
		for _, g := range got {
			if wantSet[g] > 0 {
				wantSet[g]--
			} else {
				v.extra++
			}
		}
		miss := 0
		for _, c := range wantSet {
			miss += c
		}
		v.missing += miss
		if miss == 0 && len(got) == len(want) {
			v.problem("key %s: events out of order:\ngot  %s\nwant %s", k, trunc(got), trunc(want))
		} else {
			v.problem("key %s: %d missing\ngot  %s\nwant %s", k, miss, trunc(got), trunc(want))
		}
	}
	for k, got := range gotByKey {
		if _, ok := s.want[k]; !ok {
			v.extra += len(got)
			v.problem("key %s: %d unexpected events: %s", k, len(got), trunc(got))
		}
	}
	return v
}

func (v *verdict) problem(format string, args ...any) {
	if len(v.problems) < 5 {
		v.problems = append(v.problems, fmt.Sprintf(format, args...))
	}
}

func trunc(s []string) string {
	if len(s) > 3 {
		return fmt.Sprint(s[:3]) + fmt.Sprintf(" ... (%d)", len(s))
	}
	return fmt.Sprint(s)
}

// produceAll writes recs to topic (partitioned by key with murmur2, as a Java producer would)
// and waits for every acknowledgement; opts are added to the client.
func produceAll(t testing.TB, brokers []string, topic string, recs []*kgo.Record, opts ...kgo.Opt) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(5 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := 0; i < len(recs); i += 10_000 {
		if err := cl.ProduceSync(context.Background(), recs[i:min(i+10_000, len(recs))]...).FirstErr(); err != nil {
			t.Fatalf("producing to %s: %v", topic, err)
		}
	}
}

// readCommitted returns the values of every committed record of topic.
func readCommitted(t testing.TB, brokers []string, topic string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, r := range pipelinetest.ReadCommitted(t, brokers, topic) {
		out = append(out, r.Value)
	}
	return out
}

// progress is the share of topic's records the group has committed.
func progress(ctx context.Context, adm *kadm.Client, group, topic string) (float64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, err
	}
	var total, done int64
	ends.Each(func(o kadm.ListedOffset) {
		total += o.Offset
		if c, ok := committed.Lookup(topic, o.Partition); ok {
			done += min(c.At, o.Offset)
		}
	})
	if total == 0 {
		return 1, nil
	}
	return float64(done) / float64(total), nil
}

// createTopics creates the input and every output topic with partitions and replication rf.
func createTopics(t testing.TB, brokers []string, partitions int, rf int16, input string, topics pipeline.Topics) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	compact := "compact"
	names := []string{input, topics.System, topics.Events, topics.Late, topics.Dead, topics.Changelog}
	if topics.Savepoints != "" {
		names = append(names, topics.Savepoints, topics.SavepointData)
	}
	for _, name := range names {
		cfg := map[string]*string{}
		if name == topics.Changelog {
			cfg["cleanup.policy"] = &compact
		}
		resp, err := adm.CreateTopic(ctx, int32(partitions), rf, cfg, name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("creating %s: %v", name, err)
		}
	}
}
