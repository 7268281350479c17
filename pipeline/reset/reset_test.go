package reset

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig is a Kafka with a generated input, and the processor's settings on it.
type rig struct {
	k     *pipelinetest.Env
	want  int // the offline run's system events
	input string
	cfg   pipeline.LiveConfig
	now   atomic.Int64
}

func newRig(t *testing.T, n int) *rig {
	d := pipeline.DefaultTopics()
	k := pipelinetest.New(t, 2, []string{"events", d.System, d.Events, d.Late, d.Dead, d.Changelog}, pipelinetest.Compacted(d.Changelog))
	r := &rig{k: k, input: k.Name("events")}
	r.cfg = pipeline.LiveConfig{Brokers: k.Brokers, Group: k.Name("dwell"), Inputs: []string{r.input}, DataDir: "data", FS: vfs.NewMem(),
		Topics: pipeline.Topics{System: k.Name(d.System), Events: k.Name(d.Events), Late: k.Name(d.Late), Dead: k.Name(d.Dead),
			Changelog: k.Name(d.Changelog)},
		Now: func() time.Time { return time.UnixMilli(r.now.Load()) }, PollTimeout: 50 * time.Millisecond, MaxPollRecords: 500}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.DefaultProduceTopic(r.input))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	g, err := bench.NewWeb(bench.WebConfig{Profiles: 200, Rate: 20, IdleEvery: n / 3, Jitter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	var lines [][]byte
	for range n {
		w := g.Next(nil)
		lines = append(lines, w.Value)
		recs = append(recs, &kgo.Record{Key: bytes.Clone(w.Key), Value: w.Value, Timestamp: time.UnixMilli(w.Timestamp)})
		r.now.Store(max(r.now.Load(), w.Timestamp+time.Hour.Milliseconds()))
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var sys bytes.Buffer
	if _, err := pipeline.RunOffline(context.Background(), pipeline.OfflineConfig{Partitions: 2},
		bytes.NewReader(bytes.Join(lines, []byte("\n"))), pipeline.OfflineOutputs{System: &sys}); err != nil {
		t.Fatal(err)
	}
	r.want = bytes.Count(sys.Bytes(), []byte("\n"))
	return r
}

// run processes until the group has consumed the input and want more system events than prior
// are committed, and returns, per partition, the system events added.
func (r *rig) run(t *testing.T, prior map[int32][]string, want int) map[int32][]string {
	l, err := pipeline.NewLive(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	pipelinetest.WaitFor(t, "the group to consume the input", 60*time.Second, func() bool { return pipelinetest.CaughtUp(t, r.k.Brokers, r.cfg.Group, r.input) })
	var all map[int32][]string
	pipelinetest.WaitFor(t, "the system events", 60*time.Second, func() bool {
		r.now.Add(time.Hour.Milliseconds()) // idle advancement ends what is open
		all = map[int32][]string{}
		n := 0
		for _, rec := range pipelinetest.ReadCommitted(t, r.k.Brokers, r.cfg.Topics.System) {
			all[rec.Partition] = append(all[rec.Partition], string(rec.Value))
			n++
		}
		for _, p := range prior {
			n -= len(p)
		}
		return n >= want
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	all = map[int32][]string{} // and what its last cycle committed
	for _, rec := range pipelinetest.ReadCommitted(t, r.k.Brokers, r.cfg.Topics.System) {
		all[rec.Partition] = append(all[rec.Partition], string(rec.Value))
	}
	for p, prev := range prior {
		all[p] = all[p][len(prev):]
	}
	return all
}

// TestResetKilledChangesNothing abandons a reset with its transaction open, as SIGKILL would:
// the group's offsets are unchanged, running the reset again completes it (aborting the open
// transaction at once), and the replay equals the first run.
func TestResetKilledChangesNothing(t *testing.T) {
	r := newRig(t, 3000)
	first := r.run(t, nil, r.want)
	count := 0
	for _, p := range first {
		count += len(p)
	}
	if count != r.want {
		t.Fatalf("first run: %d system events, the offline run %d", count, r.want)
	}
	cfg := Config{Brokers: r.k.Brokers, Group: r.cfg.Group, Changelog: r.cfg.Topics.Changelog, Inputs: []string{r.input},
		ToEarliest: true, Execute: true}
	killed := cfg
	killed.CrashBeforeCommit()
	if _, err := Run(context.Background(), killed, io.Discard); !errors.Is(err, ErrCrashed) {
		t.Fatalf("killed reset: %v", err)
	}
	if !pipelinetest.CaughtUp(t, r.k.Brokers, r.cfg.Group, r.input) {
		t.Fatal("a reset killed before its commit moved the group's offsets")
	}
	plan, err := Run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Partitions) != 2 {
		t.Fatalf("plan: %+v", plan)
	}
	second := r.run(t, first, count)
	for p, want := range first {
		for i := range min(len(want), len(second[p])) {
			if second[p][i] != want[i] {
				t.Fatalf("partition %d event %d differs:\n%.400s\n%.400s", p, i, second[p][i], want[i])
			}
		}
		if !slices.Equal(second[p], want) {
			t.Fatalf("partition %d: %d system events after the reset, %d the first time, or they differ", p, len(second[p]), len(want))
		}
	}
	t.Logf("%d system events replayed after a killed reset and a completed one equal the first run's", count)
}

// TestResetUsage: targets are exclusive, and the file format is checked before any broker.
func TestResetUsage(t *testing.T) {
	for _, c := range []Config{
		{Brokers: []string{"x:1"}, Group: "g"},
		{Brokers: []string{"x:1"}, Group: "g", ToEarliest: true, ByDuration: time.Hour},
		{Brokers: []string{"x:1"}, Group: "g", ByDuration: -time.Hour},
		{Brokers: []string{"x:1"}, ToEarliest: true},
		{Brokers: []string{"x:1"}, Group: "g", ToOffsets: "/nonexistent"},
	} {
		if _, err := Run(context.Background(), c, io.Discard); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", c, err)
		}
	}
}
