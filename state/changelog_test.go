package state_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/state"
)

// compact keeps the last record of each key and drops tombstones, as Kafka's log compaction
// eventually does.
func compact(log []state.ChangelogRecord) []state.ChangelogRecord {
	last := map[string]int{}
	for i, r := range log {
		last[string(r.Key)] = i
	}
	var out []state.ChangelogRecord
	for i, r := range log {
		if last[string(r.Key)] == i && r.Value != nil {
			out = append(out, r)
		}
	}
	return out
}

// TestChangelogRestore: a run writes its changelog every cycle, but its local store stops
// committing after cycle 8 (a lagging local copy). After a crash at cycle 15 the partition is
// restored three ways - the lagging store plus the changelog tail, an empty store plus the whole
// changelog, an empty store plus the compacted changelog - and each continues to exactly the
// uninterrupted run's output, with the same timer index.
func TestChangelogRestore(t *testing.T) {
	recs := genRecords(t, 2500)
	cfg := operators.Config{ProfileTTL: 40 * time.Minute}
	var want collect
	ref, _ := operators.NewSessionizer(cfg, 0, &want)
	for i := range recs {
		ref.Process(&recs[i])
	}
	ref.Flush()

	const crashAfter, storeLagsAfter = 15, 8
	local := vfs.NewMem()
	stLocal := openMem(t, local)
	var before collect
	s, _ := operators.NewSessionizer(cfg, 0, &before)
	s.TrackChanges(true)
	var log []state.ChangelogRecord
	var buf []byte
	for cycle := 0; cycle <= crashAfter; cycle++ {
		for i := cycle * 100; i < (cycle+1)*100; i++ {
			s.Process(&recs[i])
		}
		b := stLocal.NewBatch(0)
		s.DrainChanges(func(c operators.Change) {
			buf, _ = s.AppendKeySnapshot(buf[:0], c.Key)
			k, v := state.ChangeRecord(c, buf)
			log = append(log, state.ChangelogRecord{Offset: int64(len(log)), Key: k, Value: v})
			if err := b.PutKey(c, buf); err != nil {
				t.Fatal(err)
			}
		})
		part := s.AppendPartitionSnapshot(nil)
		log = append(log, state.ChangelogRecord{Offset: int64(len(log)), Key: state.PartitionRecordKey, Value: part})
		if err := b.PutPartition(part, int64(len(log))); err != nil {
			t.Fatal(err)
		}
		if cycle <= storeLagsAfter {
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
		} else {
			b.Discard() // written to the changelog, lost locally
		}
	}
	if err := stLocal.Close(); err != nil {
		t.Fatal(err)
	}
	var tombstones int
	for _, r := range log {
		if r.Value == nil {
			tombstones++
		}
	}
	if tombstones == 0 {
		t.Fatal("the stream forgot no key: the changelog should carry tombstones")
	}

	indexes := map[string][]string{}
	for name, setup := range map[string]func() (*state.Store, []state.ChangelogRecord){
		"lagging store + tail": func() (*state.Store, []state.ChangelogRecord) { return openMem(t, local), log },
		"empty store + log":    func() (*state.Store, []state.ChangelogRecord) { return openMem(t, vfs.NewMem()), log },
		"empty store + compacted log": func() (*state.Store, []state.ChangelogRecord) {
			return openMem(t, vfs.NewMem()), compact(log)
		},
	} {
		st, clog := setup()
		p, err := st.Load(0, func([]byte) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		from := max(p.ChangelogOffset, 0)
		if name == "lagging store + tail" && (from == 0 || from >= int64(len(log))) {
			t.Fatalf("%s: the local store should be behind the changelog, at %d of %d", name, from, len(log))
		}
		if err := st.Replay(0, clog); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var after collect
		s2, _ := operators.NewSessionizer(cfg, 0, &after)
		p, err = st.Load(0, func(b []byte) error { return s2.RestoreKey(b) })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := s2.RestorePartition(p.Snapshot); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var index []string
		_ = st.DueTimers(0, 1<<62, func(d int64, kind operators.TimerKind, key []byte) error {
			index = append(index, string(key))
			return nil
		})
		indexes[name] = index
		for i := (crashAfter + 1) * 100; i < len(recs); i++ {
			s2.Process(&recs[i])
		}
		s2.Flush()
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		got := append(slices.Clone(before.lines), after.lines...)
		if !slices.Equal(got, want.lines) {
			for i := range min(len(got), len(want.lines)) {
				if got[i] != want.lines[i] {
					t.Fatalf("%s: output %d differs\n got: %s\nwant: %s", name, i, got[i], want.lines[i])
				}
			}
			t.Fatalf("%s: %d outputs, want %d", name, len(got), len(want.lines))
		}
	}
	first := indexes["empty store + log"]
	for name, idx := range indexes {
		if !slices.Equal(idx, first) {
			t.Fatalf("timer index after %q differs from a full replay's (%d vs %d entries)", name, len(idx), len(first))
		}
	}
}

func TestKeyRecordRoundTrip(t *testing.T) {
	d := [state.NumTimers]int64{5, 1 << 40, 0}
	rec := state.AppendKeyRecord(nil, d, []byte("snap"))
	got, snap, err := state.ParseKeyRecord(rec)
	if err != nil || got != d || string(snap) != "snap" {
		t.Fatalf("round trip: %v %q %v", got, snap, err)
	}
	for i := range rec[:len(rec)-4] {
		if _, _, err := state.ParseKeyRecord(rec[:i]); err == nil {
			t.Fatalf("truncated record (%d bytes) parsed", i)
		}
	}
}

// TestPartitionChunks: a partition snapshot larger than a Kafka record goes to the changelog as
// chunks plus a descriptor, and replay assembles it, also from a compacted changelog that
// still holds a stale chunk of an earlier, larger snapshot; a damaged chunk is an error.
func TestPartitionChunks(t *testing.T) {
	const max = 1000
	snapshot := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i*7)
		}
		b[0] = 1 // a partition record's version byte, never the chunk marker
		return b
	}
	var log []state.ChangelogRecord
	write := func(v []byte) {
		keys, values := state.PartitionRecords(v, max)
		for i := range keys {
			log = append(log, state.ChangelogRecord{Offset: int64(len(log)), Key: keys[i], Value: values[i]})
		}
	}
	replay := func(recs []state.ChangelogRecord) ([]byte, error) {
		st := openMem(t, vfs.NewMem())
		defer st.Close()
		if err := st.Replay(0, recs); err != nil {
			return nil, err
		}
		p, err := st.Load(0, func([]byte) error { return nil })
		return p.Snapshot, err
	}
	big, small, mid := snapshot(2500, 3), snapshot(400, 5), snapshot(1800, 9)
	if keys, _ := state.PartitionRecords(big, max); len(keys) != 4 {
		t.Fatalf("2500 bytes in %d records, want 3 chunks and a descriptor", len(keys))
	}
	for _, c := range []struct {
		name string
		vals [][]byte
	}{{"big", [][]byte{big}}, {"big then small", [][]byte{big, small}}, {"big then mid", [][]byte{big, mid}}} {
		log = nil
		for _, v := range c.vals {
			write(v)
		}
		want := c.vals[len(c.vals)-1]
		got, err := replay(log)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: replay gave %d bytes (%v), want %d", c.name, len(got), err, len(want))
		}
		// Compaction keeps the latest record of each key, in offset order.
		latest := map[string]state.ChangelogRecord{}
		for _, r := range log {
			latest[string(r.Key)] = r
		}
		var compacted []state.ChangelogRecord
		for _, r := range log {
			if latest[string(r.Key)].Offset == r.Offset {
				compacted = append(compacted, r)
			}
		}
		if got, err := replay(compacted); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s, compacted: replay gave %d bytes (%v), want %d", c.name, len(got), err, len(want))
		}
	}
	log = nil
	write(big)
	log[1].Value = append([]byte{log[1].Value[0] ^ 1}, log[1].Value[1:]...)
	if _, err := replay(log); err == nil || !strings.Contains(err.Error(), "descriptor") {
		t.Fatalf("a damaged chunk replayed without error (%v)", err)
	}
	if _, err := replay(log[1:]); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("a missing chunk replayed without error (%v)", err)
	}
}
