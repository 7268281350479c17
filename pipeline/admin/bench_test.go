package admin_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/admin"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// BenchmarkProfileQuery measures GET /v1/profiles/{id} for a profile in memory, asked to its
// owner (where=local) and to the other instance, which forwards it (where=forwarded), while
// both instances of the group process a generated web stream that a producer writes to kfake
// at a steady rate (rate=N events/s) or as fast as it can (rate=max); the stream starts at the
// profile's event time and moves its watermark on. It reports the latency's p50 and p99, and
// the events/s the two instances processed meanwhile: everything shares the machine's cores
// (kfake, the producer, both processors, the HTTP client), and B/op counts all of it.
//
//	go test ./pipeline/admin -run '^$' -bench BenchmarkProfileQuery -benchtime 3000x -count 1
func BenchmarkProfileQuery(b *testing.B) {
	c := newCluster(b)
	noLateness := func(cfg *pipeline.LiveConfig) { cfg.Operators = operators.Config{} }
	a, o := c.start(b, "a", noLateness), c.start(b, "b", noLateness)
	ca, co := client(a.url, token), client(o.url, token)
	defer closeClient(ca)
	defer closeClient(co)
	var ownedA []int32
	pipelinetest.WaitFor(b, "the partitions split between a and b", 60*time.Second, func() bool {
		ownedA = owned(b, ca)
		ownedO := owned(b, co)
		return len(ownedA) > 0 && len(ownedO) > 0 && len(ownedA)+len(ownedO) == partitions
	})
	id := profileOn(ownedA)
	c.produce(b, id, base, 3)

	records := func() uint64 { return a.live.Stats().Records + o.live.Stats().Records }
	g, err := bench.NewWeb(bench.WebConfig{Profiles: 50_000, Rate: 1000})
	if err != nil {
		b.Fatal(err)
	}
	for _, rate := range []int{10_000, 100_000, 0} {
		name := "rate=max"
		if rate > 0 {
			name = fmt.Sprintf("rate=%d", rate)
		}
		b.Run(name, func(b *testing.B) {
			ctx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); c.pump(ctx, b, g, rate) }()
			defer func() { stop(); wg.Wait() }()
			r := records()
			pipelinetest.WaitFor(b, "the stream to flow", 60*time.Second, func() bool { return records() > r+5_000 })
			// The stream's event time moves the watermark past the profile's events.
			pipelinetest.WaitFor(b, "a to answer for "+id, 60*time.Second, func() bool {
				v, err := ca.Profile(context.Background(), id)
				return err == nil && v.InMemory
			})
			for _, bc := range []struct {
				name string
				cl   *admin.Client
			}{{"where=local", ca}, {"where=forwarded", co}} {
				b.Run(bc.name, func(b *testing.B) {
					b.ReportAllocs()
					var lat []time.Duration
					r0, t0 := records(), time.Now()
					for b.Loop() {
						start := time.Now()
						v, err := bc.cl.Profile(context.Background(), id)
						lat = append(lat, time.Since(start))
						if err != nil || v.Forwarded != (bc.cl == co) {
							b.Fatalf("%+v, %v", v, err)
						}
					}
					took := time.Since(t0)
					slices.Sort(lat)
					q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) }
					b.ReportMetric(q(0.5), "p50-µs")
					b.ReportMetric(q(0.99), "p99-µs")
					b.ReportMetric(float64(records()-r0)/took.Seconds(), "events/s")
				})
			}
		})
	}
}

// pump produces g's web stream until ctx ends, a batch of 1,000 at a time, paced to rate
// events/s (0: as fast as it can).
func (c *cluster) pump(ctx context.Context, b *testing.B, g *bench.Web, rate int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.k.Brokers...), kgo.DefaultProduceTopic(c.input),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Error(err)
		return
	}
	defer cl.Close()
	recs := make([]*kgo.Record, 1000)
	var tick <-chan time.Time
	if rate > 0 {
		tk := time.NewTicker(time.Second * time.Duration(len(recs)) / time.Duration(rate))
		defer tk.Stop()
		tick = tk.C
	}
	for ctx.Err() == nil {
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				return
			}
		}
		for i := range recs {
			r := g.Next(nil)
			recs[i] = &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil && ctx.Err() == nil {
			b.Error(err)
			return
		}
	}
}
