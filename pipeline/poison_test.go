package pipeline_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/deadletter"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// newPoisonEnv is newLiveEnv with topic configs (max.message.bytes of the outputs).
func newPoisonEnv(t *testing.T, configs map[string]string) *liveEnv {
	t.Helper()
	d := pipeline.DefaultTopics()
	opts := []pipelinetest.Option{pipelinetest.Compacted(d.Changelog)}
	for topic, limit := range configs {
		opts = append(opts, pipelinetest.TopicConfig(topic, "max.message.bytes", limit))
	}
	k := pipelinetest.New(t, livePartitions, []string{"events", d.System, d.Events, d.Late, d.Dead, d.Changelog}, opts...)
	return &liveEnv{
		brokers: k.Brokers, input: k.Name("events"), group: k.Name("dwell"),
		topics: pipeline.Topics{System: k.Name(d.System), Events: k.Name(d.Events), Late: k.Name(d.Late),
			Dead: k.Name(d.Dead), Changelog: k.Name(d.Changelog)},
		now: new(atomic.Int64), k: k,
	}
}

// produceRecords writes recs to topic in order and returns them with their offsets.
func produceRecords(t *testing.T, brokers []string, topic string, recs []*kgo.Record) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	res := cl.ProduceSync(context.Background(), recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatal(err)
	}
	out := make([]*kgo.Record, len(res))
	for i, r := range res {
		out[i] = r.Record
	}
	return out
}

// eventJSON is a valid event of key at time at, with a property of pad bytes.
func eventJSON(id, key string, at time.Time, pad int) []byte {
	return fmt.Appendf(nil, `{"id":%q,"type":"page-view","time":%q,"profile":{"id":%q},"session":{"id":"s-%s"},"source":{"id":"web"},"properties":{"pad":%q}}`,
		id, at.Format(time.RFC3339Nano), key, key, strings.Repeat("x", pad))
}

func eventIDs(t *testing.T, values [][]byte) []string {
	t.Helper()
	var ids []string
	for _, v := range values {
		var e struct{ ID string }
		if err := json.Unmarshal(v, &e); err != nil {
			t.Fatalf("%v: %.200s", err, v)
		}
		ids = append(ids, e.ID)
	}
	slices.Sort(ids)
	return ids
}

