package pipeline_test

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
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

const livePartitions = 4

// liveEnv is one live test's Kafka (kfake, or the real broker in DWELL_TEST_BROKERS) with the
// input and every output topic, its names, the offline run's system events and a fake clock.
type liveEnv struct {
	brokers   []string
	input     string
	group     string
	topics    pipeline.Topics
	now       *atomic.Int64
	want      map[string][]string
	wantCount int
	k         *pipelinetest.Env
}

func newLiveEnv(t *testing.T) *liveEnv {
	t.Helper()
	d := pipeline.DefaultTopics()
	k := pipelinetest.New(t, livePartitions, []string{"events", d.System, d.Events, d.Late, d.Dead, d.Changelog, d.Savepoints, d.SavepointData},
		pipelinetest.Compacted(d.Changelog))
	return &liveEnv{
		brokers: k.Brokers, input: k.Name("events"), group: k.Name("dwell"),
		topics: pipeline.Topics{System: k.Name(d.System), Events: k.Name(d.Events), Late: k.Name(d.Late),
			Dead: k.Name(d.Dead), Changelog: k.Name(d.Changelog), Savepoints: k.Name(d.Savepoints), SavepointData: k.Name(d.SavepointData)},
		now: new(atomic.Int64), k: k,
	}
}

// config is the processor's configuration on this Kafka, with the fake clock.
func (e *liveEnv) config(dataDir string, fs vfs.FS) pipeline.LiveConfig {
	return pipeline.LiveConfig{
		Brokers: e.brokers, Group: e.group, Inputs: []string{e.input}, Topics: e.topics, DataDir: dataDir, FS: fs,
		Now: func() time.Time { return time.UnixMilli(e.now.Load()) }, PollTimeout: 50 * time.Millisecond,
	}
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
	e := setupLive(t, bench.WebConfig{Profiles: 400, Rate: 20, IdleEvery: 3000, MalformedShare: 0.005, Jitter: time.Second}, 8000)
	live, err := pipeline.NewLive(e.config("data", vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- live.Run(ctx) }()
	got := drainSystemEvents(t, e)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	compareWithOffline(t, got, e, "live system events")
	t.Logf("%d system events over %d keys match the offline run", len(got), len(e.want))
}

func head(s []string) string {
	if len(s) > 3 {
		s = s[:3]
	}
	return fmt.Sprint(s)
}

// TestLiveCrashRecovery abandons the processor mid-run - once with a transaction open, once
// after a transaction committed but before its Pebble batch did - and starts a new one on the
// same data dir or on an empty one. The committed output must equal the offline run's, per
// key and in order, with no duplicate ids.
func TestLiveCrashRecovery(t *testing.T) {
	for _, tc := range []struct {
		guarantee string
		point     string
		keepState bool
	}{
		{pipeline.ExactlyOnce, "before-end", true}, {pipeline.ExactlyOnce, "after-end", true}, {pipeline.ExactlyOnce, "after-end", false},
		// Without transactions, "before-end" is after the outputs are flushed and before
		// Pebble commits; "after-end" after Pebble commits and before the offsets do.
		{pipeline.AtLeastOnce, "before-end", true}, {pipeline.AtLeastOnce, "before-end", false}, {pipeline.AtLeastOnce, "after-end", true},
	} {
		t.Run(fmt.Sprintf("%s/%s/keep-state=%v", tc.guarantee, tc.point, tc.keepState), func(t *testing.T) {
			e := setupLive(t, bench.WebConfig{Profiles: 300, Rate: 20, IdleEvery: 2000, MalformedShare: 0.005, Jitter: time.Second}, 5000)
			cfg := e.config("data", vfs.NewMem())
			cfg.MaxPollRecords = 400 // many cycles, so the crash lands mid-stream
			cfg.ClientOpts = []kgo.Opt{kgo.TransactionTimeout(2 * time.Second)}
			cfg.Guarantee = tc.guarantee
			first, err := pipeline.NewLive(cfg)
			if err != nil {
				t.Fatal(err)
			}
			cycles := 0
			first.SetCrashAt(func(point string) bool {
				if point == tc.point {
					cycles++
				}
				return point == tc.point && cycles == 5
			})
			if err := first.Run(context.Background()); err != pipeline.ErrCrashed {
				t.Fatalf("first run: %v, want the crash", err)
			}
			// Abandon it: no End, no Pebble commit; its store is closed as a dead process's
			// files would be.
			if err := first.Abandon(); err != nil {
				t.Fatal(err)
			}
			if !tc.keepState {
				cfg.FS = vfs.NewMem()
			}
			second, err := pipeline.NewLive(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- second.Run(ctx) }()
			got := drainSystemEvents(t, e)
			if tc.guarantee == pipeline.AtLeastOnce {
				// Repeats are allowed; wait until the distinct events are all there.
				pipelinetest.WaitFor(t, "every distinct system event", 60*time.Second, func() bool {
					e.now.Add(time.Minute.Milliseconds())
					got = pipelinetest.ReadCommitted(t, e.brokers, e.topics.System)
					return len(dedupeIdentical(t, got)) >= e.wantCount
				})
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := second.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.guarantee == pipeline.AtLeastOnce {
				got = dedupeIdentical(t, got)
			}
			compareWithOffline(t, got, e, "output after the crash")
			t.Logf("%d system events after a crash at %s match the offline run", len(got), tc.point)
		})
	}
}

// TestLiveRebalance runs instances that join and leave mid-stream, each with its own data dir:
// two start together, a third joins, the first leaves. Partitions move between them with their
// state restored from the changelog; the committed output must equal the offline run's, per key
// and in order, with no duplicate ids.
func TestLiveRebalance(t *testing.T) {
	e := setupLive(t, bench.WebConfig{Profiles: 300, Rate: 20, IdleEvery: 2000, MalformedShare: 0.005, Jitter: time.Second}, 6000)
	var processed atomic.Int64
	start := func(name string) (*pipeline.Live, context.CancelFunc, chan error) {
		cfg := e.config(name, vfs.NewMem())
		cfg.MaxPollRecords = 50
		l, err := pipeline.NewLive(cfg)
		if err != nil {
			t.Fatal(err)
		}
		l.SetCrashAt(func(point string) bool {
			if point == "after-end" {
				processed.Add(50)
				time.Sleep(10 * time.Millisecond) // pace the stream so membership changes land mid-way
			}
			return false
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		return l, cancel, done
	}
	a, stopA, doneA := start("a")
	b, stopB, doneB := start("b")
	pipelinetest.WaitFor(t, "a third of the stream", 60*time.Second, func() bool { return processed.Load() > 2000 })
	cInst, stopC, doneC := start("c")
	pipelinetest.WaitFor(t, "two thirds of the stream", 60*time.Second, func() bool { return processed.Load() > 4000 })
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	got := drainSystemEvents(t, e)
	for _, inst := range []struct {
		l    *pipeline.Live
		stop context.CancelFunc
		done chan error
	}{{b, stopB, doneB}, {cInst, stopC, doneC}} {
		inst.stop()
		if err := <-inst.done; err != nil {
			t.Fatal(err)
		}
		if err := inst.l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	compareWithOffline(t, got, e, "output across rebalances")
	restores := a.Restores() + b.Restores() + cInst.Restores()
	if restores <= livePartitions {
		t.Fatalf("%d partition restores: partitions never moved between instances", restores)
	}
	t.Logf("%d system events across two joins and a leave (%d partition restores) match the offline run", len(got), restores)
}

// TestLiveMetrics checks that the documented series exist and move: records in equal the
// records produced, every input record's latency is observed once, system events and
// transactions count, gauges read the state, and per-partition series go when partitions stop.
func TestLiveMetrics(t *testing.T) {
	e := newLiveEnv(t)
	const n = 2000
	produceWeb(t, e.brokers, e.input, bench.WebConfig{Profiles: 200, Rate: 20, MalformedShare: 0.01}, n)
	reg := prometheus.NewRegistry()
	e.now.Store(time.Date(2026, 1, 1, 0, 10, 0, 0, time.UTC).UnixMilli())
	cfg := e.config("d", vfs.NewMem())
	cfg.Metrics = pipeline.NewMetrics(reg)
	live, err := pipeline.NewLive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- live.Run(ctx) }()
	pipelinetest.WaitFor(t, "the group to consume every record", 60*time.Second, func() bool { return pipelinetest.CaughtUp(t, e.brokers, e.group, e.input) })
	pipelinetest.WaitFor(t, "readiness", 10*time.Second, live.Ready)
	value := func(name string, labels map[string]string) (float64, int) {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		sum, series := 0.0, 0
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
		metric:
			for _, m := range f.GetMetric() {
				for _, lp := range m.GetLabel() {
					if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
						continue metric
					}
				}
				series++
				switch {
				case m.Counter != nil:
					sum += m.Counter.GetValue()
				case m.Gauge != nil:
					sum += m.Gauge.GetValue()
				case m.Histogram != nil:
					sum += float64(m.Histogram.GetSampleCount())
				}
			}
		}
		return sum, series
	}
	if v, _ := value("dwell_records_in_total", map[string]string{"topic": e.input}); v != n {
		t.Fatalf("records in = %v, want %d", v, n)
	}
	if v, _ := value("dwell_event_to_output_latency_seconds", nil); v != n {
		t.Fatalf("latency observations = %v, want one per record (%d)", v, n)
	}
	for _, name := range []string{"dwell_cycle_duration_seconds", "dwell_transactions_total", "dwell_dead_letters_total",
		"dwell_records_out_total", "dwell_open_sessions", "dwell_keys_in_memory", "dwell_partition_restores_total", "dwell_rebalances_total"} {
		if v, series := value(name, nil); v <= 0 || series == 0 {
			t.Errorf("%s = %v over %d series, want it to have moved", name, v, series)
		}
	}
	if v, _ := value("dwell_system_events_total", map[string]string{"type": "profile-created"}); v <= 0 {
		t.Errorf("no profile-created counted")
	}
	if v, series := value("dwell_ready", nil); v != 1 || series != 1 {
		t.Errorf("dwell_ready = %v over %d series, want 1 once ready", v, series)
	}
	if v, _ := value("dwell_assigned_partitions", nil); v != livePartitions {
		t.Errorf("assigned partitions = %v, want %d", v, livePartitions)
	}
	if _, series := value("dwell_watermark_lag_seconds", nil); series != livePartitions {
		t.Errorf("%d watermark lag series, want one per partition", series)
	}
	for _, name := range []string{"dwell_pebble_l0_files", "dwell_pebble_compaction_debt_bytes", "dwell_pebble_cache_hit_ratio"} {
		if _, series := value(name, nil); series != 1 {
			t.Errorf("%s missing", name)
		}
	}
	fams, _ := reg.Gather()
	kafka := 0
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "dwell_kafka_") {
			kafka++
		}
		// A gauge named like a counter misleads rate() and promtool; kprom names two so.
		if f.GetType() == dto.MetricType_GAUGE && strings.HasSuffix(f.GetName(), "_total") {
			t.Errorf("gauge %s ends in _total", f.GetName())
		}
	}
	if kafka == 0 {
		t.Error("no franz-go client series (kprom)")
	}
	for _, name := range []string{"dwell_kafka_buffered_produce_records", "dwell_kafka_buffered_fetch_records"} {
		if _, series := value(name, nil); series != 1 {
			t.Errorf("%s: %d series, want 1 (kprom's _total gauge renamed)", name, series)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, series := value("dwell_watermark_lag_seconds", nil); series != 0 {
		t.Errorf("%d watermark lag series left after the partitions stopped", series)
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
}

// offlineWant runs dwell process's pipeline on values and returns its system events by key.
func offlineWant(t *testing.T, values [][]byte) (map[string][]string, int) {
	t.Helper()
	var offline bytes.Buffer
	if _, err := pipeline.RunOffline(context.Background(), pipeline.OfflineConfig{Partitions: livePartitions},
		strings.NewReader(string(bytes.Join(values, []byte("\n")))), pipeline.OfflineOutputs{System: &offline}); err != nil {
		t.Fatal(err)
	}
	want := byKey(strings.Split(strings.TrimSpace(offline.String()), "\n"))
	n := 0
	for _, v := range want {
		n += len(v)
	}
	return want, n
}

// drainSystemEvents waits until the group has consumed the input, moves the injected clock on
// so idle advancement ends every visit, and returns the committed system events once there are
// wantCount of them.
func drainSystemEvents(t *testing.T, e *liveEnv) []*kgo.Record {
	t.Helper()
	pipelinetest.WaitFor(t, "the group to consume every record", 60*time.Second, func() bool { return pipelinetest.CaughtUp(t, e.brokers, e.group, e.input) })
	e.now.Store(e.now.Load() + 48*time.Hour.Milliseconds())
	var got []*kgo.Record
	pipelinetest.WaitFor(t, "every system event", 60*time.Second, func() bool {
		e.now.Add(time.Minute.Milliseconds()) // wall-clock time passes, also for partitions restored after the jump
		got = pipelinetest.ReadCommitted(t, e.brokers, e.topics.System)
		return len(got) >= e.wantCount
	})
	return got
}

// compareWithOffline requires no duplicate ids and, per key and in order, the offline events.
func compareWithOffline(t *testing.T, got []*kgo.Record, e *liveEnv, what string) {
	t.Helper()
	want, wantCount := e.want, e.wantCount
	ids := map[string]bool{}
	var lines []string
	for _, r := range got {
		id := string(r.Value[len(`{"id":"`):][:32])
		if ids[id] {
			t.Fatalf("%s: duplicate system event id %s: %s", what, id, r.Value)
		}
		ids[id] = true
		lines = append(lines, string(r.Value))
	}
	gotByKey := byKey(lines)
	for k, w := range want {
		if !slices.Equal(gotByKey[k], w) {
			t.Fatalf("key %s: %s differs from offline:\nlive:    %v\noffline: %v", k, what, head(gotByKey[k]), head(w))
		}
	}
	if len(gotByKey) != len(want) || len(lines) != wantCount {
		t.Fatalf("%s: %d keys and %d events, want %d and %d", what, len(gotByKey), len(lines), len(want), wantCount)
	}
}

// dedupeIdentical drops repeated system events, which at-least-once allows only as exact
// copies: a repeated id with different bytes fails the test.
func dedupeIdentical(t *testing.T, recs []*kgo.Record) []*kgo.Record {
	t.Helper()
	seen := map[string][]byte{}
	var out []*kgo.Record
	for _, r := range recs {
		id := string(r.Value[len(`{"id":"`):][:32])
		if prev, ok := seen[id]; ok {
			if !bytes.Equal(prev, r.Value) {
				t.Fatalf("id %s repeated with different content:\n%s\n%s", id, prev, r.Value)
			}
			continue
		}
		seen[id] = r.Value
		out = append(out, r)
	}
	return out
}

// TestLiveRepeatedCrashes runs a 200k-event stream (30k under -race) through four processes in turn: the first
// is abandoned with its transaction open, the second between its transaction and its Pebble
// commit, the third likewise on an empty data dir, and the fourth finishes the stream, keeping
// at most 500 keys per partition in memory. The committed output must equal dwell process's
// per key and in order, with no duplicate ids.
func TestLiveRepeatedCrashes(t *testing.T) {
	// 200k events; under the race detector (about ten times slower) the same crashes on 30k,
	// while make test also runs this test once without it, on the full stream.
	n, pollRecords := 200_000, 5000
	if pipeline.RaceEnabled {
		n, pollRecords = 30_000, 1000
	}
	e := setupLive(t, bench.WebConfig{Profiles: 5000, Rate: 100, IdleEvery: n / 5, MalformedShare: 0.002, Jitter: time.Second}, n)
	cfg := e.config("data", vfs.NewMem())
	cfg.MaxPollRecords, cfg.MaxCachedKeys = pollRecords, 500
	// Short enough that the first process's open transaction is aborted soon, long enough for
	// a cycle under the race detector (a cycle must end within the timeout).
	cfg.ClientOpts = []kgo.Opt{kgo.TransactionTimeout(15 * time.Second)}
	for i, crash := range []struct {
		point string
		cycle int
		fresh bool // start on an empty data dir
	}{{"before-end", 4, false}, {"after-end", 7, false}, {"after-end", 5, true}} {
		if crash.fresh {
			cfg.FS = vfs.NewMem()
		}
		l, err := pipeline.NewLive(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cycles := 0
		l.SetCrashAt(func(point string) bool {
			if point == crash.point {
				cycles++
			}
			return point == crash.point && cycles == crash.cycle
		})
		if err := l.Run(context.Background()); err != pipeline.ErrCrashed {
			t.Fatalf("process %d: %v, want the crash", i+1, err)
		}
		if err := l.Abandon(); err != nil {
			t.Fatal(err)
		}
	}
	last, err := pipeline.NewLive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- last.Run(ctx) }()
	got := drainSystemEvents(t, e)
	evicted := last.Stats().Evicted // before the workers stop
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if cfg.MaxCachedKeys < 1000 && evicted == 0 {
		t.Errorf("no key was evicted: the run should exercise bounded memory")
	}
	if err := last.Close(); err != nil {
		t.Fatal(err)
	}
	compareWithOffline(t, got, e, "output after three crashes")
	t.Logf("%d system events from %d records through three crashes match the offline run", len(got), n)
}

// setupLive starts a Kafka with the input and every output topic, produces n generated records,
// and returns it with the offline run's system events and a fake wall clock at the stream's
// start.
func setupLive(t *testing.T, web bench.WebConfig, n int) *liveEnv {
	t.Helper()
	e := newLiveEnv(t)
	values := produceWeb(t, e.brokers, e.input, web, n)
	e.want, e.wantCount = offlineWant(t, values)
	e.now.Store(streamEnd(t, values))
	return e
}

// streamEnd is the latest event time of values: a fake wall clock starts there, since records
// are consumed after they were produced (the sessionizer dead-letters events more than
// max_future_skew ahead of the wall clock).
func streamEnd(t *testing.T, values [][]byte) int64 {
	t.Helper()
	dec := operators.NewDecoder((&operators.Config{}).EnsureDefaults())
	end := int64(0)
	var ev operators.Event
	for _, v := range values {
		if dec.Decode(&operators.Record{Value: v, Timestamp: operators.NoTimestamp}, &ev) == nil {
			end = max(end, ev.Time)
		}
	}
	if end == 0 {
		t.Fatal("no event in the stream has a time")
	}
	return end
}

// TestLiveLargePartitionSnapshot holds a whole stream in the reorder buffer (an hour of
// max_out_of_orderness), so each partition's snapshot outgrows a Kafka record (about 1 MB): it
// must go to the changelog in chunks. A processor abandoned after such cycles is replaced by one
// on an empty data dir, which restores from the chunks alone; the output must equal dwell
// process's with the same settings.
func TestLiveLargePartitionSnapshot(t *testing.T) {
	e := newLiveEnv(t)
	web := bench.WebConfig{Profiles: 300, Rate: 20, MalformedShare: 0.005, Jitter: time.Second}
	values := produceWeb(t, e.brokers, e.input, web, 12_000)
	ops := operators.Config{MaxOutOfOrderness: time.Hour}
	var offline bytes.Buffer
	if _, err := pipeline.RunOffline(context.Background(), pipeline.OfflineConfig{Partitions: livePartitions, Operators: ops},
		bytes.NewReader(bytes.Join(values, []byte("\n"))), pipeline.OfflineOutputs{System: &offline}); err != nil {
		t.Fatal(err)
	}
	e.want = byKey(strings.Split(strings.TrimSpace(offline.String()), "\n"))
	for _, v := range e.want {
		e.wantCount += len(v)
	}
	e.now.Store(streamEnd(t, values))
	cfg := e.config("data", vfs.NewMem())
	cfg.Operators, cfg.MaxPollRecords = ops, 3000
	cfg.ClientOpts = []kgo.Opt{kgo.TransactionTimeout(5 * time.Second)}
	first, err := pipeline.NewLive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cycles := 0
	first.SetCrashAt(func(point string) bool {
		if point == "after-end" {
			cycles++
		}
		return point == "after-end" && cycles == 4
	})
	if err := first.Run(context.Background()); err != pipeline.ErrCrashed {
		t.Fatalf("first run: %v, want the crash", err)
	}
	if err := first.Abandon(); err != nil {
		t.Fatal(err)
	}
	chunks := 0
	for _, r := range pipelinetest.ReadCommitted(t, e.brokers, e.topics.Changelog) {
		if bytes.HasPrefix(r.Key, []byte("\x00partition-chunk-")) {
			chunks++
		}
	}
	if chunks == 0 {
		t.Fatal("no partition snapshot was chunked: the test no longer exercises large snapshots")
	}
	cfg.FS = vfs.NewMem()
	second, err := pipeline.NewLive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- second.Run(ctx) }()
	got := drainSystemEvents(t, e)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	compareWithOffline(t, got, e, "output restored from a chunked snapshot")
	t.Logf("%d system events after a restore from %d snapshot chunks match the offline run", len(got), chunks)
}

// TestLiveRetriesFailedCycles makes partition restores fail (the changelog's offsets cannot be
// listed, as when its leader is down): Run must not return but retry, rebuilding partitions,
// count the failures, and still give the offline run's output.
func TestLiveRetriesFailedCycles(t *testing.T) {
	e := setupLive(t, bench.WebConfig{Profiles: 100, Rate: 20, IdleEvery: 1000}, 2000)
	fake := e.k.Fake()
	if fake == nil {
		t.Skip("needs kfake to inject failures")
	}
	var failed atomic.Int64
	fake.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		r := req.(*kmsg.ListOffsetsRequest)
		if len(r.Topics) == 0 || r.Topics[0].Topic != e.topics.Changelog || failed.Load() >= 6 {
			return nil, nil, false
		}
		failed.Add(1)
		resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.UnknownServerError.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	cfg := e.config("data", vfs.NewMem())
	reg := prometheus.NewRegistry()
	cfg.Metrics = pipeline.NewMetrics(reg)
	l, err := pipeline.NewLive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	got := drainSystemEvents(t, e)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	compareWithOffline(t, got, e, "output after failed cycles")
	if n := cycleFailures(t, reg, "restore"); failed.Load() < 6 || n == 0 {
		t.Fatalf("%d failed restores, cycle failures metric %v: the failures were not injected or not counted", failed.Load(), n)
	}
	t.Logf("%d restores failed; %v cycles retried; output matches the offline run", failed.Load(), cycleFailures(t, reg, ""))
}

// cycleFailures is dwell_cycle_failures_total{reason} (every reason, for "").
func cycleFailures(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dwell_cycle_failures_total" {
			continue
		}
		sum := 0.0
		for _, m := range mf.GetMetric() {
			if reason == "" || m.GetLabel()[0].GetValue() == reason {
				sum += m.GetCounter().GetValue()
			}
		}
		return sum
	}
	t.Fatal("no dwell_cycle_failures_total series")
	return 0
}

