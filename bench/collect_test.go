package bench

import (
	"context"
	"testing"
	"time"
)

// BenchmarkCollect is the collect workload on kfake, all in this process: b.N requests of 10
// events from 64 keep-alive clients, each answered once kfake acknowledged its record.
// events/core-s is per second of process CPU (collector, kfake and clients together): on a
// shared machine it moves less than events/s. linger=2ms is the producer's linger before it
// became 500µs, for comparison.
//
//	go test ./bench -run '^$' -bench '^BenchmarkCollect$' -benchtime 100000x -count 6 | tee collect.txt
//	~/go/bin/benchstat -col /linger collect.txt
func BenchmarkCollect(b *testing.B) {
	for _, linger := range []time.Duration{0, 2 * time.Millisecond} {
		name := "linger=default"
		if linger > 0 {
			name = "linger=" + linger.String()
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			r, err := RunCollect(context.Background(), CollectConfig{Level: LevelKfake, Requests: int64(b.N), Duration: 1 << 62,
				Linger: linger, Warmup: 200 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			if got := int64(r.Extra["status_200"]); got != int64(b.N) {
				b.Fatalf("%d of %d requests accepted: %v", got, b.N, r.Extra)
			}
			b.ReportMetric(r.EventsPerS, "events/s")
			b.ReportMetric(r.EventsPerCoreS, "events/core-s")
			b.ReportMetric(r.LatencyP99*1e3, "p99-ms")
		})
	}
}

// TestCollectWorkload runs the workload briefly: every request accepted, figures filled. (Under
// -race it runs at a few hundred requests a second, so it counts requests, not time.)
func TestCollectWorkload(t *testing.T) {
	r, err := RunCollect(context.Background(), CollectConfig{Requests: 300, Clients: 8, Duration: time.Hour, Warmup: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Extra["status_200"] != 300 || r.Events != 3000 || r.LatencySamples != 300 || r.EventsPerS <= 0 {
		t.Fatalf("result %+v", r)
	}
}
