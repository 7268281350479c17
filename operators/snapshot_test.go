package operators

import (
	"bytes"
	"encoding/hex"
	"fmt"
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
	for seed := range uint64(12) {
		rng := rand.New(rand.NewPCG(seed, 7))
		checkRestoreAnywhere(t, seed, genStream(rng, 300))
	}
}

// TestSnapshotRestoreBatches: the same with the records grouped in Tracardi batches (up to 4
// events each, with a batch-level source and context), so that elements wait in the reorder
// buffer and are restored from their persisted values.
func TestSnapshotRestoreBatches(t *testing.T) {
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 11))
		singles := genStream(rng, 400)
		var values [][]byte
		for len(singles) > 0 {
			n := min(len(singles), 1+rng.IntN(4))
			b := []byte(`{"source":{"id":"tracker"},"context":{"page":{"url":"https://shop.example.com/batch"}},"events":[`)
			for i, v := range singles[:n] {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, v...)
			}
			values = append(values, append(b, "]}"...))
			singles = singles[n:]
		}
		checkRestoreAnywhere(t, seed, values)
	}
}

func checkRestoreAnywhere(t *testing.T, seed uint64, values [][]byte) {
	t.Helper()
	cfg := Config{}
	{
		order := make([]int, len(values))
		for i := range order {
			order[i] = i
		}
		want := runStream(t, cfg, values, order)
		if !slices.ContainsFunc(want, func(l string) bool { return bytes.HasPrefix([]byte(l), []byte("event: ")) }) {
			t.Fatalf("seed %d: no events in the stream's output", seed)
		}
		n := len(values)
		for _, cut := range []int{0, 1, 7, 50, n/2 - 1, n / 2, n * 7 / 9, n - 1, n} {
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

// rawExt is a key extension that is its own encoding.
type rawExt []byte

func (x rawExt) NextDeadline() int64            { return 0 }
func (x rawExt) Empty() bool                    { return false }
func (x rawExt) AppendEncode(dst []byte) []byte { return append(dst, x...) }

// extSetter gives every key it sees an extension.
type extSetter struct{ s *Sessionizer }

func (e *extSetter) Emit(o *Output) {
	if o.Kind == KindEvent && e.s.Ext(o) == nil {
		e.s.SetExt(o, rawExt("ext"))
	}
}

// TestSnapshotFormat pins the bytes of a key snapshot (visit, two sessions, a key extension)
// and of a partition snapshot (buffered events): the store and the changelog hold them, so a
// change of encoding must be a new version, never new bytes under the old one.
func TestSnapshotFormat(t *testing.T) {
	const (
		wantKey = "02027070a0bfd5edee660e000102016280a0d5edee660002696e000480a0d5edee66a01f030202022f78022f7902776507646566" +
			"61756c7402056f746865720109706167652d76696577020002016101010002696e000080a0d5edee6600010100022f78022f7802" +
			"77650764656661756c740109706167652d766965770100016202010002696e0004d0afd5edee66d00f020100022f79022f790000" +
			"02056f746865720109706167652d76696577010003657874"
		wantPart = "01b08ad7edee66c0d8d7edee66050204056c617465720012ffffffffffffffffff012f7b2274797065223a2278222c2270726f66" +
			"696c65223a2271222c2274696d65223a313736373232353632303030307d05056c617465720014ffffffffffffffffff012f7b22" +
			"74797065223a2279222c2270726f66696c65223a2272222c2274696d65223a313736373232353631363030307d"
	)
	e := &extSetter{}
	s, _ := NewSessionizer(Config{}, 0, e)
	e.s = s
	s.SetExtDecoder(func(b []byte) (KeyExt, error) { return rawExt(bytes.Clone(b)), nil })
	s.TrackChanges(true)
	t0 := base.UnixMilli()
	for i, v := range []string{
		fmt.Sprintf(`{"type":"page-view","profile":"p","session":"a","time":%d,"context":{"page":{"url":"/x"},"device":"default"},"source":"we"}`, t0),
		fmt.Sprintf(`{"type":"page-view","profile":"p","session":"b","time":%d,"context":{"page":{"url":"/y"}}}`, t0+1000),
		fmt.Sprintf(`{"type":"other","profile":"p","session":"b","time":%d}`, t0+2000),
	} {
		s.Process(&Record{Topic: "in", Offset: int64(i), Value: []byte(v), Timestamp: NoTimestamp})
	}
	// The watermark passes p's events; q's and r's wait in the reorder buffer.
	s.Process(&Record{Topic: "later", Offset: 9, Value: []byte(fmt.Sprintf(`{"type":"x","profile":"q","time":%d}`, t0+20_000)), Timestamp: NoTimestamp})
	s.Process(&Record{Topic: "later", Offset: 10, Value: []byte(fmt.Sprintf(`{"type":"y","profile":"r","time":%d}`, t0+16_000)), Timestamp: NoTimestamp})
	key, ok := s.AppendKeySnapshot(nil, "pp")
	if !ok {
		t.Fatal("no snapshot of key pp")
	}
	part := s.AppendPartitionSnapshot(nil)
	if got := hex.EncodeToString(key); got != wantKey {
		t.Errorf("key snapshot:\n got %s\nwant %s", got, wantKey)
	}
	if got := hex.EncodeToString(part); got != wantPart {
		t.Errorf("partition snapshot:\n got %s\nwant %s", got, wantPart)
	}
	// The pinned bytes restore, and snapshot again to themselves.
	wk, _ := hex.DecodeString(wantKey)
	wp, _ := hex.DecodeString(wantPart)
	s2, _ := NewSessionizer(Config{}, 0, &lines{})
	s2.SetExtDecoder(func(b []byte) (KeyExt, error) { return rawExt(bytes.Clone(b)), nil })
	if err := s2.RestoreKey(wk); err != nil {
		t.Fatalf("pinned key snapshot: %v", err)
	}
	if err := s2.RestorePartition(wp); err != nil {
		t.Fatalf("pinned partition snapshot: %v", err)
	}
	if again, _ := s2.AppendKeySnapshot(nil, "pp"); !bytes.Equal(again, wk) {
		t.Errorf("pinned key snapshot re-encodes to %x", again)
	}
	if again := s2.AppendPartitionSnapshot(nil); !bytes.Equal(again, wp) {
		t.Errorf("pinned partition snapshot re-encodes to %x", again)
	}
}
