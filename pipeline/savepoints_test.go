package pipeline_test

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
	"github.com/dwellhq/dwell/pipeline/savepoint"
	"github.com/dwellhq/dwell/state"
)

// snapshots records the savepoints a processor takes: by id, the changelog offset its state
// reflects and its partition.
type snapshots struct {
	sync.Mutex
	offset map[string]int64
	part   map[string]int32
}

func watchSnapshots(l *pipeline.Live) *snapshots {
	s := &snapshots{offset: map[string]int64{}, part: map[string]int32{}}
	l.SetSavepointTaken(func(p int32, id string, off int64) {
		s.Lock()
		defer s.Unlock()
		s.offset[id], s.part[id] = off, p
	})
	return s
}

func (s *snapshots) taken() int {
	s.Lock()
	defer s.Unlock()
	return len(s.offset)
}

func (e *liveEnv) savepointTopics() savepoint.Topics {
	return savepoint.Topics{Descriptors: e.topics.Savepoints, Data: e.topics.SavepointData}
}

// listSavepoints returns the committed savepoint descriptors.
func listSavepoints(t *testing.T, e *liveEnv) []savepoint.Descriptor {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ds, err := savepoint.List(context.Background(), kadm.NewClient(cl), e.brokers, nil, e.savepointTopics())
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// firstOfEach returns the first descriptor in ds of every partition, and whether each of the
// partitions want (nil: all) has one. Descriptors skip says true of are left out.
func firstOfEach(ds []savepoint.Descriptor, want map[int32]bool, skip func(savepoint.Descriptor) bool) (map[int32]savepoint.Descriptor, bool) {
	out := map[int32]savepoint.Descriptor{}
	for _, d := range ds {
		if _, ok := out[d.Partition]; !ok && (skip == nil || !skip(d)) {
			out[d.Partition] = d
		}
	}
	if want == nil {
		return out, len(out) == livePartitions
	}
	for p := range want {
		if _, ok := out[p]; !ok {
			return out, false
		}
	}
	return out, true
}

// dumpRecord is one record of a store's state as a compacted changelog holds it.
type dumpRecord struct{ key, value string }

// dumpPartition reads partition p of st as a compacted changelog holds it (state.Snapshot).
func dumpPartition(t *testing.T, st *state.Store, p int32) ([]dumpRecord, []byte) {
	t.Helper()
	sn, err := st.Snapshot(p)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	var out []dumpRecord
	for {
		done, err := sn.Read(1<<20, func(k, v []byte) error {
			out = append(out, dumpRecord{string(k), string(v)})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if done {
			return out, bytes.Clone(sn.Partition())
		}
	}
}

func replayInto(t *testing.T, p int32, recs []state.ChangelogRecord) *state.Store {
	t.Helper()
	st, err := state.Open(state.Options{Dir: "db", FS: vfs.NewMem(), CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Replay(p, recs); err != nil {
		t.Fatal(err)
	}
	return st
}

// checkSavepoint reads savepoint d back (savepoint.Read) and replays it into an empty store,
// and replays the changelog up to the offset the savepoint's state reflected into another:
// both must hold exactly the same keys, values and partition record, and d's Next, Watermark
// and counts must be what that state holds. It returns the state's key count.
func checkSavepoint(t *testing.T, e *liveEnv, changelog []*kgo.Record, d savepoint.Descriptor, changelogOffset int64) int {
	t.Helper()
	var log []state.ChangelogRecord
	for _, r := range changelog {
		if r.Partition == d.Partition && r.Offset < changelogOffset {
			log = append(log, state.ChangelogRecord{Offset: r.Offset, Key: r.Key, Value: r.Value})
		}
	}
	want, wantPart := dumpPartition(t, replayInto(t, d.Partition, log), d.Partition)

	var sp []state.ChangelogRecord
	err := savepoint.Read(context.Background(), e.brokers, nil, e.savepointTopics(), d, func(k, v []byte) error {
		sp = append(sp, state.ChangelogRecord{Offset: int64(len(sp)), Key: bytes.Clone(k), Value: bytes.Clone(v)})
		return nil
	})
	if err != nil {
		t.Fatalf("savepoint %s: %v", d.ID, err)
	}
	got, gotPart := dumpPartition(t, replayInto(t, d.Partition, sp), d.Partition)
	if !slices.Equal(got, want) || !bytes.Equal(gotPart, wantPart) {
		t.Fatalf("savepoint %s: %d records, partition record of %d bytes; the changelog up to offset %d gives %d and %d bytes",
			d.ID, len(got), len(gotPart), changelogOffset, len(want), len(wantPart))
	}
	if wantPart == nil {
		t.Fatalf("savepoint %s holds no partition record", d.ID)
	}
	keys := len(want) - 1 // the partition record (unchunked here) is last
	var bytesIn int64
	for _, r := range sp {
		bytesIn += int64(len(r.Key) + len(r.Value))
	}
	if d.Keys != int64(keys) || d.Records != int64(len(sp)) || d.Bytes != bytesIn {
		t.Fatalf("savepoint %s says %d keys, %d records, %d bytes; its data has %d, %d, %d", d.ID, d.Keys, d.Records, d.Bytes, keys, len(sp), bytesIn)
	}
	next := map[string]int64{}
	snap, err := state.ParsePartitionRecord(wantPart, next)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(next, d.Next) {
		t.Fatalf("savepoint %s: next offsets %v, its state holds %v", d.ID, d.Next, next)
	}
	s, err := operators.NewSessionizer(operators.Config{}, d.Partition, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RestorePartition(snap); err != nil {
		t.Fatal(err)
	}
	if s.Watermark() != d.Watermark {
		t.Fatalf("savepoint %s: watermark %d, its state holds %d", d.ID, d.Watermark, s.Watermark())
	}
	return keys
}

// inputEnds returns the end offset of every partition of topic.
func inputEnds(t *testing.T, brokers []string, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// TestLiveSavepoint writes savepoints back to back (a 1ms interval of a fake clock that moves
// 1ms at a time) while the input still flows: at most 5 keys per partition in memory (the
// rest evicted to Pebble) and 2 KiB of savepoint data a cycle, so each savepoint spans several
// cycles' transactions while records are processed. For each partition, the first completed
// savepoint that holds more keys than memory, spans several cycles and was taken before the
// input's end, read back and replayed into an empty store, must hold exactly the keys, values
// and partition record that replaying the changelog up to the savepoint's cycle gives, with
// that state's next offsets and watermark; the outputs must still equal the offline run's.
func TestLiveSavepoint(t *testing.T) {
	e := setupLive(t, bench.WebConfig{Profiles: 400, Rate: 20, IdleEvery: 3000, MalformedShare: 0.005, Jitter: time.Second}, 6000)
	ends := inputEnds(t, e.brokers, e.input)
	cfg := e.config("data", vfs.NewMem())
	cfg.MaxPollRecords, cfg.MaxCachedKeys, cfg.SavepointCycleBytes = 200, 5, 2048
	cfg.SavepointInterval = time.Millisecond
	reg := prometheus.NewRegistry()
	cfg.Metrics = pipeline.NewMetrics(reg)
	l, err := pipeline.NewLive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	snaps := watchSnapshots(l)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	// The clock moves 1ms at a time, so each savepoint has its own time (and id); far too
	// slowly for idle advancement (30s) to matter while the input flows.
	ticking, stopTicking := context.WithCancel(context.Background())
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		for ticking.Err() == nil {
			e.now.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	qualifies := func(d savepoint.Descriptor) bool {
		// More keys than memory holds; its data in several cycles' transactions (their
		// markers lie between its records); taken while input was still to come.
		return d.Keys > int64(cfg.MaxCachedKeys) && d.DataEnd-d.DataStart-d.Records+1 >= 2 && d.Next[e.input] < ends[d.Partition]
	}
	var chosen map[int32]savepoint.Descriptor
	pipelinetest.WaitFor(t, "a completed savepoint of every partition, written while the input flowed", 60*time.Second, func() bool {
		var ok bool
		chosen, ok = firstOfEach(listSavepoints(t, e), nil, func(d savepoint.Descriptor) bool { return !qualifies(d) })
		return ok
	})
	stopTicking()
	<-ticked
	got := drainSystemEvents(t, e)
	completed := counterValue(t, reg, "dwell_savepoints_total", "completed")
	ages := seriesCount(t, reg, "dwell_savepoint_age_seconds")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	compareWithOffline(t, got, e, "output while savepoints were written")

	changelog := pipelinetest.ReadCommitted(t, e.brokers, e.topics.Changelog)
	for p, d := range chosen {
		snaps.Lock()
		off, ok := snaps.offset[d.ID]
		snaps.Unlock()
		if !ok {
			t.Fatalf("partition %d: savepoint %s was never taken by this processor", p, d.ID)
		}
		keys := checkSavepoint(t, e, changelog, d, off)
		t.Logf("partition %d: %s: %d keys, %d records, %d bytes in [%d, %d), next %v of %d", p, d.ID, keys, d.Records, d.Bytes,
			d.DataStart, d.DataEnd, d.Next[e.input], ends[p])
	}
	if completed < livePartitions || ages != livePartitions {
		t.Fatalf("dwell_savepoints_total{result=completed} = %v, %d dwell_savepoint_age_seconds series; want >= %d and %d",
			completed, ages, livePartitions, livePartitions)
	}
}

// TestLiveSavepointCrash abandons the processor while savepoints are being written (some of
// their data committed, their descriptor not), and starts a new one on the same data dir. The
// abandoned savepoints must never get a descriptor; the new processor must complete a
// savepoint of each of their partitions (a partition whose savepoint completed before the
// crash waits an interval) that reads back as its state; the outputs must equal the offline
// run's.
func TestLiveSavepointCrash(t *testing.T) {
	for _, tc := range []struct {
		guarantee, point string
	}{{pipeline.ExactlyOnce, "before-end"}, {pipeline.ExactlyOnce, "after-end"}, {pipeline.AtLeastOnce, "before-end"}} {
		t.Run(tc.guarantee+"/"+tc.point, func(t *testing.T) {
			e := setupLive(t, bench.WebConfig{Profiles: 300, Rate: 20, IdleEvery: 2000, MalformedShare: 0.005, Jitter: time.Second}, 5000)
			cfg := e.config("data", vfs.NewMem())
			cfg.MaxPollRecords, cfg.MaxCachedKeys, cfg.SavepointCycleBytes = 200, 20, 1024
			cfg.Guarantee = tc.guarantee
			cfg.ClientOpts = []kgo.Opt{kgo.TransactionTimeout(2 * time.Second)}
			first, err := pipeline.NewLive(cfg)
			if err != nil {
				t.Fatal(err)
			}
			abandoned := watchSnapshots(first)
			points := 0
			first.SetCrashAt(func(point string) bool {
				if point != tc.point || abandoned.taken() < livePartitions {
					return false
				}
				points++
				return points == 3 // two cycles of savepoint data written, the third's in flight
			})
			if err := first.Run(context.Background()); err != pipeline.ErrCrashed {
				t.Fatalf("first run: %v, want the crash", err)
			}
			if err := first.Abandon(); err != nil {
				t.Fatal(err)
			}
			// The savepoints of small states may have completed; the others were being written:
			// some of their data is committed, and they have no descriptor.
			before := map[string]bool{}
			for _, d := range listSavepoints(t, e) {
				before[d.ID] = true
			}
			data := map[string]int{}
			for _, r := range pipelinetest.ReadCommitted(t, e.brokers, e.topics.SavepointData) {
				for _, h := range r.Headers {
					if h.Key == savepoint.Header {
						data[string(h.Value)]++
					}
				}
			}
			orphans, cut := map[string]int{}, map[int32]bool{}
			for id, n := range data {
				if !before[id] {
					orphans[id] = n
					abandoned.Lock()
					cut[abandoned.part[id]] = true
					abandoned.Unlock()
				}
			}
			if len(orphans) == 0 {
				t.Fatalf("no savepoint was being written at the crash (%d taken, %d completed)", abandoned.taken(), len(before))
			}

			e.now.Add(time.Second.Milliseconds()) // new savepoints get new ids
			// Once the input is consumed, a cycle that only produces takes about 500ms to end
			// (franz-go, without offsets to commit): larger shares keep the test short.
			cfg.SavepointCycleBytes = 16 << 10
			second, err := pipeline.NewLive(cfg)
			if err != nil {
				t.Fatal(err)
			}
			snaps := watchSnapshots(second)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- second.Run(ctx) }()
			var completed map[int32]savepoint.Descriptor
			pipelinetest.WaitFor(t, "a completed savepoint of every partition whose savepoint was cut short", 60*time.Second, func() bool {
				var ok bool
				completed, ok = firstOfEach(listSavepoints(t, e), cut, func(d savepoint.Descriptor) bool { return before[d.ID] })
				return ok
			})
			got := drainSystemEvents(t, e)
			if tc.guarantee == pipeline.AtLeastOnce {
				pipelinetest.WaitFor(t, "every distinct system event", 60*time.Second, func() bool {
					e.now.Add(time.Minute.Milliseconds())
					got = pipelinetest.ReadCommitted(t, e.brokers, e.topics.System)
					return len(dedupeIdentical(t, got)) >= e.wantCount
				})
				got = dedupeIdentical(t, got)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := second.Close(); err != nil {
				t.Fatal(err)
			}
			compareWithOffline(t, got, e, "output after a crash during savepoints")

			changelog := pipelinetest.ReadCommitted(t, e.brokers, e.topics.Changelog)
			for _, d := range listSavepoints(t, e) {
				if orphans[d.ID] > 0 {
					t.Fatalf("abandoned savepoint %s has a descriptor", d.ID)
				}
			}
			for p, d := range completed {
				snaps.Lock()
				off, ok := snaps.offset[d.ID]
				snaps.Unlock()
				if !ok {
					t.Fatalf("partition %d: savepoint %s was not taken by the restarted processor", p, d.ID)
				}
				checkSavepoint(t, e, changelog, d, off)
			}
			t.Logf("%d savepoints completed before the crash, %d abandoned by it (%v); their partitions completed new ones after the restart",
				len(before), len(orphans), slices.Sorted(maps.Keys(orphans)))
		})
	}
}

// counterValue is the value of a counter series with the given label value.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{%s}", name, label)
	return 0
}

// seriesCount is the number of series of a metric.
func seriesCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}

// setTopicConfig sets one config of topic.
func setTopicConfig(t *testing.T, brokers []string, topic, key, value string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: key, Value: &value}}, topic)
	if err == nil {
		var r kadm.AlterConfigsResponse
		if r, err = resp.On(topic, nil); err == nil {
			err = r.Err
		}
	}
	if err != nil {
		t.Errorf("setting %s of %s: %v", key, topic, err)
	}
}

// TestLiveSavepointRefused lowers the data topic's max.message.bytes right after the processor
// read it (as its first savepoint starts): Kafka refuses the savepoints' records, which fails
// their cycles. Processing must go on - the failed cycles retried without the savepoints,
// which wait an interval, also across the partitions' restores - with exactly the offline
// run's output. Once the topic takes them again and the interval has passed, every partition
// completes a savepoint that reads back as its state.
func TestLiveSavepointRefused(t *testing.T) {
	e := setupLive(t, bench.WebConfig{Profiles: 300, Rate: 20, IdleEvery: 2000, MalformedShare: 0.005, Jitter: time.Second}, 5000)
	cfg := e.config("data", vfs.NewMem())
	cfg.MaxPollRecords, cfg.MaxCachedKeys, cfg.SavepointCycleBytes = 200, 20, 4096
	cfg.SavepointInterval = time.Hour
	reg := prometheus.NewRegistry()
	cfg.Metrics = pipeline.NewMetrics(reg)
	l, err := pipeline.NewLive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	snaps := &snapshots{offset: map[string]int64{}, part: map[string]int32{}}
	l.SetSavepointTaken(func(p int32, id string, off int64) {
		snaps.Lock()
		defer snaps.Unlock()
		if len(snaps.offset) == 0 { // on Run's goroutine, before any data record is produced
			setTopicConfig(t, e.brokers, e.topics.SavepointData, "max.message.bytes", "200")
		}
		snaps.offset[id], snaps.part[id] = off, p
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	got := drainSystemEvents(t, e)
	compareWithOffline(t, got, e, "output while Kafka refused savepoint records")
	refused := cycleFailures(t, reg, "produce")
	abandoned := counterValue(t, reg, "dwell_savepoints_total", "abandoned")
	if refused == 0 || abandoned == 0 {
		t.Fatalf("%v cycles failed producing, %v savepoints abandoned: Kafka never refused a savepoint record", refused, abandoned)
	}
	before := map[string]bool{}
	for _, d := range listSavepoints(t, e) {
		before[d.ID] = true
	}

	setTopicConfig(t, e.brokers, e.topics.SavepointData, "max.message.bytes", "1048588")
	e.now.Add(2 * time.Hour.Milliseconds())
	var completed map[int32]savepoint.Descriptor
	pipelinetest.WaitFor(t, "a savepoint of every partition once the topic takes them", 60*time.Second, func() bool {
		var ok bool
		completed, ok = firstOfEach(listSavepoints(t, e), nil, func(d savepoint.Descriptor) bool { return before[d.ID] })
		return ok
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	changelog := pipelinetest.ReadCommitted(t, e.brokers, e.topics.Changelog)
	for p, d := range completed {
		snaps.Lock()
		off, ok := snaps.offset[d.ID]
		snaps.Unlock()
		if !ok {
			t.Fatalf("partition %d: savepoint %s was never taken", p, d.ID)
		}
		checkSavepoint(t, e, changelog, d, off)
	}
	t.Logf("%v cycles failed on refused savepoint records, %v savepoints abandoned, %d completed before; every partition completed one after",
		refused, abandoned, len(before))
}
