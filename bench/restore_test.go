package bench

import (
	"context"
	"flag"
	"testing"
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

// BenchmarkRestore runs the restore workload once per op on disk: changelog replay into an
// empty Pebble store, restore of every key from Pebble, random cold reads.
//
//	go test ./bench -run '^$' -bench 'BenchmarkRestore$' -benchtime 1x -count 3 -bench.restore-keys 1000000
func BenchmarkRestore(b *testing.B) {
	var r *Result
	for b.Loop() {
		var err error
		if r, err = RunRestore(context.Background(), RestoreConfig{Keys: *benchRestoreKeys, ColdReads: *benchRestoreKeys, Dir: b.TempDir()}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(r.Extra["load_sessions_per_s"], "sessions/s")
	b.ReportMetric(r.Extra["replay_records_per_s"], "replay-records/s")
	b.ReportMetric(r.Extra["cold_reads_per_s"], "cold-reads/s")
	b.ReportMetric(r.HeapPerSession, "heap-B/session")
}
