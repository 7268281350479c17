package bench

import (
	"context"
	"flag"
	"runtime"
	"testing"

	"github.com/dwellhq/dwell/state"
)

var benchRestoreKeys = flag.Int("bench.restore-keys", 200_000, "keys in the restore benchmark's partition")

// TestRestoreWorkload runs the restore workload small: every key replays, restores with an
// open session, and reads back.
func TestRestoreWorkload(t *testing.T) {
	r, err := RunRestore(context.Background(), RestoreConfig{Keys: 5000, BuildBatch: 2000, ColdReads: 2000, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if r.Events != 5000 || r.ActiveSessions != 5000 || r.Extra["replay_records"] != 5000 || r.LatencySamples != 2000 {
		t.Fatalf("restored %d sessions (%d active), replayed %v records, %d cold reads; want 5000, 5000, 5000, 2000",
			r.Events, r.ActiveSessions, r.Extra["replay_records"], r.LatencySamples)
	}
}

// BenchmarkRestore times the restore workload's load phase: one op restores every key of a
// partition (-bench.restore-keys, each with an open visit and session) from Pebble on disk into
// a new sessionizer. Building the store (generating the changelog and replaying it, whose rate
// is reported once as replay-records/s), reopening it before each op (an empty block cache) and
// a collection before each op (so that each restore starts from the same heap, not the last
// op's garbage) are untimed; so are the cold reads and the heap per session, measured once
// after the loop.
//
//	go test ./bench -run '^$' -bench 'BenchmarkRestore$' -benchtime 3x -count 6 -bench.restore-keys 1000000
func BenchmarkRestore(b *testing.B) {
	cfg := RestoreConfig{Keys: *benchRestoreKeys, ColdReads: *benchRestoreKeys, Dir: b.TempDir()}
	cfg.EnsureDefaults()
	st, err := state.Open(state.Options{Dir: cfg.Dir})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if st != nil {
			st.Close()
		}
	}()
	replay, records, _, err := replayRestore(context.Background(), &cfg, st)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if st, err = reopen(st, cfg.Dir); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		b.StartTimer()
		if _, _, err := loadRestore(st, cfg.Keys); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cfg.Keys)*float64(b.N)/b.Elapsed().Seconds(), "sessions/s")
	b.ReportMetric(float64(records)/replay.wall.Seconds(), "replay-records/s")
	if st, err = reopen(st, cfg.Dir); err != nil {
		b.Fatal(err)
	}
	base := liveHeap()
	s, _, err := loadRestore(st, cfg.Keys)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(heapPerActive(base, cfg.Keys), "heap-B/session")
	runtime.KeepAlive(s)
	r := &Result{Extra: map[string]float64{}}
	if err := coldReads(st, &cfg, r); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(r.Extra["cold_reads_per_s"], "cold-reads/s")
}