// TestLiveTimerStorm runs partitions whose watermark jumps (45-minute silences in the stream,
// then the wall clock two days on) with a tiny key cap and cycle budget: each jump makes most
// keys' timers due at once, their keys evicted. The work must go on over many cycles with the
// keys in memory bounded by the cap plus one cycle's work, survive a restart while partitions
// are behind (held records and a trailing watermark restored from the changelog), and give
// exactly the offline run's output.
func TestLiveTimerStorm(t *testing.T) {
	e := setupLive(t, bench.WebConfig{Profiles: 3000, Rate: 40, IdleEvery: 1500, MalformedShare: 0.005, Jitter: time.Second}, 6000)
	cfg := e.config("data", vfs.NewMem())
	// A cycle that consumed nothing but produced takes about 500ms to end with franz-go (it
	// waits before allowing a rebalance when it cannot tell the broker supports KIP-447), so
	// catching up runs at MaxCycleWork per half second; 150 keeps this test short.
	cfg.MaxCachedKeys, cfg.MaxCycleWork, cfg.MaxCycleLoads, cfg.MaxPollRecords = 20, 150, 60, 100
	bound := livePartitions * (cfg.MaxCachedKeys + 2*cfg.MaxPollRecords + cfg.MaxCycleLoads)
	maxKeys := 0
	sample := func(l *pipeline.Live) pipeline.LiveStats {
		st := l.Stats()
		maxKeys = max(maxKeys, st.Keys)
		return st
	}
	first, stop := runLive(t, cfg)
	pipelinetest.WaitFor(t, "a partition behind, holding records", 60*time.Second, func() bool {
		st := sample(first)
		return st.Behind > 0 && st.Held > 0
	})
	stop()

	second, stop := runLive(t, cfg)
	pipelinetest.WaitFor(t, "the group to consume every record", 60*time.Second, func() bool {
		sample(second)
		return pipelinetest.CaughtUp(t, e.brokers, e.group, e.input)
	})
	e.now.Add(48 * time.Hour.Milliseconds()) // every key's timers due: the storm
	var got []*kgo.Record
	pipelinetest.WaitFor(t, "every system event", 60*time.Second, func() bool {
		sample(second)
		e.now.Add(time.Minute.Milliseconds())
		got = pipelinetest.ReadCommitted(t, e.brokers, e.topics.System)
		return len(got) >= e.wantCount
	})
	st := sample(second)
	stop()
	compareWithOffline(t, got, e, "output of budgeted cycles")
	if st.BehindCycles < 10 {
		t.Fatalf("only %d partition cycles ended behind: the budget never bit", st.BehindCycles)
	}
	if maxKeys > bound {
		t.Fatalf("%d keys in memory at once, over the bound of %d (cap + 2 x poll + cycle loads per partition)", maxKeys, bound)
	}
	t.Logf("%d partition cycles behind; at most %d keys in memory (bound %d); output matches offline", st.BehindCycles, maxKeys, bound)
}

