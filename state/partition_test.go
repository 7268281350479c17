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
	if _, err := state.ParsePartitionRecord([]byte{2, 0}, map[string]int64{}); err == nil {
		t.Error("an unknown version parses")
	}
}
