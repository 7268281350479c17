package state_test

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/dwellhq/dwell/state"
)

// TestRecordFormats pins the bytes of the records the store and the changelog keep: key
// records, partition records, chunk keys and chunk descriptors. A change of encoding must be a
// new version, never new bytes under the old one.
func TestRecordFormats(t *testing.T) {
	check := func(what string, got []byte, want string) {
		t.Helper()
		if hex.EncodeToString(got) != want {
			t.Errorf("%s:\n got %x\nwant %s", what, got, want)
		}
	}
	d := [state.NumTimers]int64{5, 1 << 40, 0, 1_767_229_200_000}
	rec := state.AppendKeyRecord(nil, d, []byte("snap"))
	check("key record", rec, "02058080808080200080adc6b8b733736e6170")
	if got, snap, err := state.ParseKeyRecord(rec); err != nil || got != d || string(snap) != "snap" {
		t.Errorf("key record parses to %v, %q, %v", got, snap, err)
	}
	// Version 1 carried three deadlines.
	if got, snap, err := state.ParseKeyRecord([]byte("\x01\x05\x80\x01\x00snap")); err != nil || got != [state.NumTimers]int64{5, 128} || string(snap) != "snap" {
		t.Errorf("version 1 key record parses to %v, %q, %v", got, snap, err)
	}

	next := map[string]int64{"events": 42, "clicks": 0, "b": 1 << 40}
	part := state.AppendPartitionRecord(nil, next, []byte("snap"))
	check("partition record", part, "0103016280808080802006636c69636b7300066576656e74732a736e6170")
	got := map[string]int64{}
	if rest, err := state.ParsePartitionRecord(part, got); err != nil || string(rest) != "snap" || len(got) != 3 || got["b"] != 1<<40 {
		t.Errorf("partition record parses to %v, %q, %v", got, rest, err)
	}
	check("partition record with jobs", state.AppendPartitionRecordJobs(nil, map[string]int64{"events": 42}, map[string]state.JobState{"tick": {Last: 1_767_229_200_000}}, []byte("snap")),
		"0201066576656e74732a01047469636b80da8cf1ee660000736e6170")

	value := bytes.Repeat([]byte("0123456789"), 30)
	keys, values := state.PartitionRecords(value, 128)
	if len(keys) != 4 {
		t.Fatalf("%d records, want 3 chunks and a descriptor", len(keys))
	}
	check("chunk key 2", keys[2], "00706172746974696f6e2d6368756e6b2d02")
	check("partition record key", keys[3], "00706172746974696f6e")
	check("chunk descriptor", values[3], "ff03ac02e87d0194")
	if !bytes.Equal(bytes.Join(values[:3], nil), value) {
		t.Error("chunks do not add up to the value")
	}
}