// TestLiveStallShowsInReadiness makes every transaction fail to end (its coordinator answers
// COORDINATOR_NOT_AVAILABLE, which the client retries): the cycle is stuck, and once the (fake)
// clock has passed the stall timeout the processor must say so - Readiness names the
// partitions, dwell_partition_stalled is 1 - and recover, ready again, once transactions end
// again.
func TestLiveStallShowsInReadiness(t *testing.T) {
	e := setupLive(t, bench.WebConfig{Profiles: 50, Rate: 20}, 300)
	fake := e.k.Fake()
	if fake == nil {
		t.Skip("needs kfake to inject failures")
	}
	var failing atomic.Bool
	var refused atomic.Int64
	fake.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		if !failing.Load() {
			return nil, nil, false
		}
		refused.Add(1)
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil, true
	})
	cfg := e.config("data", vfs.NewMem())
	cfg.TransactionTimeout, cfg.StallTimeout = 2*time.Second, time.Minute
	reg := prometheus.NewRegistry()
	cfg.Metrics = pipeline.NewMetrics(reg)
	l, _ := runLive(t, cfg)
	pipelinetest.WaitFor(t, "readiness", 30*time.Second, func() bool { return l.Readiness() == nil })
	stalled := func() (n int) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "dwell_partition_stalled" {
				for _, m := range mf.GetMetric() {
					n += int(m.GetGauge().GetValue())
				}
			}
		}
		return n
	}
	if n := stalled(); n != 0 {
		t.Fatalf("%d partitions stalled before any failure", n)
	}
	failing.Store(true)
	produceWeb(t, e.brokers, e.input, bench.WebConfig{Seed: 2, Profiles: 50, Rate: 20}, 100) // work that cannot commit
	pipelinetest.WaitFor(t, "transaction ends refused", 30*time.Second, func() bool { return refused.Load() >= 2 })
	if err := l.Readiness(); err != nil && strings.Contains(err.Error(), "progress") {
		t.Fatalf("stalled before the stall timeout passed: %v", err)
	}
	e.now.Add(2 * time.Minute.Milliseconds())
	err := l.Readiness()
	if err == nil || !strings.Contains(err.Error(), "made no progress") || !strings.Contains(err.Error(), "--stall-timeout") {
		t.Fatalf("Readiness with every cycle failing for longer than the stall timeout: %v", err)
	}
	if n := stalled(); n != livePartitions {
		t.Fatalf("dwell_partition_stalled sums to %d, want %d", n, livePartitions)
	}
	failing.Store(false)
	pipelinetest.WaitFor(t, "readiness after recovery", 60*time.Second, func() bool { return l.Readiness() == nil })
	if n := stalled(); n != 0 {
		t.Fatalf("%d partitions still stalled after recovery", n)
	}
	t.Logf("stalled and recovered; %d transaction ends refused meanwhile", refused.Load())
}
