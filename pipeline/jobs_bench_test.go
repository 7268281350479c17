package pipeline

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/state"
)

type discardSink struct{}

func (discardSink) Emit(*operators.Output)                            {}
func (discardSink) Record(string, []byte, []byte, []kgo.RecordHeader) {}

// BenchmarkForEachSweep measures what a for_each job costs a partition's event throughput
// while it runs: cycles of 5,000 page views on a partition of 200k keys (at most 50k in
// memory, the rest in Pebble, as live), with and without a for_each job sweeping 2,000 keys a
// cycle (sweepKeys) whose condition matches every key, so that each swept key fires an event
// and runs the rules. The cycle is what a live worker does without Kafka: process, punctuate,
// fire jobs, write the changes to Pebble, evict.
//
//	go test ./pipeline -run - -bench ForEachSweep -benchtime 40x -count 3
func BenchmarkForEachSweep(b *testing.B) {
	const keys, cycle, maxInMemory = 200_000, 5_000, 50_000
	for _, withJob := range []bool{false, true} {
		b.Run(fmt.Sprintf("job=%v", withJob), func(b *testing.B) {
			y := "rules:\n  - {name: count, on: page-view, actions: [{increment: views}]}\n"
			if withJob {
				y += "jobs:\n  - {name: sweep, every: 1h, for_each: 'profile.counters.views >= 0', emit: {type: check}}\n"
			}
			rs, err := ParseRuleSet([]byte(y), nil, rules.Options{})
			if err != nil {
				b.Fatal(err)
			}
			st, err := state.Open(state.Options{Dir: "db", FS: vfs.NewMem(), CacheBytes: 64 << 20, MemTableBytes: 16 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			f := newFlow(rs, DefaultTopics(), 0, rules.LogNone, discardSink{})
			var opCfg operators.Config
			s, err := operators.NewSessionizer(opCfg, 0, f)
			if err != nil {
				b.Fatal(err)
			}
			f.setSessionizer(s)
			s.SetColdStore(st.Cold(0))
			f.nparts, f.sweepKeys = 1, sweepKeys
			f.jobState = map[string]state.JobState{}
			f.keysAfter = func(after string, n int, fn func(key []byte)) error { return st.KeysAfter(0, after, n, fn) }
			t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
			offset := int64(0)
			commit := func() {
				batch := st.NewBatch(0)
				var snap []byte
				s.DrainChanges(func(c operators.Change) {
					snap, _ = s.AppendKeySnapshot(snap[:0], c.Key)
					if err := batch.PutKey(c, snap); err != nil {
						b.Fatal(err)
					}
				})
				if err := batch.Commit(); err != nil {
					b.Fatal(err)
				}
				s.Evict(maxInMemory)
			}
			// Preload the keys, a cycle at a time.
			for i := range keys {
				v := fmt.Sprintf(`{"type":"page-view","time":%d,"profile":"u%07d"}`, t0+int64(i/100), i)
				s.Process(&operators.Record{Topic: "web", Offset: offset, Value: []byte(v), Timestamp: operators.NoTimestamp})
				offset++
				if i%cycle == cycle-1 {
					commit()
				}
			}
			commit()
			// Page views of random known profiles, a millisecond apart (bench.Web's shape; bench
			// imports pipeline, so it cannot be used here), enough for 64 cycles: run at most
			// -benchtime 64x, or they wrap around and turn late.
			rng := rand.New(rand.NewPCG(1, 2))
			recs := make([]operators.Record, cycle*64)
			for i := range recs {
				p := rng.IntN(keys)
				v := fmt.Sprintf(`{"type":"page-view","time":%d,"profile":"u%07d","session":"s%07d","context":{"page":{"url":"https://shop.example/p/%d"}},"properties":{"sku":"k%d"}}`,
					t0+keys/100+int64(i), p, p, i%500, i%97)
				recs[i] = operators.Record{Topic: "web", Value: []byte(v), Timestamp: operators.NoTimestamp}
			}
			now := t0 + keys/100 + int64(len(recs))
			swept := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				for j := range cycle {
					r := recs[(i*cycle+j)%len(recs)]
					r.Offset = offset
					offset++
					s.Process(&r)
				}
				s.Tick(time.UnixMilli(now))
				if withJob {
					// Keep a fire in progress for the whole run: a sweep that ends starts again.
					if js := f.jobState["sweep"]; js.Sweep == 0 {
						f.jobState["sweep"] = state.JobState{Last: now - 3_600_000, Sweep: now}
					}
					before := f.stats.Jobs
					f.fireJobs(now)
					swept += int(f.stats.Jobs - before)
				}
				commit()
			}
			b.ReportMetric(float64(b.N*cycle)/b.Elapsed().Seconds(), "events/s")
			if withJob {
				b.ReportMetric(float64(swept)/float64(b.N), "fires/cycle")
			}
		})
	}
}
