package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/dwellhq/dwell/operators"
)

// The changelog topic has as many partitions as the input; partition p holds the state of
// input partition p. Its records are keyed by state key ('p'+profile or 's'+session), so
// compaction keeps the latest record of each key; the value is a key record, or nil (a
// tombstone) for a forgotten key. The partition snapshot has the reserved key
// PartitionRecordKey, which no state key can equal. Kafka compresses record batches (zstd), so
// records are not compressed one by one.

// PartitionRecordKey is the changelog key of the partition snapshot.
var PartitionRecordKey = []byte("\x00partition")

// numTimers is the number of timer kinds a key record carries.
const numTimers = len(operators.Change{}.Deadlines)

const keyRecordVersion = 1

// AppendKeyRecord appends a key record: a version, the key's timer deadlines by kind (so the
// timer index can be maintained without decoding snapshots), and the key snapshot.
func AppendKeyRecord(dst []byte, deadlines [numTimers]int64, snapshot []byte) []byte {
	dst = append(dst, keyRecordVersion)
	for _, d := range deadlines {
		dst = binary.AppendUvarint(dst, uint64(d))
	}
	return append(dst, snapshot...)
}

var errRecord = errors.New("corrupt key record")

// ParseKeyRecord splits a key record; snapshot aliases b.
func ParseKeyRecord(b []byte) (deadlines [numTimers]int64, snapshot []byte, err error) {
	if len(b) == 0 || b[0] != keyRecordVersion {
		return deadlines, nil, errRecord
	}
	b = b[1:]
	for i := range deadlines {
		d, n := binary.Uvarint(b)
		if n <= 0 || d > 1<<62 {
			return deadlines, nil, errRecord
		}
		deadlines[i], b = int64(d), b[n:]
	}
	return deadlines, b, nil
}

// ChangelogRecord is one record of a partition's changelog topic.
type ChangelogRecord struct {
	Offset     int64
	Key, Value []byte // Value nil: a tombstone
}

// ChangeRecord returns the changelog key and value for a drained change; the value is nil
// (a tombstone) for a deleted key. The pipeline produces them in the cycle's transaction.
func ChangeRecord(c operators.Change, snapshot []byte) (key, value []byte) {
	if c.Deleted {
		return []byte(c.Key), nil
	}
	return []byte(c.Key), AppendKeyRecord(nil, c.Deadlines, snapshot)
}

// replayBatchRecords bounds the records applied per Pebble batch during a replay.
const replayBatchRecords = 10_000

// Replay applies changelog records, in offset order, to partition's stored state and moves its
// changelog offset past the last. Records below the stored offset are already applied and are
// skipped, so replaying from any earlier offset is safe. A partition restores by replaying the
// changelog from Load's ChangelogOffset (0 for an empty store) to the end, then loading.
func (s *Store) Replay(partition int32, recs []ChangelogRecord) error {
	from, err := s.changelogOffset(partition)
	if err != nil {
		return err
	}
	b := s.db.NewIndexedBatch()
	defer func() { b.Close() }()
	pending := 0
	commit := func(next int64) error {
		if err := b.Set(prefix(tagOffset, partition), binary.AppendUvarint(nil, uint64(next)+1), nil); err != nil {
			return err
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return fmt.Errorf("state: replaying partition %d: %w", partition, err)
		}
		b.Close()
		b = s.db.NewIndexedBatch()
		pending = 0
		return nil
	}
	for _, r := range recs {
		if r.Offset < from {
			continue
		}
		if err := s.applyRecord(b, partition, r); err != nil {
			return fmt.Errorf("state: partition %d changelog offset %d: %w", partition, r.Offset, err)
		}
		from = r.Offset + 1
		if pending++; pending == replayBatchRecords {
			if err := commit(from); err != nil {
				return err
			}
		}
	}
	if pending > 0 {
		return commit(from)
	}
	return nil
}

func (s *Store) applyRecord(b *pebble.Batch, partition int32, r ChangelogRecord) error {
	if bytes.Equal(r.Key, PartitionRecordKey) {
		if r.Value == nil {
			return b.Delete(prefix(tagPartition, partition), nil)
		}
		return b.Set(prefix(tagPartition, partition), r.Value, nil)
	}
	key := string(r.Key)
	var old, cur [numTimers]int64
	if v, closer, err := b.Get(keyKey(partition, key)); err == nil {
		old, _, err = ParseKeyRecord(v)
		closer.Close()
		if err != nil {
			return err
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return err
	}
	if r.Value == nil {
		if err := b.Delete(keyKey(partition, key), nil); err != nil {
			return err
		}
	} else {
		var err error
		if cur, _, err = ParseKeyRecord(r.Value); err != nil {
			return err
		}
		if err := b.Set(keyKey(partition, key), r.Value, nil); err != nil {
			return err
		}
	}
	return moveTimers(b, partition, key, old, cur)
}

func (s *Store) changelogOffset(partition int32) (int64, error) {
	v, closer, err := s.db.Get(prefix(tagOffset, partition))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	off, n := binary.Uvarint(v)
	if n <= 0 || off == 0 {
		return 0, fmt.Errorf("state: partition %d: corrupt changelog offset", partition)
	}
	return int64(off - 1), nil
}
