package bench_test

import (
	"bytes"
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// BenchmarkPipelineKfake is the end-to-end figure: records pre-produced to a 4-partition topic
// on kfake (in-process) are consumed by the exactly-once live processor until the group has
// committed every one; one op is one record. The broker runs in the same process and shares
// its cores, so this understates what a separate broker allows, and its allocations count in
// allocs/op. allocs/event divides the same allocations by the events processed in the timed
// stretch, unrounded: allocs/op divides by b.N and rounds down, though the processor may
// commit a first cycle's records before the timer starts.
//
//	go test ./bench -run '^$' -bench 'BenchmarkPipelineKfake$' -benchtime 200000x -count 6 -cpu 2
func BenchmarkPipelineKfake(b *testing.B) {
	for _, g := range []string{pipeline.ExactlyOnce, pipeline.AtLeastOnce} {
		b.Run("guarantee="+g, func(b *testing.B) {
			benchPipelineKfake(b, pipeline.LiveConfig{Guarantee: g, SavepointInterval: -1, MaxPollRecords: 20_000}, 0)
		})
	}
}

// BenchmarkPipelineKfakeSavepoint is BenchmarkPipelineKfake (exactly-once, the default 10,000
// records a cycle) on a warm state - 300,000 records of 100,000 profiles processed first, by a
// processor without savepoints on the same data dir, about 20 MB of state per partition -
// without savepoints, and with one always in progress (SavepointInterval 1ns: each partition
// starts the next as soon as one completes) at several --savepoint-cycle-bytes. The timed
// stretch starts once the partitions are restored. events/core-s divides events by the
// process's CPU time (the in-process broker's included), steadier than events/s on a shared
// machine; savepoint-records/s is the savepoint data written (about 500 bytes a record:
// BenchmarkSnapshotRead in state).
//
//	go test ./bench -run '^$' -bench PipelineKfakeSavepoint -benchtime 200000x -count 4
func BenchmarkPipelineKfakeSavepoint(b *testing.B) {
	for _, c := range []struct {
		name  string
		bytes int
	}{{"none", 0}, {"cycle-bytes=64KiB", 64 << 10}, {"cycle-bytes=256KiB", 256 << 10}, {"cycle-bytes=1MiB", 1 << 20}} {
		b.Run("savepoints="+c.name, func(b *testing.B) {
			cfg := pipeline.LiveConfig{SavepointInterval: -1}
			if c.bytes > 0 {
				cfg.SavepointInterval, cfg.SavepointCycleBytes = time.Nanosecond, c.bytes
			}
			benchPipelineKfake(b, cfg, 300_000)
		})
	}
}

// benchPipelineKfake runs the processor configured as cfg (its brokers, inputs and data dir
// filled in) through b.N pre-produced web records; with warm > 0, after a processor without
// savepoints has processed warm records before them on the same data dir.
func benchPipelineKfake(b *testing.B, cfg pipeline.LiveConfig, warm int) {
	topics := pipeline.DefaultTopics()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events", topics.System, topics.Events,
		topics.Late, topics.Dead, topics.Changelog, topics.Savepoints, topics.SavepointData))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("events"),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	g, err := bench.NewWeb(bench.WebConfig{Profiles: 100_000, Rate: 250})
	if err != nil {
		b.Fatal(err)
	}
	produce := func(n int) (bytesIn int64) {
		for i := 0; i < n; i += 10_000 {
			recs := make([]*kgo.Record, 0, 10_000)
			for range min(10_000, n-i) {
				r := g.Next(nil)
				bytesIn += int64(len(r.Value))
				recs = append(recs, &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)})
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				b.Fatal(err)
			}
		}
		return bytesIn
	}
	adm := kadm.NewClient(cl)
	committed := func() int64 {
		offsets, err := adm.FetchOffsets(context.Background(), "dwell")
		if err != nil {
			return -1
		}
		total := int64(0)
		offsets.Each(func(o kadm.OffsetResponse) { total += max(o.At, 0) })
		return total
	}
	run := func(cfg pipeline.LiveConfig, until int64, started func()) (*pipeline.Live, func()) {
		live, err := pipeline.NewLive(cfg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- live.Run(ctx) }()
		for !live.Ready() {
			time.Sleep(5 * time.Millisecond)
		}
		started()
		for committed() < until {
			time.Sleep(20 * time.Millisecond)
		}
		return live, func() {
			cancel()
			if err := <-done; err != nil {
				b.Error(err)
			}
			if err := live.Close(); err != nil {
				b.Error(err)
			}
		}
	}
	cfg.Brokers, cfg.Inputs, cfg.DataDir, cfg.FS = brokers, []string{"events"}, "bench", vfs.NewMem()
	if warm > 0 {
		produce(warm)
		w := cfg
		w.SavepointInterval = -1
		_, stop := run(w, int64(warm), func() {})
		stop()
	}
	bytesIn := produce(b.N)
	reg := prometheus.NewRegistry()
	cfg.Metrics = pipeline.NewMetrics(reg)
	b.ReportAllocs()
	b.SetBytes(bytesIn / int64(b.N))
	var cpu0 time.Duration
	var from int64
	var ms runtime.MemStats
	var mallocs0 uint64
	live, stop := run(cfg, int64(warm+b.N), func() {
		from = max(committed(), int64(warm))
		cpu0 = cpuTime()
		runtime.ReadMemStats(&ms)
		mallocs0 = ms.Mallocs
		b.ResetTimer()
	})
	b.StopTimer()
	events := float64(int64(warm+b.N) - from)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(events/(cpuTime()-cpu0).Seconds(), "events/core-s")
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.Mallocs-mallocs0)/events, "allocs/event")
	st := live.Stats()
	b.ReportMetric(float64(st.Committed), "txns")
	if cfg.SavepointInterval > 0 {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				switch {
				case mf.GetName() == "dwell_savepoints_total" && m.GetLabel()[0].GetValue() == "completed":
					b.ReportMetric(m.GetCounter().GetValue(), "savepoints")
				case mf.GetName() == "dwell_records_out_total" && m.GetLabel()[0].GetValue() == topics.SavepointData:
					b.ReportMetric(m.GetCounter().GetValue()/b.Elapsed().Seconds(), "savepoint-records/s")
				}
			}
		}
	}
	stop()
}

