package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
	"github.com/dwellhq/dwell/pipeline/reset"
)

// startLive starts a processor on cfg; stop cancels it, requires Run to return nil and closes
// it.
func startLive(t *testing.T, cfg pipeline.LiveConfig) (stop func()) {
	t.Helper()
	l, err := pipeline.NewLive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// runUntilDrained runs a processor on cfg until every system event of the input (after prior,
// those committed before it started) is committed, stops it, and returns the committed
// system events it added.
func runUntilDrained(t *testing.T, e *liveEnv, cfg pipeline.LiveConfig, prior []*kgo.Record) []*kgo.Record {
	t.Helper()
	stop := startLive(t, cfg)
	pipelinetest.WaitFor(t, "the group to consume every record", 120*time.Second, func() bool { return pipelinetest.CaughtUp(t, e.brokers, e.group, e.input) })
	var got []*kgo.Record
	pipelinetest.WaitFor(t, "every system event", 120*time.Second, func() bool {
		e.now.Add(time.Minute.Milliseconds())
		got = pipelinetest.ReadCommitted(t, e.brokers, e.topics.System)
		return len(got) >= len(prior)+e.wantCount
	})
	stop()
	// Records come partition by partition in the order a fetch returns them: what this run
	// added is, per partition, what follows the records committed before it.
	seen := map[int32]int{}
	for _, r := range prior {
		seen[r.Partition]++
	}
	var added []*kgo.Record
	for _, r := range got {
		if seen[r.Partition] > 0 {
			seen[r.Partition]--
			continue
		}
		added = append(added, r)
	}
	return added
}

// byPartition is the values of recs per partition, in order.
func byPartition(recs []*kgo.Record) map[int32][]string {
	out := map[int32][]string{}
	for _, r := range recs {
		out[r.Partition] = append(out[r.Partition], string(r.Value))
	}
	return out
}

func (e *liveEnv) resetConfig() reset.Config {
	return reset.Config{Brokers: e.brokers, Group: e.group, Changelog: e.topics.Changelog,
		Savepoints: e.topics.Savepoints, SavepointData: e.topics.SavepointData, Inputs: []string{e.input},
		Now: func() time.Time { return time.UnixMilli(e.now.Load()) }}
}

// TestLiveResetToEarliest runs a stream through the processor, rewinds the group to the earliest
// offsets with dwell reset, and runs it again, on the same data dir and on an empty one: the
// system events of the replay equal the first run's, byte for byte and in the same order in
// every partition, and carry the reset's id in the dwell-replay header.
func TestLiveResetToEarliest(t *testing.T) {
	// 200k events; under the race detector (about ten times slower) 5k, while make test also
	// runs this test once without it, on the full stream.
	n := 200_000
	if pipeline.RaceEnabled {
		n = 5_000
	}
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("keep-data-dir=%v", keep), func(t *testing.T) {
			e := setupLive(t, bench.WebConfig{Profiles: 3000, Rate: 100, IdleEvery: n / 4, MalformedShare: 0.002, Jitter: time.Second}, n)
			cfg := e.config("data", vfs.NewMem())
			cfg.MaxPollRecords, cfg.MaxCachedKeys = 5000, 500
			first := runUntilDrained(t, e, cfg, nil)
			compareWithOffline(t, first, e, "first run")

			var plan bytes.Buffer
			rc := e.resetConfig()
			rc.ToEarliest = true
			if _, err := reset.Run(context.Background(), rc, &plan); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(plan.String(), "dry run") || !strings.Contains(plan.String(), "state emptied") {
				t.Fatalf("dry run plan:\n%s", plan.String())
			}
			if ps := replayOf(t, e); len(ps) > 0 {
				t.Fatalf("a dry run changed the group's offsets: %v", ps)
			}
			rc.Execute = true
			plan.Reset()
			p, err := reset.Run(context.Background(), rc, &plan)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("plan:\n%s", plan.String())
			for _, part := range p.Partitions {
				if m := part.Moves[0]; m.To != 0 || m.From <= 0 {
					t.Fatalf("partition %d: offsets %d -> %d, want the end -> 0", part.Partition, m.From, m.To)
				}
			}
			if !keep {
				cfg.FS = vfs.NewMem()
			}
			second := runUntilDrained(t, e, cfg, first)
			want, got := byPartition(first), byPartition(second)
			for part, w := range want {
				g := got[part]
				for i := range min(len(w), len(g)) {
					if g[i] != w[i] {
						t.Fatalf("partition %d event %d differs after the reset:\n%s\n%s", part, i, g[i], w[i])
					}
				}
				if len(g) != len(w) {
					t.Fatalf("partition %d: %d system events after the reset, %d before", part, len(g), len(w))
				}
			}
			replayed := 0
			for _, r := range second {
				for _, h := range r.Headers {
					if h.Key == pipeline.ReplayHeader {
						if string(h.Value) != p.ID {
							t.Fatalf("replay header %q, want %q", h.Value, p.ID)
						}
						replayed++
					}
				}
			}
			if replayed < len(second)/2 {
				t.Fatalf("%d of %d replayed system events carry the replay header", replayed, len(second))
			}
			t.Logf("%d system events replayed after the reset equal the first run's (%d with the replay header)", len(second), replayed)
		})
	}
}