func values(recs []*kgo.Record) [][]byte {
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = r.Value
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// runLive runs a processor on cfg until stop is called, which returns Run's error.
func runLive(t *testing.T, cfg pipeline.LiveConfig) (*pipeline.Live, func()) {
	t.Helper()
	l, err := pipeline.NewLive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once atomic.Bool
	stop := func() {
		if !once.CompareAndSwap(false, true) {
			return
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return l, stop
}

// TestLiveOutputTooLarge is the poison record of issue 12: a valid event, under
// --max-event-bytes, whose enriched copy is larger than the events topic takes. Before, every
// cycle aborted with MESSAGE_TOO_LARGE forever and nothing after it was written. Now the event
// is dead-lettered (output-too-large, its dead letter cut to fit the dead-letter topic), its
// other outputs stand, everything before and after it is processed and committed, and no
// transaction aborts.
func TestLiveOutputTooLarge(t *testing.T) {
	const eventsLimit, deadLimit, pad = 4096, 3000, 6000
	d := pipeline.DefaultTopics()
	e := newPoisonEnv(t, map[string]string{d.Events: strconv.Itoa(eventsLimit), d.Dead: strconv.Itoa(deadLimit)})
	web := bench.WebConfig{Profiles: 50, Rate: 20, MalformedShare: 1e-9}
	g, err := bench.NewWeb(web)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	var poison *kgo.Record
	for i := range 401 {
		if i == 200 {
			at := web.EnsureDefaults().Start.Add(10 * time.Second)
			poison = &kgo.Record{Key: []byte("prof-poison"), Value: eventJSON("evt-poison", "prof-poison", at, pad), Timestamp: at}
			recs = append(recs, poison)
			continue
		}
		r := g.Next(nil)
		recs = append(recs, &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)})
	}
	produceRecords(t, e.brokers, e.input, recs) // sets poison's partition and offset

	// What dwell process writes to the events output: everything, the poison event included.
	var offline bytes.Buffer
	var in [][]byte
	for _, r := range recs {
		in = append(in, r.Value)
	}
	if _, err := pipeline.RunOffline(context.Background(), pipeline.OfflineConfig{Partitions: livePartitions},
		bytes.NewReader(bytes.Join(in, []byte("\n"))), pipeline.OfflineOutputs{Events: &offline}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, id := range eventIDs(t, bytes.Split(bytes.TrimSpace(offline.Bytes()), []byte("\n"))) {
		if id != "evt-poison" {
			want = append(want, id)
		}
	}

	e.now.Store(web.EnsureDefaults().Start.Add(time.Hour).UnixMilli()) // idle advancement releases the reorder buffers
	cfg := e.config("data", vfs.NewMem())
	cfg.MaxPollRecords = 50 // the poison event's cycle has events before and after it
	reg := prometheus.NewRegistry()
	cfg.Metrics = pipeline.NewMetrics(reg)
	live, stop := runLive(t, cfg)
	pipelinetest.WaitFor(t, "the group to consume every record", 60*time.Second, func() bool { return pipelinetest.CaughtUp(t, e.brokers, e.group, e.input) })
	var got []*kgo.Record
	pipelinetest.WaitFor(t, "every event on the events output", 60*time.Second, func() bool {
		e.now.Add(time.Minute.Milliseconds()) // wall-clock silence: idle advancement
		got = pipelinetest.ReadCommitted(t, e.brokers, e.topics.Events)
		return len(got) >= len(want)
	})
	if ids := eventIDs(t, values(got)); !slices.Equal(ids, want) {
		t.Fatalf("events output: %d events, want dwell process's %d less the poison event", len(ids), len(want))
	}
	dead := pipelinetest.ReadCommitted(t, e.brokers, e.topics.Dead)
	stats := live.Stats()
	stop()

	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want the poison event's", len(dead))
	}
	dl := dead[0]
	src, _ := deadletter.Read(dl.Headers)
	if src.Reason != string(operators.ReasonOutputTooLarge) || src.Topic != e.input || src.Partition != poison.Partition ||
		src.Offset != poison.Offset || src.EventID != "evt-poison" {
		t.Errorf("dead letter says %+v; want output-too-large of %s/%d@%d", src, e.input, poison.Partition, poison.Offset)
	}
	if !strings.Contains(src.Detail, e.topics.Events) || !strings.Contains(src.Detail, strconv.Itoa(eventsLimit)) {
		t.Errorf("detail %q does not name the events topic and its limit", src.Detail)
	}
	// The dead letter (the event, over 6,000 bytes) is cut to the dead-letter topic's 3,000.
	if size := deadletter.RecordBatchSize(dl.Key, dl.Value, dl.Headers); size > deadLimit || !bytes.HasPrefix(poison.Value, dl.Value) ||
		header(dl, deadletter.Truncated) != strconv.Itoa(len(poison.Value)) {
		t.Errorf("dead letter of %d bytes (%s: %q): want a prefix of the event, cut to %d, marked with its size %d",
			size, deadletter.Truncated, header(dl, deadletter.Truncated), deadLimit, len(poison.Value))
	}
	if stats.Aborted != 0 || stats.DeadByReason[operators.ReasonOutputTooLarge] != 1 {
		t.Errorf("%d transactions aborted, %d output-too-large dead letters counted; want 0 and 1",
			stats.Aborted, stats.DeadByReason[operators.ReasonOutputTooLarge])
	}
	if n := deadLetterMetric(t, reg, operators.ReasonOutputTooLarge); n != 1 {
		t.Errorf("dwell_dead_letters_total{reason=output-too-large} = %v, want 1", n)
	}
}

func deadLetterMetric(t *testing.T, reg *prometheus.Registry, reason operators.Reason) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dwell_dead_letters_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == string(reason) {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no dwell_dead_letters_total{reason=%q}", reason)
	return 0
}

// TestLiveProduceFailed makes Kafka refuse, forever, the batch that holds one event's enriched
// copy (INVALID_RECORD, which no retry fixes). The cycle aborts, and its retry dead-letters the
// event (produce-failed, the error as detail) instead of writing its outputs; everything else is
// written and committed, and only a few cycles abort. Two ways in:
//
//   - read again: the refused event and the one that releases it from the reorder buffer are in
//     one cycle, so the retry reads the event again and does not process it at all;
//   - in the buffer: an earlier cycle read the event into the reorder buffer and committed, so
//     the retry finds it in the partition's state: it was processed (its system events stand),
//     and only its outputs to the topic that refused them are withheld.
func TestLiveProduceFailed(t *testing.T) {
	for _, path := range []string{"read-again", "in-buffer"} {
		t.Run(path, func(t *testing.T) {
			e := newPoisonEnv(t, nil)
			fake := e.k.Fake()
			if fake == nil {
				t.Skip("needs kfake to refuse records")
			}
			// The refused event has the events output's partition pX to itself: a broker refuses a
			// whole batch, and this test wants no other event in it. Its partition-mate, the
			// pusher, comes far later in event time and so is written in a later cycle.
			pX := pipeline.KafkaPartition([]byte("prof-refused"), livePartitions)
			keys := func(n int, in bool) []string {
				var out []string
				for i := 0; len(out) < n; i++ {
					k := "prof-" + strconv.Itoa(i)
					if (pipeline.KafkaPartition([]byte(k), livePartitions) == pX) == in {
						out = append(out, k)
					}
				}
				return out
			}
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			rec := func(id, key string, at time.Duration) *kgo.Record {
				return &kgo.Record{Key: []byte(key), Value: eventJSON(id, key, start.Add(at), 10), Timestamp: start.Add(at)}
			}
			var before, after []*kgo.Record
			for i, k := range keys(12, false) {
				before = append(before, rec("evt-b"+strconv.Itoa(i), k, time.Duration(i)*10*time.Second))
				after = append(after, rec("evt-a"+strconv.Itoa(i), k, 200*time.Second+time.Duration(i)*10*time.Second))
			}
			refused := rec("evt-refused", "prof-refused", 150*time.Second)
			pusher := rec("evt-pusher", keys(1, true)[0], 400*time.Second)

			// The events output's topic id (produce v13 names topics by id).
			cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			details, err := adm.ListTopics(context.Background(), e.topics.Events)
			if err != nil {
				t.Fatal(err)
			}
			eventsID := details[e.topics.Events].ID
			var hits atomic.Int64
			fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: e.topics.Events, Partitions: []int32{pX},
				Err: kerr.InvalidRecord, Count: -1, When: func(req kmsg.Request) bool {
					for _, rt := range req.(*kmsg.ProduceRequest).Topics {
						if rt.Topic != e.topics.Events && rt.TopicID != eventsID {
							continue
						}
						for _, rp := range rt.Partitions {
							if rp.Partition == pX && bytes.Contains(rp.Records, []byte("evt-refused")) {
								hits.Add(1)
								return true
							}
						}
					}
					return false
				}})

			cfg := e.config("data", vfs.NewMem())
			cfg.Compression = "none" // so that the fault sees the event's id in the batch
			// The wall clock past every event (the guard dead-letters events ahead of it); it
			// moves on only when the test moves it.
			e.now.Store(start.Add(10 * time.Minute).UnixMilli())
			recs := append(append(append([]*kgo.Record(nil), before...), refused), after...)
			if path == "read-again" {
				recs = append(recs, pusher)
			}
			for _, r := range produceRecords(t, e.brokers, e.input, recs) {
				if bytes.Equal(r.Value, refused.Value) {
					refused = r
				}
			}
			live, stop := runLive(t, cfg)
			pipelinetest.WaitFor(t, "the group to consume every record", 60*time.Second, func() bool { return pipelinetest.CaughtUp(t, e.brokers, e.group, e.input) })
			if path == "in-buffer" {
				produceRecords(t, e.brokers, e.input, []*kgo.Record{pusher})
				pipelinetest.WaitFor(t, "the group to consume the pusher", 60*time.Second, func() bool { return pipelinetest.CaughtUp(t, e.brokers, e.group, e.input) })
			}
			e.now.Store(start.Add(time.Hour).UnixMilli()) // idle advancement releases every buffer
			var want []string
			for _, r := range append(append(append([]*kgo.Record(nil), before...), after...), pusher) {
				want = append(want, string(r.Value[len(`{"id":"`):][:bytes.IndexByte(r.Value[len(`{"id":"`):], '"')]))
			}
			slices.Sort(want)
			var got []*kgo.Record
			pipelinetest.WaitFor(t, "every other event on the events output", 60*time.Second, func() bool {
				e.now.Add(time.Minute.Milliseconds())
				got = pipelinetest.ReadCommitted(t, e.brokers, e.topics.Events)
				return len(got) >= len(want)
			})
			if ids := eventIDs(t, values(got)); !slices.Equal(ids, want) {
				t.Fatalf("events output %v, want %v", ids, want)
			}
			dead := pipelinetest.ReadCommitted(t, e.brokers, e.topics.Dead)
			system := pipelinetest.ReadCommitted(t, e.brokers, e.topics.System)
			stats := live.Stats()
			stop()

			if len(dead) != 1 {
				t.Fatalf("%d dead letters, want the refused event's", len(dead))
			}
			src, _ := deadletter.Read(dead[0].Headers)
			if src.Reason != string(operators.ReasonProduceFailed) || src.Topic != e.input || src.Offset != refused.Offset ||
				!bytes.Equal(dead[0].Value, refused.Value) {
				t.Errorf("dead letter %+v, want produce-failed of %s@%d with the event's bytes", src, e.input, refused.Offset)
			}
			if !strings.Contains(src.Detail, "INVALID_RECORD") || !strings.Contains(src.Detail, e.topics.Events) {
				t.Errorf("detail %q does not give the topic and the error", src.Detail)
			}
			if hits.Load() == 0 || stats.Aborted < 1 || stats.Aborted > 3 {
				t.Errorf("%d produce requests refused, %d transactions aborted: want the refusal to cost one or two cycles", hits.Load(), stats.Aborted)
			}
			if stats.DeadByReason[operators.ReasonProduceFailed] != 1 {
				t.Errorf("%d produce-failed dead letters counted, want 1", stats.DeadByReason[operators.ReasonProduceFailed])
			}
			// Read again, the event was not processed: no system event of its profile. In the
			// buffer, it had been: they stand.
			created := false
			for _, r := range system {
				created = created || bytes.Contains(r.Value, []byte(`"profile":"prof-refused"`))
			}
			if created != (path == "in-buffer") {
				t.Errorf("system events of the refused event's profile: %v, want %v", created, path == "in-buffer")
			}
			t.Logf("%s: %d produce requests refused, %d transactions aborted", path, hits.Load(), stats.Aborted)
		})
	}
}

