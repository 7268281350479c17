package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// TestLiveJobsExactlyOnce runs jobs that fire every second of an injected clock, one per input
// partition (so some move in every membership change), through two instances, one of which
// leaves (a rebalance, 2 -> 1), a crash of the other with a cycle in flight (its transaction
// never ends; it restarts on its Pebble), and a reload that removes one job and adds another.
// A read_committed consumer of the events output must see every scheduled second of every
// job exactly once, from its first fire to the end, and nothing of the removed job after the
// reload. About 5s on kfake.
func TestLiveJobsExactlyOnce(t *testing.T) {
	e := newLiveEnv(t)
	// One job per partition: names whose partition (JobPartition) covers them all.
	var names []string
	seen := map[int32]bool{}
	for i := 0; len(names) < livePartitions; i++ {
		n := fmt.Sprintf("tick-%d", i)
		if p := pipeline.JobPartition(n, livePartitions); !seen[p] {
			seen[p] = true
			names = append(names, n)
		}
	}
	ruleSet := func(jobs []string) *pipeline.RuleSet {
		y := "jobs:\n"
		for _, n := range jobs {
			y += fmt.Sprintf("  - {name: %s, every: 1s, emit: {type: tick}}\n", n)
		}
		rs, err := pipeline.ParseRuleSet([]byte(y), nil, rules.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	e.now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() + 500)
	// The clock runs 25 times faster than real time while the instances work.
	stopClock := make(chan struct{})
	clockDone := make(chan struct{})
	go func() {
		defer close(clockDone)
		for {
			select {
			case <-stopClock:
				return
			case <-time.After(10 * time.Millisecond):
				e.now.Add(250)
			}
		}
	}()
	var crash atomic.Bool
	type inst struct {
		l    *pipeline.Live
		stop context.CancelFunc
		done chan error
	}
	var reg *prometheus.Registry // the last instance's
	start := func(name string, fs vfs.FS) inst {
		cfg := e.config(name, fs)
		cfg.Rules = ruleSet(names)
		reg = prometheus.NewRegistry()
		cfg.Metrics = pipeline.NewMetrics(reg)
		cfg.ClientOpts = []kgo.Opt{kgo.TransactionTimeout(2 * time.Second)}
		l, err := pipeline.NewLive(cfg)
		if err != nil {
			t.Fatal(err)
		}
		l.SetCrashAt(func(point string) bool { return point == "before-end" && crash.CompareAndSwap(true, false) })
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		return inst{l, cancel, done}
	}
	stop := func(i inst) {
		i.stop()
		if err := <-i.done; err != nil {
			t.Fatal(err)
		}
		if err := i.l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	fired := func() map[string][]int64 {
		out := map[string][]int64{}
		for _, r := range pipelinetest.ReadCommitted(t, e.brokers, e.topics.Events) {
			var ev struct {
				Time string
				Job  *struct{ Name, Scheduled string }
			}
			if err := json.Unmarshal(r.Value, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Job == nil {
				continue
			}
			at, err := time.Parse(time.RFC3339, ev.Job.Scheduled)
			if err != nil {
				t.Fatal(err)
			}
			out[ev.Job.Name] = append(out[ev.Job.Name], at.UnixMilli())
		}
		return out
	}
	// waitFires waits until every job in jobs has fired at least up to the clock's time.
	waitFires := func(what string, jobs []string) {
		until := e.now.Load() - 1000
		pipelinetest.WaitFor(t, what, 60*time.Second, func() bool {
			f := fired()
			for _, n := range jobs {
				if len(f[n]) == 0 || slices.Max(f[n]) < until {
					return false
				}
			}
			return true
		})
	}

	fsA := vfs.NewMem()
	a, b := start("a", fsA), start("b", vfs.NewMem())
	waitFires("fires with two instances", names)
	stop(b) // 2 -> 1: b's partitions, and their jobs, move to a
	waitFires("fires after the rebalance", names)
	crash.Store(true)
	if err := <-a.done; err != pipeline.ErrCrashed {
		t.Fatalf("a: %v, want the crash", err)
	}
	if err := a.l.Abandon(); err != nil {
		t.Fatal(err)
	}
	a = start("a", fsA) // restarts on its own Pebble, from the changelog where it is behind
	waitFires("fires after the crash", names)
	// A reload removes the first job and adds another.
	before := e.now.Load()
	kept, added := names[1:], "added"
	if err := a.l.SetRules(ruleSet(append(slices.Clone(kept), added))); err != nil {
		t.Fatal(err)
	}
	removedAt := e.now.Load()
	waitFires("fires after the reload", append(slices.Clone(kept), added))
	close(stopClock)
	<-clockDone
	stop(a)

	f := fired()
	for _, n := range append(slices.Clone(names), added) {
		times := f[n]
		slices.Sort(times)
		for i := 1; i < len(times); i++ {
			if d := times[i] - times[i-1]; d != 1000 {
				t.Fatalf("job %s: fires at %s then %s: want every second exactly once", n,
					time.UnixMilli(times[i-1]).UTC().Format(time.RFC3339), time.UnixMilli(times[i]).UTC().Format(time.RFC3339))
			}
		}
		t.Logf("job %s: %d fires, each second once", n, len(times))
	}
	if last := slices.Max(f[names[0]]); last > removedAt {
		t.Errorf("removed job fired at %d, after the reload at %d", last, removedAt)
	}
	if first := slices.Min(f[added]); first <= before {
		t.Errorf("added job fired at %d, before it was added at %d", first, before)
	}
	// The restarted instance counted its fires of the added job, and their delays.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var fires, delays uint64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "dwell_job_fires_total":
				for _, l := range m.GetLabel() {
					if l.GetName() == "job" && l.GetValue() == added {
						fires += uint64(m.GetCounter().GetValue())
					}
				}
			case "dwell_job_fire_delay_seconds":
				delays += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if fires != uint64(len(f[added])) || delays < fires {
		t.Errorf("metrics: %d fires of %s counted, %d delays observed; want %d fires", fires, added, delays, len(f[added]))
	}
}

// TestLiveJobForEachOnce: a for_each job over every key of a partition set fires once per
// matching key at its scheduled time, across a crash in the middle of its sweep (2,000 keys a
// cycle per partition: the first cycles of the sweep commit, one aborts, the restart resumes
// from the committed cursor). Keys: 20k without -race (2.3s on kfake, 10s on a local Apache
// Kafka), 5k with it, or DWELL_TEST_FOREACH_KEYS.
func TestLiveJobForEachOnce(t *testing.T) {
	keys := 20_000
	if pipeline.RaceEnabled {
		keys = 5_000
	}
	if v := os.Getenv("DWELL_TEST_FOREACH_KEYS"); v != "" { // the 200k on a real broker
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("DWELL_TEST_FOREACH_KEYS: %v", err)
		}
		keys = n
	}
	e := newLiveEnv(t)
	rs, err := pipeline.ParseRuleSet([]byte(`
jobs:
  - name: vip-check
    every: 1h
    for_each: 'profile.traits.tier == "vip"'
    emit: {type: vip-check}
rules:
  - name: tier
    on: page-view
    actions:
      - set_trait: {name: tier, value: "{{.event.properties.tier}}"}
`), nil, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e.now.Store(t0.Add(10 * time.Second).UnixMilli())
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(e.input),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, keys)
	vip := 0
	for i := range recs {
		tier := "basic"
		if i%2 == 0 {
			tier, vip = "vip", vip+1
		}
		id := fmt.Sprintf("u%06d", i)
		v := fmt.Sprintf(`{"id":"e%d","type":"page-view","time":%d,"profile":"%s","properties":{"tier":"%s"}}`, i, t0.UnixMilli()+int64(i%1000), id, tier)
		recs[i] = &kgo.Record{Key: []byte(id), Value: []byte(v), Timestamp: t0}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fsA := vfs.NewMem()
	var jumped atomic.Bool
	var afterJump atomic.Int32
	start := func() (*pipeline.Live, chan error, context.CancelFunc) {
		cfg := e.config("a", fsA)
		cfg.Rules = rs
		cfg.ClientOpts = []kgo.Opt{kgo.TransactionTimeout(2 * time.Second)}
		l, err := pipeline.NewLive(cfg)
		if err != nil {
			t.Fatal(err)
		}
		l.SetCrashAt(func(point string) bool {
			// The second cycle after the clock passes 01:00: the sweep's first cycle has committed.
			return point == "before-end" && jumped.Load() && afterJump.Add(1) == 2
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		return l, done, cancel
	}
	l, done, cancel := start()
	pipelinetest.WaitFor(t, "every key processed", 60*time.Second, func() bool { return pipelinetest.CaughtUp(t, e.brokers, e.group, e.input) })
	e.now.Store(t0.Add(time.Hour + 10*time.Second).UnixMilli())
	jumped.Store(true)
	if err := <-done; err != pipeline.ErrCrashed {
		t.Fatalf("run: %v, want the crash", err)
	}
	cancel()
	if err := l.Abandon(); err != nil {
		t.Fatal(err)
	}
	l, done, cancel = start()
	count := func() (map[string]int, int) {
		per, n := map[string]int{}, 0
		for _, r := range pipelinetest.ReadCommitted(t, e.brokers, e.topics.Events) {
			if !strings.Contains(string(r.Value), `"job":{"name":"vip-check"`) {
				continue
			}
			per[string(r.Key)]++
			n++
		}
		return per, n
	}
	var per map[string]int
	pipelinetest.WaitFor(t, "a fire for every vip key", 60*time.Second+time.Duration(keys/2000)*time.Second, func() bool {
		var n int
		per, n = count()
		return n >= vip
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	per, n := count()
	for k, c := range per {
		if c != 1 {
			t.Fatalf("key %s: %d fires, want 1", k, c)
		}
	}
	if n != vip || len(per) != vip {
		t.Fatalf("%d fires over %d keys, want one for each of the %d vip keys", n, len(per), vip)
	}
	t.Logf("%d keys, %d vip: one fire each across a crash mid-sweep", keys, vip)
}
