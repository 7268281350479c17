package state_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/state"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type collect struct{ lines []string }

func (c *collect) Emit(o *operators.Output) {
	c.lines = append(c.lines, string(operators.AppendJSON(nil, o)))
}

func openMem(t *testing.T, fs vfs.FS) *state.Store {
	t.Helper()
	s, err := state.Open(state.Options{Dir: "db", FS: fs, CacheBytes: 8 << 20, MemTableBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func genRecords(t *testing.T, n int) []operators.Record {
	t.Helper()
	g, err := bench.NewWeb(bench.WebConfig{Profiles: 300, Rate: 5, MalformedShare: 0.01, LateShare: 0.01, IdleEvery: 700})
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]operators.Record, n)
	for i := range recs {
		r := g.Next(nil)
		recs[i] = operators.Record{Topic: "web", Offset: int64(i), Value: r.Value, Timestamp: r.Timestamp}
	}
	return recs
}

// persist writes one processing cycle: every changed key, the partition snapshot, and the
// offset of the next record (standing in for the changelog offset).
func persist(t *testing.T, st *state.Store, s *operators.Sessionizer, next int64) {
	t.Helper()
	b := st.NewBatch(0)
	var buf []byte
	s.DrainChanges(func(c operators.Change) {
		var ok bool
		if buf, ok = s.AppendKeySnapshot(buf[:0], c.Key); !ok && !c.Deleted {
			t.Fatalf("no snapshot for changed key %q", c.Key)
		}
		if err := b.PutKey(c, buf); err != nil {
			t.Fatal(err)
		}
	})
	if err := b.PutPartition(s.AppendPartitionSnapshot(nil), next); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestPersistReopenRestore runs a stream in cycles of 100 records, persisting each cycle;
// stops after some cycle; reopens the store, loads the partition into a new sessionizer and
// continues from the stored offset. The outputs must equal an uninterrupted run's.
func TestPersistReopenRestore(t *testing.T) {
	recs := genRecords(t, 3000)
	var want collect
	ref, _ := operators.NewSessionizer(operators.Config{}, 0, &want)
	for i := range recs {
		ref.Process(&recs[i])
	}
	ref.Flush()

	for _, stopAfter := range []int{1, 7, 19, 29} {
		fs := vfs.NewMem()
		st := openMem(t, fs)
		var got collect
		s, _ := operators.NewSessionizer(operators.Config{}, 0, &got)
		s.TrackChanges(true)
		for cycle := 0; cycle < stopAfter; cycle++ {
			for i := cycle * 100; i < (cycle+1)*100; i++ {
				s.Process(&recs[i])
			}
			persist(t, st, s, int64((cycle+1)*100))
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}

		st = openMem(t, fs)
		s2, _ := operators.NewSessionizer(operators.Config{}, 0, &got)
		var keySnaps [][]byte
		p, err := st.Load(0, func(b []byte) error {
			keySnaps = append(keySnaps, slices.Clone(b))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if p.ChangelogOffset != int64(stopAfter*100) || p.Keys != len(keySnaps) || p.Snapshot == nil {
			t.Fatalf("loaded offset %d, %d keys, snapshot %v; want offset %d", p.ChangelogOffset, p.Keys, p.Snapshot != nil, stopAfter*100)
		}
		if err := s2.RestorePartition(p.Snapshot); err != nil {
			t.Fatal(err)
		}
		for _, b := range keySnaps {
			if err := s2.RestoreKey(b); err != nil {
				t.Fatal(err)
			}
		}
		for i := p.ChangelogOffset; i < int64(len(recs)); i++ {
			s2.Process(&recs[i])
		}
		s2.Flush()
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.lines, want.lines) {
			for i := range min(len(got.lines), len(want.lines)) {
				if got.lines[i] != want.lines[i] {
					t.Fatalf("stop after %d cycles: output %d differs\n got: %s\nwant: %s", stopAfter, i, got.lines[i], want.lines[i])
				}
			}
			t.Fatalf("stop after %d cycles: %d outputs, want %d", stopAfter, len(got.lines), len(want.lines))
		}
	}
}

// TestTimerIndexFollowsDeadlines checks that the index holds exactly each key's current
// deadlines (old entries are deleted as deadlines move) and that DueTimers returns them in
// firing order.
func TestTimerIndexFollowsDeadlines(t *testing.T) {
	recs := genRecords(t, 2000)
	st := openMem(t, vfs.NewMem())
	defer st.Close()
	var out collect
	// A short profile_ttl, so keys are forgotten along the way and their entries must go.
	s, _ := operators.NewSessionizer(operators.Config{ProfileTTL: 40 * time.Minute}, 0, &out)
	s.TrackChanges(true)
	deleted := 0
	model := map[string][len(operators.Change{}.Deadlines)]int64{}
	for cycle := range 20 {
		for i := cycle * 100; i < (cycle+1)*100; i++ {
			s.Process(&recs[i])
		}
		b := st.NewBatch(0)
		var buf []byte
		s.DrainChanges(func(c operators.Change) {
			if prev := model[c.Key]; prev != c.Persisted {
				t.Fatalf("key %q: persisted %v, model %v", c.Key, c.Persisted, prev)
			}
			if c.Deleted {
				delete(model, c.Key)
				deleted++
			} else {
				model[c.Key] = c.Deadlines
			}
			buf, _ = s.AppendKeySnapshot(buf[:0], c.Key)
			if err := b.PutKey(c, buf); err != nil {
				t.Fatal(err)
			}
		})
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	type timer struct {
		d    int64
		kind operators.TimerKind
		key  string
	}
	var want []timer
	for k, ds := range model {
		for kind, d := range ds {
			if d != 0 {
				want = append(want, timer{d, operators.TimerKind(kind), k})
			}
		}
	}
	slices.SortFunc(want, func(a, b timer) int {
		if a.d != b.d {
			return int(a.d - b.d)
		}
		if a.kind != b.kind {
			return int(a.kind) - int(b.kind)
		}
		return strings.Compare(a.key, b.key)
	})
	if len(want) == 0 || deleted == 0 {
		t.Fatalf("%d pending timers, %d keys forgotten: the stream should give both", len(want), deleted)
	}
	var got []timer
	if err := st.DueTimers(0, want[len(want)-1].d+1, func(d int64, kind operators.TimerKind, key []byte) error {
		got = append(got, timer{d, kind, string(key)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("index holds %d timers, want %d (first got %v, want %v)", len(got), len(want), got[:min(3, len(got))], want[:3])
	}
	// Bounded scan: only timers due before the bound.
	mid := want[len(want)/2].d
	n := 0
	_ = st.DueTimers(0, mid, func(d int64, _ operators.TimerKind, _ []byte) error {
		if d >= mid {
			t.Fatalf("timer at %d returned for bound %d", d, mid)
		}
		n++
		return nil
	})
	if n == 0 || n >= len(want) {
		t.Fatalf("%d timers before the median deadline of %d", n, len(want))
	}
}

func TestResetIsPerPartition(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer st.Close()
	for p := range int32(3) {
		b := st.NewBatch(p)
		for i := range 10 {
			c := operators.Change{Key: fmt.Sprintf("pkey-%d", i), Deadlines: [len(operators.Change{}.Deadlines)]int64{0, int64(1000 + i)}}
			if err := b.PutKey(c, []byte{1}); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.PutPartition([]byte{1}, 42); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Reset(1); err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		part, err := st.Load(p, func([]byte) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		timers := 0
		_ = st.DueTimers(p, 1<<40, func(int64, operators.TimerKind, []byte) error { timers++; return nil })
		wantKeys, wantOff := 10, int64(42)
		if p == 1 {
			wantKeys, wantOff = 0, -1
		}
		if part.Keys != wantKeys || part.ChangelogOffset != wantOff || timers != wantKeys {
			t.Fatalf("partition %d after resetting 1: %d keys, %d timers, offset %d", p, part.Keys, timers, part.ChangelogOffset)
		}
	}
	if _, ok, _ := st.Get(0, "pkey-3"); !ok {
		t.Fatal("Get misses a stored key")
	}
	if _, ok, _ := st.Get(1, "pkey-3"); ok {
		t.Fatal("Get finds a key of a reset partition")
	}
}

func TestFormatVersionGuard(t *testing.T) {
	fs := vfs.NewMem()
	st := openMem(t, fs)
	if err := st.CorruptFormat(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := state.Open(state.Options{Dir: "db", FS: fs})
	if !errors.Is(err, state.ErrFormat) {
		t.Fatalf("opening a store of format 99: %v, want state.ErrFormat", err)
	}
	if _, err := state.Open(state.Options{}); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("no dir: %v", err)
	}
}

func TestHealth(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer st.Close()
	b := st.NewBatch(0)
	for i := range 1000 {
		_ = b.PutKey(operators.Change{Key: fmt.Sprintf("p%06d", i)}, make([]byte, 200))
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.Get(0, "p000500"); !ok || err != nil {
		t.Fatal("stored key not found")
	}
	h := st.Health()
	if h.CacheHits+h.CacheMisses < 0 || h.L0Files < 0 {
		t.Fatalf("implausible health %+v", h)
	}
}

// TestBoundedMemory processes a stream in cycles with at most maxKeys keys in memory: after
// each cycle's batch is stored, clean keys are evicted, and evicted keys come back from Pebble
// when an event or a timer needs them. The output must equal an all-in-memory run's.
func TestBoundedMemory(t *testing.T) {
	recs := genRecords(t, 4000)
	cfg := operators.Config{ProfileTTL: 3 * time.Hour}
	var want collect
	ref, _ := operators.NewSessionizer(cfg, 0, &want)
	for i := range recs {
		ref.Process(&recs[i])
	}
	ref.Flush()

	for _, maxKeys := range []int{0, 5, 50} {
		st := openMem(t, vfs.NewMem())
		var got collect
		s, _ := operators.NewSessionizer(cfg, 0, &got)
		s.SetColdStore(st.Cold(0))
		peak := 0
		for cycle := range 40 {
			for i := cycle * 100; i < (cycle+1)*100; i++ {
				s.Process(&recs[i])
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			persist(t, st, s, int64((cycle+1)*100))
			s.Evict(maxKeys)
			peak = max(peak, s.Stats().Keys)
			if s.Stats().Keys > maxKeys {
				t.Fatalf("max %d: %d keys in memory after Evict (all are clean)", maxKeys, s.Stats().Keys)
			}
		}
		s.Flush()
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		st.Close()
		stats := s.Stats()
		if stats.Evicted == 0 || stats.Loaded == 0 {
			t.Fatalf("max %d: evicted %d, loaded %d: the test must exercise both", maxKeys, stats.Evicted, stats.Loaded)
		}
		if !slices.Equal(got.lines, want.lines) {
			for i := range min(len(got.lines), len(want.lines)) {
				if got.lines[i] != want.lines[i] {
					t.Fatalf("max %d keys: output %d differs\n got: %s\nwant: %s", maxKeys, i, got.lines[i], want.lines[i])
				}
			}
			t.Fatalf("max %d keys: %d outputs, want %d", maxKeys, len(got.lines), len(want.lines))
		}
		t.Logf("max %d keys: evicted %d, loaded %d, %d outputs", maxKeys, stats.Evicted, stats.Loaded, len(got.lines))
	}
}

type failingCold struct{}

func (failingCold) LoadKey(string) ([]byte, bool, error) { return nil, false, errors.New("disk gone") }

// TestColdLoadErrorStops: a failed cold read stops the sessionizer with an error (the pipeline
// then aborts the cycle) instead of treating the key as new.
func TestColdLoadErrorStops(t *testing.T) {
	var out collect
	s, _ := operators.NewSessionizer(operators.Config{}, 0, &out)
	s.SetColdStore(failingCold{})
	s.Process(&operators.Record{Topic: "in", Value: []byte(`{"type":"a","profile":"p","time":1000}`), Timestamp: operators.NoTimestamp})
	s.Process(&operators.Record{Topic: "in", Offset: 1, Value: []byte(`{"type":"a","profile":"p","time":9000}`), Timestamp: operators.NoTimestamp})
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("Err() = %v, want the load error", err)
	}
	for _, l := range out.lines {
		if strings.Contains(l, "profile-created") {
			t.Fatalf("a key that could not be loaded was treated as new: %s", l)
		}
	}
}

// TestDisableWAL opens a store without a write-ahead log, as dwell process does for its
// temporary store: every kind of write works (the ones that sync included), and no WAL file is
// made.
func TestDisableWAL(t *testing.T) {
	fs := vfs.NewMem()
	st, err := state.Open(state.Options{Dir: "db", FS: fs, CacheBytes: 8 << 20, MemTableBytes: 4 << 20, DisableWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.InstanceID(); err != nil {
		t.Fatal(err)
	}
	b := st.NewBatch(0)
	if err := b.PutKey(operators.Change{Key: "pk"}, []byte("snapshot")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if snap, ok, err := st.Get(0, "pk"); err != nil || !ok || string(snap) != "snapshot" {
		t.Fatalf("Get: %q %v %v", snap, ok, err)
	}
	if err := st.Reset(0); err != nil {
		t.Fatal(err)
	}
	names, err := fs.List("db")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.HasSuffix(n, ".log") {
			continue
		}
		// Pebble still makes the file; nothing is written to it.
		fi, err := fs.Stat(fs.PathJoin("db", n))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != 0 {
			t.Errorf("the WAL %s holds %d bytes", n, fi.Size())
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}
