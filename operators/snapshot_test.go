package operators

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// snapshotAll snapshots every key s has changed since tracking began, and the partition.
func snapshotAll(t testing.TB, s *Sessionizer) (keys [][]byte, part []byte) {
	t.Helper()
	var names []string
	s.DrainChanges(func(c Change) { names = append(names, c.Key) })
	slices.Sort(names)
	for _, k := range names {
		b, ok := s.AppendKeySnapshot(nil, k)
		if !ok {
			t.Fatalf("changed key %q has no snapshot", k)
		}
		keys = append(keys, b)
	}
	return keys, s.AppendPartitionSnapshot(nil)
}

// TestSnapshotRestoreMatchesUninterrupted is the operator-level crash test: stop a run at any
// record, snapshot every key and the partition, restore them into a new sessionizer, feed it
// the remaining records, and the outputs before and after the cut must equal, byte for byte
// and in order, those of the uninterrupted run.
func TestSnapshotRestoreMatchesUninterrupted(t *testing.T) {
	cfg := Config{}
	for seed := range uint64(12) {
		rng := rand.New(rand.NewPCG(seed, 7))
		values := genStream(rng, 300)
		order := make([]int, len(values))
		for i := range order {
			order[i] = i
		}
		want := runStream(t, cfg, values, order)
		for _, cut := range []int{0, 1, 7, 50, 149, 150, 233, 299, 300} {
			var before, after lines
			before.raw, after.raw = true, true
			s1, _ := NewSessionizer(cfg, 0, &before)
			s1.TrackChanges(true)
			for i := range values[:cut] {
				s1.Process(&Record{Topic: "in", Offset: int64(i), Value: values[i], Timestamp: NoTimestamp})
			}
			keys, part := snapshotAll(t, s1)

			s2, _ := NewSessionizer(cfg, 0, &after)
			if err := s2.RestorePartition(part); err != nil {
				t.Fatalf("seed %d cut %d: %v", seed, cut, err)
			}
			for _, k := range keys {
				if err := s2.RestoreKey(k); err != nil {
					t.Fatalf("seed %d cut %d: restoring %q: %v", seed, cut, k, err)
				}
				// Restoring is lossless: the restored key snapshots to the same bytes.
				name := string(k[2 : 2+k[1]])
				if again, _ := s2.AppendKeySnapshot(nil, name); !bytes.Equal(again, k) {
					t.Fatalf("seed %d cut %d: key %q snapshots differently after restore", seed, cut, name)
				}
			}
			if st1, st2 := s1.Stats(), s2.Stats(); st2.OpenVisits != st1.OpenVisits || st2.OpenSessions != st1.OpenSessions || st2.Buffered != st1.Buffered {
				t.Fatalf("seed %d cut %d: restored gauges visits=%d sessions=%d buffered=%d, want %d %d %d", seed, cut,
					st2.OpenVisits, st2.OpenSessions, st2.Buffered, st1.OpenVisits, st1.OpenSessions, st1.Buffered)
			}
			if !bytes.Equal(s2.AppendPartitionSnapshot(nil), part) {
				t.Fatalf("seed %d cut %d: partition snapshots differently after restore", seed, cut)
			}
			for i := cut; i < len(values); i++ {
				s2.Process(&Record{Topic: "in", Offset: int64(i), Value: values[i], Timestamp: NoTimestamp})
			}
			s2.Flush()
			got := append(splitLines(before.b.String()), splitLines(after.b.String())...)
			if !slices.Equal(got, want) {
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						t.Fatalf("seed %d cut %d: output %d differs\n got: %s\nwant: %s", seed, cut, i, got[i], want[i])
					}
				}
				t.Fatalf("seed %d cut %d: %d outputs, want %d", seed, cut, len(got), len(want))
			}
		}
	}
}

func TestRestoreRejectsCorruptSnapshots(t *testing.T) {
	var out lines
	s, _ := NewSessionizer(Config{}, 0, &out)
	s.TrackChanges(true)
	s.Process(&Record{Topic: "in", Value: []byte(`{"type":"a","profile":"p","session":"s","time":1000,"context":{"page":{"url":"/x"}}}`), Timestamp: NoTimestamp})
	s.Process(&Record{Topic: "in", Offset: 1, Value: []byte(`{"type":"a","profile":"p","session":"s","time":9000}`), Timestamp: NoTimestamp})
	keys, part := snapshotAll(t, s)
	good := keys[0]
	for i := range good {
		s2, _ := NewSessionizer(Config{}, 0, &out)
		if err := s2.RestoreKey(good[:i]); err == nil {
			t.Fatalf("truncated key snapshot (%d of %d bytes) restored", i, len(good))
		}
		if s2.Stats().OpenVisits != 0 || s2.wheel.Len() != 0 {
			t.Fatalf("a failed restore left state behind")
		}
	}
	for i := range part {
		s2, _ := NewSessionizer(Config{}, 0, &out)
		if err := s2.RestorePartition(part[:i]); err == nil {
			t.Fatalf("truncated partition snapshot (%d of %d bytes) restored", i, len(part))
		}
	}
	if err := (&Sessionizer{}).RestoreKey([]byte{9}); err == nil {
		t.Fatal("unknown version restored")
	}
}

// FuzzRestoreKey: no input panics the snapshot decoder, and whatever it accepts snapshots and
// restores to the same state again.
func FuzzRestoreKey(f *testing.F) {
	var out lines
	s, _ := NewSessionizer(Config{}, 0, &out)
	s.TrackChanges(true)
	for i, v := range []string{
		`{"type":"page-view","profile":"p","session":"s","time":1000,"id":"a","context":{"page":{"url":"/x"},"device":"mobile"},"source":"web"}`,
		`{"type":"click","profile":"p","session":"t","time":2000}`,
		`{"type":"x","session":"anon","time":3000}`,
		`{"type":"x","profile":"q","time":20000}`,
	} {
		s.Process(&Record{Topic: "in", Offset: int64(i), Value: []byte(v), Timestamp: NoTimestamp})
	}
	keys, _ := snapshotAll(f, s)
	for _, k := range keys {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var out lines
		s, _ := NewSessionizer(Config{}, 0, &out)
		if s.RestoreKey(b) != nil {
			return
		}
		name := string(b[2 : 2+b[1]])
		if b[1] >= 0x80 { // a multi-byte length: find the key through the sessionizer instead
			for k := range s.keys {
				name = k
			}
		}
		snap, ok := s.AppendKeySnapshot(nil, name)
		if !ok {
			t.Fatalf("restored key %q is missing", name)
		}
		s2, _ := NewSessionizer(Config{}, 0, &out)
		if err := s2.RestoreKey(snap); err != nil {
			t.Fatalf("re-snapshot does not restore: %v", err)
		}
		if again, _ := s2.AppendKeySnapshot(nil, name); !bytes.Equal(again, snap) {
			t.Fatalf("snapshot not stable across restore")
		}
		s.Flush() // timers of restored state fire without trouble
	})
}