// BenchmarkWorkloadPipeline runs the web and Query 11 workloads through the exactly-once live
// processor, on kfake or, when DWELL_TEST_BROKERS is set, on that broker
// (pipeline/pipelinetest gives every run its own topics and group). Input is produced first;
// ns/op includes producing it, the events/s and events/core-s metrics do not (the processor's
// stretch only, as dwell bench reports them).
//
//	go test ./bench -run '^$' -bench WorkloadPipeline -benchtime 200000x -count 3
//	DWELL_TEST_BROKERS=127.0.0.1:9092 go test ./bench -run '^$' -bench WorkloadPipeline -benchtime 200000x
func BenchmarkWorkloadPipeline(b *testing.B) {
	for _, w := range []string{"web", "nexmark-q11"} {
		b.Run("workload="+w, func(b *testing.B) {
			t := pipeline.DefaultTopics()
			env := pipelinetest.New(b, 4, []string{"events", t.System, t.Events, t.Late, t.Dead, t.Changelog},
				pipelinetest.Compacted(t.Changelog))
			level := bench.LevelKfake
			if env.Real {
				level = bench.LevelBroker
			}
			pc := bench.PipelineConfig{Kafka: &bench.Kafka{Brokers: env.Brokers, Input: env.Name("events"), Group: env.Name("dwell"),
				Topics: pipeline.Topics{System: env.Name(t.System), Events: env.Name(t.Events), Late: env.Name(t.Late),
					Dead: env.Name(t.Dead), Changelog: env.Name(t.Changelog)}}}
			var r *bench.Result
			var err error
			if w == "web" {
				r, err = bench.RunWeb(context.Background(), bench.WebRunConfig{Level: level, Events: int64(b.N), Pipeline: pc,
					Operators: bench.OperatorsConfig{Web: bench.WebConfig{Profiles: 100_000, Rate: 250}}})
			} else {
				// A 1ms watermark delay (the stream is in order): each partition snapshot
				// carries the buffered events, and at 100,000 events/s even 100ms of them
				// outgrow the broker's record size limit and every transaction aborts.
				r, err = bench.RunNexmark(context.Background(), bench.NexmarkRunConfig{Level: level, Events: int64(b.N), Pipeline: pc,
					Q11: bench.Q11Config{MaxOutOfOrderness: time.Millisecond}})
			}
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(r.BytesInPerEvent))
			b.ReportMetric(r.EventsPerS, "events/s")
			b.ReportMetric(r.EventsPerCoreS, "events/core-s")
			b.ReportMetric(r.AllocsPerEvent, "allocs/event")
		})
	}
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
