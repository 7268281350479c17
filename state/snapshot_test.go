package state_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/state"
)

// record is one changelog record, as strings for comparison.
type record struct{ key, value string }

// readAll reads sn to its end, maxBytes per call, and returns its records and the number of
// calls it took.
func readAll(t *testing.T, sn *state.Snapshot, maxBytes int) ([]record, int) {
	t.Helper()
	var out []record
	for calls := 1; ; calls++ {
		before := len(out)
		done, err := sn.Read(maxBytes, func(k, v []byte) error {
			out = append(out, record{string(k), string(v)})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if done {
			return out, calls
		}
		if len(out) == before {
			t.Fatalf("call %d read nothing and is not done", calls)
		}
	}
}

// TestSnapshotReadsTheStateAsTaken stores keys of two partitions and a partition record, takes
// a snapshot of one partition, then changes, deletes and adds keys and replaces the partition
// record. Read over many small calls must give exactly the state as taken, as a compacted
// changelog holds it: each key's record in key order, then the partition record (chunked when
// large); the changes after it and the other partition never show. Replaying those records
// into an empty store must give the same state back.
func TestSnapshotReadsTheStateAsTaken(t *testing.T) {
	for _, large := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", large), func(t *testing.T) {
			st := openMem(t, vfs.NewMem())
			defer st.Close()
			const n = 500
			var want []record
			put := func(partition int32, keys []string, tag string, part []byte, offset int64) {
				t.Helper()
				b := st.NewBatch(partition)
				for i, k := range keys {
					c := operators.Change{Key: k, Deadlines: [state.NumTimers]int64{int64(1000 + i), 0, int64(i), 0}}
					if err := b.PutKey(c, []byte(tag+k)); err != nil {
						t.Fatal(err)
					}
				}
				if err := b.PutPartition(part, offset); err != nil {
					t.Fatal(err)
				}
				if err := b.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			var keys []string
			for i := range n {
				keys = append(keys, fmt.Sprintf("p%06d-%s", i, strings.Repeat("x", i%40)))
			}
			part := state.AppendPartitionRecord(nil, map[string]int64{"events": 123, "other": 7}, []byte("sessionizer snapshot"))
			if large {
				part = state.AppendPartitionRecord(nil, map[string]int64{"events": 123}, bytes.Repeat([]byte("buffered event "), state.MaxPartitionChunk/6))
			}
			put(1, keys, "v1-", part, 42)
			put(0, keys[:50], "other-partition-", []byte{1, 0}, 9)
			put(2, keys[:50], "other-partition-", []byte{1, 0}, 9)
			for i, k := range keys {
				v := state.AppendKeyRecord(nil, [state.NumTimers]int64{int64(1000 + i), 0, int64(i), 0}, []byte("v1-"+k))
				want = append(want, record{k, string(v)})
			}
			pk, pv := state.PartitionRecords(part, state.MaxPartitionChunk)
			if large != (len(pk) > 1) {
				t.Fatalf("%d partition records, want chunks: %v", len(pk), large)
			}
			for i := range pk {
				want = append(want, record{string(pk[i]), string(pv[i])})
			}

			sn, err := st.Snapshot(1)
			if err != nil {
				t.Fatal(err)
			}
			defer sn.Close()
			if sn.ChangelogOffset() != 42 || !bytes.Equal(sn.Partition(), part) {
				t.Fatalf("snapshot offset %d, partition record of %d bytes; want 42 and %d bytes", sn.ChangelogOffset(), len(sn.Partition()), len(part))
			}

			// After the snapshot: keys changed, deleted and added, a new partition record.
			b := st.NewBatch(1)
			for i, k := range keys {
				c := operators.Change{Key: k, Persisted: [state.NumTimers]int64{int64(1000 + i), 0, int64(i), 0}}
				switch i % 3 {
				case 0:
					c.Deleted = true
				case 1:
					c.Deadlines[0] = 5
				default:
					continue
				}
				if err := b.PutKey(c, []byte("v2-"+k)); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.PutKey(operators.Change{Key: "p-added-later"}, []byte("v2")); err != nil {
				t.Fatal(err)
			}
			if err := b.PutPartition([]byte{1, 0, 'z'}, 99); err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}

			got, calls := readAll(t, sn, 1000)
			if !slices.Equal(got, want) {
				t.Fatalf("snapshot read %d records, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
			}
			if sn.Keys() != n {
				t.Fatalf("Keys() = %d, want %d", sn.Keys(), n)
			}
			if calls < 10 {
				t.Fatalf("read in %d calls with a 1000-byte budget: the budget is not applied", calls)
			}
			if done, err := sn.Read(1000, func(k, v []byte) error { t.Fatalf("record after the end: %q", k); return nil }); !done || err != nil {
				t.Fatalf("Read after the end: done %v, err %v", done, err)
			}

			// The records are a changelog: replayed into an empty store, they give the state back.
			fresh := openMem(t, vfs.NewMem())
			defer fresh.Close()
			var log []state.ChangelogRecord
			for i, r := range got {
				log = append(log, state.ChangelogRecord{Offset: int64(i), Key: []byte(r.key), Value: []byte(r.value)})
			}
			if err := fresh.Replay(1, log); err != nil {
				t.Fatal(err)
			}
			again, err := fresh.Snapshot(1)
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			if back, _ := readAll(t, again, 1<<20); !slices.Equal(back, want) {
				t.Fatalf("replayed state differs from the snapshot at record %d", firstDiff(back, want))
			}
			if !bytes.Equal(again.Partition(), part) {
				t.Fatal("replayed partition record differs")
			}
		})
	}
}

func firstDiff(a, b []record) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestSnapshotStopsAtAFailedRecord makes the callback fail on one record: Read returns the
// error, and the next call goes on with that record, so no record is lost or repeated.
func TestSnapshotStopsAtAFailedRecord(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer st.Close()
	b := st.NewBatch(0)
	for i := range 10 {
		if err := b.PutKey(operators.Change{Key: fmt.Sprintf("p%d", i)}, []byte("s")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.PutPartition([]byte{1, 0}, 10); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	sn, err := st.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	var keys []string
	failOn := "p4"
	for {
		done, err := sn.Read(1<<20, func(k, _ []byte) error {
			if string(k) == failOn {
				failOn = ""
				return fmt.Errorf("refused %s", k)
			}
			keys = append(keys, string(k))
			return nil
		})
		if err != nil {
			if !strings.Contains(err.Error(), "refused p4") {
				t.Fatal(err)
			}
			continue
		}
		if done {
			break
		}
	}
	want := []string{"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "\x00partition"}
	if !slices.Equal(keys, want) {
		t.Fatalf("read %q, want %q", keys, want)
	}
}

// TestSnapshotOfAnEmptyPartition: a partition with nothing stored has no partition record and
// no records.
func TestSnapshotOfAnEmptyPartition(t *testing.T) {
	st := openMem(t, vfs.NewMem())
	defer st.Close()
	sn, err := st.Snapshot(3)
	if err != nil {
		t.Fatal(err)
	}
	if sn.Partition() != nil || sn.ChangelogOffset() != -1 {
		t.Fatalf("empty partition: record %q, offset %d", sn.Partition(), sn.ChangelogOffset())
	}
	done, err := sn.Read(100, func(k, _ []byte) error { t.Fatalf("record %q", k); return nil })
	if !done || err != nil {
		t.Fatalf("done %v, err %v", done, err)
	}
	if err := errors.Join(sn.Close(), sn.Close()); err != nil {
		t.Fatal(err)
	}
}

// TestSavepointTime: the time of the last savepoint survives a reopen, per partition, and
// Reset deletes it.
func TestSavepointTime(t *testing.T) {
	fs := vfs.NewMem()
	st := openMem(t, fs)
	at := time.Date(2026, 3, 1, 12, 0, 0, 123e6, time.UTC)
	b := st.NewBatch(2)
	if err := b.PutSavepointTime(at); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openMem(t, fs)
	defer st.Close()
	if got, ok, err := st.SavepointTime(2); err != nil || !ok || !got.Equal(at) {
		t.Fatalf("SavepointTime(2) = %v, %v, %v; want %v", got, ok, err, at)
	}
	if _, ok, err := st.SavepointTime(1); ok || err != nil {
		t.Fatalf("partition 1 has a savepoint time (%v, %v)", ok, err)
	}
	if err := st.Reset(2); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.SavepointTime(2); ok || err != nil {
		t.Fatalf("after Reset: %v, %v", ok, err)
	}
}