// replayOf returns the input partitions whose committed offset is below the end.
func replayOf(t *testing.T, e *liveEnv) []int32 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(context.Background(), e.input)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(context.Background(), e.group)
	if err != nil {
		t.Fatal(err)
	}
	var out []int32
	ends.Each(func(o kadm.ListedOffset) {
		if c, ok := committed.Lookup(e.input, o.Partition); !ok || c.At < o.Offset {
			out = append(out, o.Partition)
		}
	})
	return out
}

// TestLiveResetRefusals: dwell reset refuses a group with a running member, naming it; dwell run
// refuses to start when the group's offsets were rewound without the state (as Kafka's own
// consumer-group tool does), naming the partition, both offsets and dwell reset.
func TestLiveResetRefusals(t *testing.T) {
	e := setupLive(t, bench.WebConfig{Profiles: 200, Rate: 20, IdleEvery: 1000, Jitter: time.Second}, 2000)
	cfg := e.config("data", vfs.NewMem())
	stop := startLive(t, cfg)
	pipelinetest.WaitFor(t, "the group to consume every record", 60*time.Second, func() bool { return pipelinetest.CaughtUp(t, e.brokers, e.group, e.input) })
	rc := e.resetConfig()
	rc.ToEarliest, rc.Execute = true, true
	_, err := reset.Run(context.Background(), rc, io.Discard)
	if !errors.Is(err, reset.ErrMembers) || !strings.Contains(err.Error(), "client") {
		t.Fatalf("reset with a running member: %v, want ErrMembers naming it", err)
	}
	stop()

	// Rewind the offsets alone, as kafka-consumer-groups --reset-offsets --to-earliest does.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var zero kadm.Offsets
	for p := range int32(livePartitions) {
		zero.AddOffset(e.input, p, 0, -1)
	}
	if _, err := adm.CommitOffsets(context.Background(), e.group, zero); err != nil {
		t.Fatal(err)
	}
	l, err := pipeline.NewLive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	err = l.Run(rctx)
	if !errors.Is(err, pipeline.ErrOffsetsBehindState) || !strings.Contains(err.Error(), "dwell reset") ||
		!strings.Contains(err.Error(), "committed offset 0") {
		t.Fatalf("run with offsets behind the state: %v, want ErrOffsetsBehindState naming the offsets and dwell reset", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLiveResetToDatetime runs a stream with savepoints written all along (the clock races),
// rewinds the group to a time in the middle of the input with dwell reset, and replays: each
// partition restarts from its newest savepoint at or before the time, and what the replay
// writes is exactly what the first run wrote after that savepoint, byte for byte and in order,
// so that the first run's output up to the savepoint followed by the replay is the first run's
// output again (no input counted twice, no profile created twice).
func TestLiveResetToDatetime(t *testing.T) {
	n := 60_000
	if pipeline.RaceEnabled {
		n = 6_000
	}
	d := pipeline.DefaultTopics()
	k := pipelinetest.New(t, livePartitions, []string{"events", d.System, d.Events, d.Late, d.Dead, d.Changelog, d.Savepoints, d.SavepointData},
		pipelinetest.Compacted(d.Changelog))
	e := &liveEnv{brokers: k.Brokers, input: k.Name("events"), group: k.Name("dwell"), now: new(atomic.Int64), k: k,
		topics: pipeline.Topics{System: k.Name(d.System), Events: k.Name(d.Events), Late: k.Name(d.Late),
			Dead: k.Name(d.Dead), Changelog: k.Name(d.Changelog), Savepoints: k.Name(d.Savepoints), SavepointData: k.Name(d.SavepointData)}}
	values := produceWeb(t, e.brokers, e.input, bench.WebConfig{Profiles: 2000, Rate: 50, IdleEvery: n / 4, Jitter: time.Second}, n)
	e.now.Store(streamEnd(t, values))
	cfg := e.config("data", vfs.NewMem())
	cfg.MaxPollRecords, cfg.MaxCachedKeys = n/60, 300 // many cycles, so many savepoints
	cfg.Operators.IdleTimeout = -time.Second          // the clock races: only event time ends visits
	cfg.SavepointInterval = time.Minute

	// run processes the input until the group has consumed it, with the wall clock racing so
	// that savepoints are written all along, and returns each partition's system events.
	run := func() map[int32][]string {
		stop := startLive(t, cfg)
		pipelinetest.WaitFor(t, "the group to consume every record", 120*time.Second, func() bool {
			e.now.Add(time.Minute.Milliseconds())
			return pipelinetest.CaughtUp(t, e.brokers, e.group, e.input)
		})
		// The racing clock also ran out the cycles' time budget (MaxCycleTime), so partitions
		// may still hold records the group has consumed: with the clock calm, wait until the
		// output stays the same for three seconds (cycles take well under a second).
		last, since := -1, time.Now()
		pipelinetest.WaitFor(t, "the held records to be processed", 120*time.Second, func() bool {
			n := len(pipelinetest.ReadCommitted(t, e.brokers, e.topics.System))
			if n != last {
				last, since = n, time.Now()
			}
			return time.Since(since) > 3*time.Second
		})
		stop()
		return byPartition(pipelinetest.ReadCommitted(t, e.brokers, e.topics.System))
	}
	first := run()

	// The median record time of the input.
	var times []int64
	for _, r := range pipelinetest.ReadCommitted(t, e.brokers, e.input) {
		times = append(times, r.Timestamp.UnixMilli())
	}
	slices.Sort(times)
	mid := time.UnixMilli(times[len(times)/2])
	rc := e.resetConfig()
	rc.ToDatetime, rc.Execute = mid, true
	var out bytes.Buffer
	p, err := reset.Run(context.Background(), rc, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan:\n%s", out.String())
	for _, part := range p.Partitions {
		if part.Savepoint == nil || part.Moves[0].To == 0 || part.Moves[0].To > part.Moves[0].Target {
			t.Fatalf("partition %d: want the state of a savepoint before the target, got %+v (savepoint %v)", part.Partition, part.Moves, part.Savepoint)
		}
	}
	cfg.FS = vfs.NewMem() // and an empty data dir: the state comes from the savepoint's copy
	all := run()
	for part, w := range first {
		replay := all[part][len(w):]
		if len(replay) == 0 || len(replay) >= len(w) {
			t.Fatalf("partition %d: the replay wrote %d system events, the first run %d: want a part of them", part, len(replay), len(w))
		}
		if suffix := w[len(w)-len(replay):]; !slices.Equal(replay, suffix) {
			for i := range replay {
				if replay[i] != suffix[i] {
					t.Fatalf("partition %d: replayed event %d differs from the first run's:\n%s\n%s", part, i, replay[i], suffix[i])
				}
			}
		}
	}
	t.Logf("every partition replayed from its savepoint exactly what the first run wrote after it")
}
