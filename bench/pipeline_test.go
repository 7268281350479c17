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