// TestLiveLimitsUnreadable denies the processor the topics' configs (as ACLs without
// DescribeConfigs would): it assumes Kafka's default max.message.bytes, so an output over the
// events topic's real, smaller limit gets past its check and the broker refuses it. That is a
// record Kafka refuses, so it is dead-lettered as produce-failed after one aborted cycle, and
// the partition goes on. The event before it shared its batch (same key, same cycle): of a
// batch refused as too large only the largest record is blamed, so that one is written.
func TestLiveLimitsUnreadable(t *testing.T) {
	d := pipeline.DefaultTopics()
	e := newPoisonEnv(t, map[string]string{d.Events: "4096"})
	fake := e.k.Fake()
	if fake == nil {
		t.Skip("needs kfake to deny DescribeConfigs")
	}
	denied := fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.DescribeConfigs}, Err: kerr.TopicAuthorizationFailed, Count: -1})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := []*kgo.Record{
		{Key: []byte("prof-1"), Value: eventJSON("evt-1", "prof-1", start, 10), Timestamp: start},
		{Key: []byte("prof-1"), Value: eventJSON("evt-big", "prof-1", start.Add(time.Second), 6000), Timestamp: start.Add(time.Second)},
		{Key: []byte("prof-1"), Value: eventJSON("evt-2", "prof-1", start.Add(time.Minute), 10), Timestamp: start.Add(time.Minute)},
	}
	produceRecords(t, e.brokers, e.input, recs)
	e.now.Store(start.UnixMilli())
	cfg := e.config("data", vfs.NewMem())
	cfg.Compression = "none" // compressed, the padding would fit
	live, stop := runLive(t, cfg)
	if denied.Hits() == 0 {
		t.Fatal("the processor did not ask for the topics' configs")
	}
	var got []*kgo.Record
	pipelinetest.WaitFor(t, "the events around the refused one", 60*time.Second, func() bool {
		e.now.Add(time.Minute.Milliseconds())
		got = pipelinetest.ReadCommitted(t, e.brokers, e.topics.Events)
		return len(got) >= 2
	})
	if ids := eventIDs(t, values(got)); !slices.Equal(ids, []string{"evt-1", "evt-2"}) {
		t.Fatalf("events output %v", ids)
	}
	dead := pipelinetest.ReadCommitted(t, e.brokers, e.topics.Dead)
	stats := live.Stats()
	stop()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	if src, _ := deadletter.Read(dead[0].Headers); src.Reason != string(operators.ReasonProduceFailed) ||
		!strings.Contains(src.Detail, "MESSAGE_TOO_LARGE") || stats.Aborted < 1 || stats.Aborted > 2 {
		t.Errorf("dead letter %+v after %d aborted transactions; want produce-failed, MESSAGE_TOO_LARGE, after one", src, stats.Aborted)
	}
}

