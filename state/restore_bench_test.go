package state_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/state"
)

// restoreFixture stores n keys, each a profile with an open visit and session, as a live
// partition's store would hold them, and returns the store and its changelog.
func restoreFixture(b *testing.B, n int) (*state.Store, []state.ChangelogRecord) {
	b.Helper()
	st, err := state.Open(state.Options{Dir: "db", FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	var out collect
	s, _ := operators.NewSessionizer(operators.Config{}, 0, &out)
	s.TrackChanges(true)
	for i := range n {
		v := fmt.Sprintf(`{"id":"e%d","type":"page-view","profile":"profile-%08d","session":"session-%08d","time":%d,"source":"web","context":{"page":{"url":"https://shop.example.com/p/%d"},"device":"mobile"}}`,
			i, i, i, 1_767_225_600_000+int64(i), i%500)
		s.Process(&operators.Record{Topic: "web", Offset: int64(i), Value: []byte(v), Timestamp: operators.NoTimestamp})
	}
	var log []state.ChangelogRecord
	bt := st.NewBatch(0)
	var buf []byte
	s.DrainChanges(func(c operators.Change) {
		buf, _ = s.AppendKeySnapshot(buf[:0], c.Key)
		if err := bt.PutKey(c, buf); err != nil {
			b.Fatal(err)
		}
		k, v := state.ChangeRecord(c, buf)
		log = append(log, state.ChangelogRecord{Offset: int64(len(log)), Key: k, Value: v})
	})
	if err := bt.PutPartition(s.AppendPartitionSnapshot(nil), int64(len(log))); err != nil {
		b.Fatal(err)
	}
	if err := bt.Commit(); err != nil {
		b.Fatal(err)
	}
	return st, log
}

// BenchmarkRestore measures restoring a partition: loading stored sessions from Pebble into a
// new sessionizer (sessions/s), and the heap each restored open session takes (key included).
//
//	go test ./state -run '^$' -bench Restore -benchtime 3x -count 3
func BenchmarkRestore(b *testing.B) {
	const n = 100_000
	st, _ := restoreFixture(b, n)
	defer st.Close()
	b.ReportAllocs()
	var heap float64
	restored := 0
	for b.Loop() {
		var out collect
		s, _ := operators.NewSessionizer(operators.Config{}, 0, &out)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := st.Load(0, func(snap []byte) error { return s.RestoreKey(snap) }); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		// The last events of the fixture wait in its reorder buffer, so a little under n
		// sessions are open.
		restored = s.Stats().OpenSessions
		if restored < n*9/10 {
			b.Fatalf("%d sessions restored, want about %d", restored, n)
		}
		heap = float64(after.HeapAlloc-before.HeapAlloc) / float64(restored)
		runtime.KeepAlive(s)
	}
	b.ReportMetric(float64(restored*b.N)/b.Elapsed().Seconds(), "sessions/s")
	b.ReportMetric(heap, "heap-B/session")
}

// BenchmarkReplay measures applying a changelog to an empty store (records/s): the restore of a
// partition whose local state was lost.
//
//	go test ./state -run '^$' -bench Replay -benchtime 3x -count 3
func BenchmarkReplay(b *testing.B) {
	const n = 100_000
	st, log := restoreFixture(b, n)
	st.Close()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		fresh, err := state.Open(state.Options{Dir: "db", FS: vfs.NewMem()})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := fresh.Replay(0, log); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		fresh.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(len(log)*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkRestoreFromSavepoint measures the restore of a partition after dwell reset rewound it
// to a savepoint, per key (keys/s): a store holding the old state replays the reset marker and
// the savepoint's records (a compacted changelog), then loads them into a new sessionizer.
//
//	go test ./state -run '^$' -bench RestoreFromSavepoint -benchtime 3x -count 3
func BenchmarkRestoreFromSavepoint(b *testing.B) {
	const n = 100_000
	st, sp := restoreFixture(b, n)
	st.Close()
	marker := state.AppendResetMarker(nil, state.ResetMarker{ID: "bench", Until: map[string]int64{"web": n}})
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		fresh, err := state.Open(state.Options{Dir: "db", FS: vfs.NewMem()})
		if err != nil {
			b.Fatal(err)
		}
		if err := fresh.Replay(0, sp); err != nil { // the old state
			b.Fatal(err)
		}
		log := []state.ChangelogRecord{{Offset: int64(len(sp)), Key: state.ResetRecordKey, Value: marker}}
		for _, r := range sp {
			log = append(log, state.ChangelogRecord{Offset: int64(len(log) + len(sp)), Key: r.Key, Value: r.Value})
		}
		b.StartTimer()
		if err := fresh.Replay(0, log); err != nil {
			b.Fatal(err)
		}
		var out collect
		s, _ := operators.NewSessionizer(operators.Config{}, 0, &out)
		p, err := fresh.Load(0, func(snap []byte) error { return s.RestoreKey(snap) })
		if err != nil || p.Keys != len(sp) {
			b.Fatalf("%d keys loaded of %d: %v", p.Keys, len(sp), err)
		}
		b.StopTimer()
		fresh.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(len(sp)*b.N)/b.Elapsed().Seconds(), "keys/s")
}
