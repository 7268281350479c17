package bench_test

import (
	"bytes"
	"context"
	"testing"
	"time"

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
// its cores, so this understates what a separate broker allows.
//
//	go test ./bench -run '^$' -bench PipelineKfake -benchtime 100000x -count 3
func BenchmarkPipelineKfake(b *testing.B) {
	for _, g := range []string{pipeline.ExactlyOnce, pipeline.AtLeastOnce} {
		b.Run("guarantee="+g, func(b *testing.B) { benchPipelineKfake(b, g) })
	}
}

func benchPipelineKfake(b *testing.B, guarantee string) {
	topics := pipeline.DefaultTopics()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events", topics.System, topics.Events,
		topics.Late, topics.Dead, topics.Changelog))
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
	var bytesIn int64
	for i := 0; i < b.N; i += 10_000 {
		recs := make([]*kgo.Record, 0, 10_000)
		for range min(10_000, b.N-i) {
			r := g.Next(nil)
			bytesIn += int64(len(r.Value))
			recs = append(recs, &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	live, err := pipeline.NewLive(pipeline.LiveConfig{Brokers: brokers, Inputs: []string{"events"}, DataDir: "bench",
		FS: vfs.NewMem(), MaxPollRecords: 20_000, Guarantee: guarantee})
	if err != nil {
		b.Fatal(err)
	}
	defer live.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ReportAllocs()
	b.SetBytes(bytesIn / int64(b.N))
	b.ResetTimer()
	go func() { done <- live.Run(ctx) }()
	for {
		committed, err := adm.FetchOffsets(context.Background(), "dwell")
		if err == nil {
			total := int64(0)
			committed.Each(func(o kadm.OffsetResponse) { total += o.At })
			if total >= int64(b.N) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	st := live.Stats()
	b.ReportMetric(float64(st.Committed), "txns")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
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