// bigEventJSON is a valid event of exactly size bytes, its properties random base64 (which
// compression does not shrink much).
func bigEventJSON(id, key string, at time.Time, size int) []byte {
	head := fmt.Sprintf(`{"id":%q,"type":"page-view","time":%q,"profile":{"id":%q},"session":{"id":"s-%s"},"source":{"id":"web"},"properties":{"blob":"`,
		id, at.Format(time.RFC3339Nano), key, key)
	raw := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, uint64(size)))
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	return []byte(head + base64.StdEncoding.EncodeToString(raw)[:size-len(head)-3] + `"}}`)
}

// TestLiveUserPoisonSizes has the sizes of issue 12 on topics with Kafka's defaults: an event
// of 1,040,186 bytes, which a user measured stalling its partition for good (its enriched copy
// was over franz-go's default batch limit of 1,000,012 bytes), is written now that the producer
// follows max.message.bytes (1,048,588); one of 1,048,560 bytes, still under
// --max-event-bytes, makes an enriched copy over the topic's limit: it is dead-lettered,
// cut to fit. No transaction aborts.
func TestLiveUserPoisonSizes(t *testing.T) {
	e := newPoisonEnv(t, nil)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	limit := strconv.Itoa(2 << 20) // the input takes large events; the outputs have the default
	if _, err := kadm.NewClient(cl).AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, e.input); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fits := bigEventJSON("evt-fits", "prof-1", start.Add(time.Second), 1_040_186)
	over := bigEventJSON("evt-over", "prof-1", start.Add(2*time.Second), 1_048_560)
	recs := []*kgo.Record{
		{Key: []byte("prof-1"), Value: eventJSON("evt-1", "prof-1", start, 10), Timestamp: start},
		{Key: []byte("prof-1"), Value: fits, Timestamp: start.Add(time.Second)},
		{Key: []byte("prof-1"), Value: over, Timestamp: start.Add(2 * time.Second)},
		{Key: []byte("prof-1"), Value: eventJSON("evt-2", "prof-1", start.Add(time.Minute), 10), Timestamp: start.Add(time.Minute)},
	}
	big, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(e.input), kgo.ProducerBatchMaxBytes(2<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	if err := big.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e.now.Store(start.UnixMilli())
	live, stop := runLive(t, e.config("data", vfs.NewMem()))
	var got []*kgo.Record
	pipelinetest.WaitFor(t, "the events but the one too large", 60*time.Second, func() bool {
		e.now.Add(time.Minute.Milliseconds())
		got = pipelinetest.ReadCommitted(t, e.brokers, e.topics.Events)
		return len(got) >= 3
	})
	if ids := eventIDs(t, values(got)); !slices.Equal(ids, []string{"evt-1", "evt-2", "evt-fits"}) {
		t.Fatalf("events output %v", ids)
	}
	dead := pipelinetest.ReadCommitted(t, e.brokers, e.topics.Dead)
	stats := live.Stats()
	stop()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	src, _ := deadletter.Read(dead[0].Headers)
	if src.Reason != string(operators.ReasonOutputTooLarge) || src.EventID != "evt-over" ||
		header(dead[0], deadletter.Truncated) != strconv.Itoa(len(over)) || !bytes.HasPrefix(over, dead[0].Value) {
		t.Errorf("dead letter %+v (%s %q): want evt-over's, output-too-large, cut and marked", src, deadletter.Truncated, header(dead[0], deadletter.Truncated))
	}
	if stats.Aborted != 0 {
		t.Errorf("%d transactions aborted, want none", stats.Aborted)
	}
}
