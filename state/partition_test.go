package state_test

import (
	"bytes"
	"maps"
	"testing"

	"github.com/dwellhq/dwell/state"
)

func TestPartitionRecordRoundTrip(t *testing.T) {
	next := map[string]int64{"events": 42, "clicks": 0, "b": 1 << 40}
	snap := []byte("sessionizer snapshot")
	rec := state.AppendPartitionRecord([]byte("prefix"), next, snap)
	got := map[string]int64{}
	rest, err := state.ParsePartitionRecord(rec[len("prefix"):], got)
	if err != nil || !bytes.Equal(rest, snap) || !maps.Equal(got, next) {
		t.Fatalf("round trip: %v, %q, %v; want %q, %v", err, rest, got, snap, next)
	}
	// Topics are written sorted, so equal maps give equal bytes (the changelog is compared byte for byte).
	if again := state.AppendPartitionRecord([]byte("prefix"), maps.Clone(next), snap); !bytes.Equal(again, rec) {
		t.Error("the same offsets encoded twice differ")
	}
	header := rec[len("prefix") : len(rec)-len(snap)]
	for i := range len(header) {
		if _, err := state.ParsePartitionRecord(header[:i], map[string]int64{}); err == nil {
			t.Errorf("a record cut to %d of its %d header bytes parses", i, len(header))
		}
	}
	if _, err := state.ParsePartitionRecord([]byte{3, 0}, map[string]int64{}); err == nil {
		t.Error("an unknown version parses")
	}
}

// TestPartitionRecordJobs: a partition's jobs' last fired times round-trip (version 2), a
// record without them stays version 1, and a version 1 record written before jobs restores
// with no job state.
func TestPartitionRecordJobs(t *testing.T) {
	next := map[string]int64{"events": 42}
	jobs := map[string]state.JobState{"digest": {Last: 1_767_229_200_000}, "tick": {}, "vip": {Last: 5, Sweep: 3_600_000, Cursor: "pann"}}
	snap := []byte("sessionizer snapshot")
	rec := state.AppendPartitionRecordJobs(nil, next, jobs, snap)
	gotNext, gotJobs := map[string]int64{}, map[string]state.JobState{}
	rest, err := state.ParsePartitionRecordJobs(rec, gotNext, gotJobs)
	if err != nil || !bytes.Equal(rest, snap) || !maps.Equal(gotNext, next) || !maps.Equal(gotJobs, jobs) {
		t.Fatalf("round trip: %v, %q, %v, %v", err, rest, gotNext, gotJobs)
	}
	if again := state.AppendPartitionRecordJobs(nil, next, maps.Clone(jobs), snap); !bytes.Equal(again, rec) {
		t.Error("the same job state encoded twice differs")
	}
	// The reader of offsets alone skips the job state.
	if rest, err := state.ParsePartitionRecord(rec, map[string]int64{}); err != nil || !bytes.Equal(rest, snap) {
		t.Fatalf("version 2 read without jobs: %v, %q", err, rest)
	}
	header := rec[:len(rec)-len(snap)]
	for i := range len(header) {
		if _, err := state.ParsePartitionRecordJobs(header[:i], map[string]int64{}, map[string]state.JobState{}); err == nil {
			t.Errorf("a record cut to %d of its %d header bytes parses", i, len(header))
		}
	}
	// No jobs: version 1, byte for byte what dwell wrote before jobs (format_test.go's golden).
	v1 := state.AppendPartitionRecordJobs(nil, next, nil, snap)
	if old := state.AppendPartitionRecord(nil, next, snap); v1[0] != 1 || !bytes.Equal(v1, old) {
		t.Fatalf("a record without jobs is %x, want version 1 %x", v1, old)
	}
	// A version 1 record from before jobs (format_test.go's bytes) restores with none.
	old := []byte("\x01\x03\x01b\x80\x80\x80\x80\x80\x20\x06clicks\x00\x06events\x2asnap")
	gotNext, gotJobs = map[string]int64{}, map[string]state.JobState{}
	if rest, err := state.ParsePartitionRecordJobs(old, gotNext, gotJobs); err != nil || string(rest) != "snap" || len(gotNext) != 3 || len(gotJobs) != 0 {
		t.Fatalf("version 1 record parses to %v, %v, %q, %v", gotNext, gotJobs, rest, err)
	}
}
