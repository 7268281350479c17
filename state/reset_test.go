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

// changelogOf runs recs through a fresh sessionizer in cycles of 100, appending to log the
// changelog records each cycle writes (from offset len(log)).
func changelogOf(t *testing.T, recs []operators.Record, log []state.ChangelogRecord) []state.ChangelogRecord {
	t.Helper()
	s, _ := operators.NewSessionizer(operators.Config{ProfileTTL: 40 * time.Minute}, 0, &collect{})
	s.TrackChanges(true)
	var buf []byte
	for i := range recs {
		s.Process(&recs[i])
		if i%100 != 99 && i != len(recs)-1 {
			continue
		}
		s.DrainChanges(func(c operators.Change) {
			buf, _ = s.AppendKeySnapshot(buf[:0], c.Key)
			k, v := state.ChangeRecord(c, buf)
			log = append(log, state.ChangelogRecord{Offset: int64(len(log)), Key: k, Value: bytes.Clone(v)})
		})
		part := state.AppendPartitionRecord(nil, map[string]int64{"events": recs[i].Offset + 1}, s.AppendPartitionSnapshot(nil))
		log = append(log, state.ChangelogRecord{Offset: int64(len(log)), Key: state.PartitionRecordKey, Value: part})
	}
	return log
}

// dump is what a store holds for partition 0: key records, the timer index, the partition record.
func dump(t *testing.T, st *state.Store) (keys []string, timers []string, part []byte) {
	t.Helper()
	p, err := st.Load(0, func(b []byte) error { keys = append(keys, string(b)); return nil })
	if err != nil {
		t.Fatal(err)
	}
	_ = st.DueTimers(0, 1<<62, func(d int64, kind operators.TimerKind, key []byte) error {
		timers = append(timers, string(key))
		return nil
	})
	slices.Sort(keys)
	return keys, timers, p.Snapshot
}

// TestReplayResetMarker: a changelog replay that meets a reset marker drops the state before
// it, whatever the store held (nothing, part of the old state, all of it), so the store holds
// exactly the state written after the marker, and remembers the marker.
func TestReplayResetMarker(t *testing.T) {
	recs := genRecords(t, 3000)
	old := changelogOf(t, recs[:2000], nil)
	marker := state.AppendResetMarker(nil, state.ResetMarker{ID: "reset-1", Time: 1, Until: map[string]int64{"events": 2000}})
	log := append(slices.Clone(old), state.ChangelogRecord{Offset: int64(len(old)), Key: state.ResetRecordKey, Value: marker})
	start := int64(len(log))
	log = changelogOf(t, recs[:1200], log) // the replay, from the start, so far

	want := openMem(t, vfs.NewMem())
	if err := want.Replay(0, changelogOf(t, recs[:1200], nil)); err != nil {
		t.Fatal(err)
	}
	wantKeys, wantTimers, wantPart := dump(t, want)
	if err := want.Close(); err != nil {
		t.Fatal(err)
	}
	if len(wantKeys) == 0 || len(wantTimers) == 0 {
		t.Fatal("the replayed state should have keys and timers")
	}
	for name, setup := range map[string]func(st *state.Store) []state.ChangelogRecord{
		"empty store":        func(*state.Store) []state.ChangelogRecord { return log },
		"compacted":          func(*state.Store) []state.ChangelogRecord { return compact(log) },
		"from the marker on": func(*state.Store) []state.ChangelogRecord { return log[start-1:] },
		"store with all the old state": func(st *state.Store) []state.ChangelogRecord {
			if err := st.Replay(0, old); err != nil {
				t.Fatal(err)
			}
			return log
		},
		"store with part of the old state": func(st *state.Store) []state.ChangelogRecord {
			if err := st.Replay(0, old[:len(old)/2]); err != nil {
				t.Fatal(err)
			}
			return log
		},
	} {
		st := openMem(t, vfs.NewMem())
		if err := st.Replay(0, setup(st)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		keys, timers, part := dump(t, st)
		if !slices.Equal(keys, wantKeys) || !slices.Equal(timers, wantTimers) || !bytes.Equal(part, wantPart) {
			t.Fatalf("%s: %d keys, %d timers after the replay, want %d and %d (partition record equal: %v)",
				name, len(keys), len(timers), len(wantKeys), len(wantTimers), bytes.Equal(part, wantPart))
		}
		p, err := st.Load(0, func([]byte) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		m, err := state.ParseResetMarker(p.Reset)
		if err != nil || m.ID != "reset-1" || !m.Replaying(map[string]int64{"events": 1200}) || m.Replaying(map[string]int64{"events": 2000}) {
			t.Fatalf("%s: reset marker %+v, %v", name, m, err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestResetMarkerRoundTrip(t *testing.T) {
	m := state.ResetMarker{ID: "reset-20261207T090000Z-abcdef", Time: 1765097200000, Until: map[string]int64{"a": 5, "b": 0}}
	b := state.AppendResetMarker(nil, m)
	got, err := state.ParseResetMarker(b)
	if err != nil || got.ID != m.ID || got.Time != m.Time || len(got.Until) != 2 || got.Until["a"] != 5 {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for i := range b {
		if _, err := state.ParseResetMarker(b[:i]); err == nil {
			t.Fatalf("a marker cut to %d bytes parsed", i)
		}
	}
}

// TestClaimApplication: a data dir holds one application's state and refuses another's.
func TestClaimApplication(t *testing.T) {
	fs := vfs.NewMem()
	st := openMem(t, fs)
	if err := st.ClaimApplication("shop", "data"); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openMem(t, fs)
	defer st.Close()
	if err := st.ClaimApplication("shop", "data"); err != nil {
		t.Fatalf("the same application again: %v", err)
	}
	err := st.ClaimApplication("blog", "data")
	if err == nil || !strings.Contains(err.Error(), `application "shop", not "blog"`) || !strings.Contains(err.Error(), "--application-id") {
		t.Fatalf("another application: %v", err)
	}
}
