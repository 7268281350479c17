package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/cockroachdb/pebble/v2"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/wire"
)

// The changelog topic has as many partitions as the input; partition p holds the state of
// input partition p. Its records are keyed by state key ('p'+profile or 's'+session), so
// compaction keeps the latest record of each key; the value is a key record, or nil (a
// tombstone) for a forgotten key. The partition snapshot has the reserved key
// PartitionRecordKey, which no state key can equal. Kafka compresses record batches (zstd), so
// records are not compressed one by one.

// PartitionRecordKey is the changelog key of the partition snapshot.
var PartitionRecordKey = []byte("\x00partition")

// A partition snapshot holds the events waiting in the reorder buffer, so it grows with the
// input rate times max_out_of_orderness; a Kafka record is limited to about 1 MB (the broker's
// message.max.bytes and the producer's batch limit), and one too large fails every cycle. Past
// MaxPartitionChunk bytes the snapshot goes to the changelog as chunk records (keys
// PartitionChunkKey(i), written just before it, in the same transaction) and the partition
// record itself holds only a descriptor: chunkedMarker, the chunk count, the total length and a
// CRC-32C of the whole. Each cycle rewrites every chunk it names, so after compaction the
// latest chunk records are still the ones the latest descriptor names; stale chunks of a
// larger earlier snapshot are ignored. Unchunked values must not start with chunkedMarker.
const (
	MaxPartitionChunk = 512 << 10
	chunkedMarker     = 0xFF
)

// PartitionChunkKey is the changelog key of chunk i of the partition snapshot.
func PartitionChunkKey(i int) []byte {
	return binary.AppendUvarint([]byte("\x00partition-chunk-"), uint64(i))
}

func parseChunkKey(k []byte) (int, bool) {
	const p = "\x00partition-chunk-"
	if !bytes.HasPrefix(k, []byte(p)) {
		return 0, false
	}
	r := wire.NewReader(k[len(p):])
	i := r.UvarintMax(1 << 20)
	return int(i), r.Complete()
}

// PartitionRecords returns the changelog records (keys and values) that carry the partition
// snapshot value: the value itself under PartitionRecordKey when it fits in max bytes, else
// chunk records followed by a descriptor under PartitionRecordKey. The values are views into
// value.
func PartitionRecords(value []byte, max int) (keys, values [][]byte) {
	if len(value) <= max {
		return [][]byte{PartitionRecordKey}, [][]byte{value}
	}
	n := 0
	for off := 0; off < len(value); off += max {
		keys = append(keys, PartitionChunkKey(n))
		values = append(values, value[off:min(off+max, len(value))])
		n++
	}
	desc := []byte{chunkedMarker}
	desc = binary.AppendUvarint(desc, uint64(n))
	desc = binary.AppendUvarint(desc, uint64(len(value)))
	desc = binary.BigEndian.AppendUint32(desc, crc32.Checksum(value, castagnoli))
	return append(keys, PartitionRecordKey), append(values, desc)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// assemblePartition turns a partition record value into the snapshot: unchanged when it is not
// a descriptor, else the chunks it names, checked against its length and CRC.
func assemblePartition(v []byte, chunks map[int][]byte) ([]byte, error) {
	if len(v) == 0 || v[0] != chunkedMarker {
		return v, nil
	}
	r := wire.NewReader(v[1:])
	n, total, crc := r.UvarintMax(1<<20), r.UvarintMax(1<<40), r.Span(4)
	if !r.Complete() {
		return nil, errors.New("corrupt partition descriptor")
	}
	sum := binary.BigEndian.Uint32(crc)
	out := make([]byte, 0, total)
	for i := range int(n) {
		c, ok := chunks[i]
		if !ok {
			return nil, fmt.Errorf("partition snapshot chunk %d of %d missing from the changelog", i, n)
		}
		out = append(out, c...)
	}
	if uint64(len(out)) != total || crc32.Checksum(out, castagnoli) != sum {
		return nil, fmt.Errorf("partition snapshot chunks do not match their descriptor (%d bytes, want %d)", len(out), total)
	}
	return out, nil
}

// numTimers is the number of timer kinds a key record carries.
const numTimers = len(operators.Change{}.Deadlines)

// keyRecordVersion 2 carries four deadlines (TimerExt, rules' scheduled events, was added);
// version 1 records carry three and are still read.
const keyRecordVersion = 2

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
	if len(b) == 0 || b[0] != 1 && b[0] != keyRecordVersion {
		return deadlines, nil, errRecord
	}
	n := numTimers
	if b[0] == 1 {
		n = 3
	}
	r := wire.NewReader(b[1:])
	for i := range n {
		deadlines[i] = int64(r.UvarintMax(1 << 62))
	}
	if !r.Ok() {
		return deadlines, nil, errRecord
	}
	return deadlines, r.Rest(), nil
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
	from, stored, err := s.replayFrom(partition)
	if err != nil {
		return err
	}
	// A partition that holds nothing (a new store, or one just reset), and every partition
	// after a reset marker, has no key but those this replay writes: their deadlines are kept
	// here instead of read back from Pebble before each write (the timer index needs the old
	// ones), which is most of a replay's time.
	var known map[string][numTimers]int64
	if !stored {
		known = map[string][numTimers]int64{}
	}
	b := s.db.NewIndexedBatch()
	defer func() { b.Close() }()
	pending := 0
	commit := func(next int64) error {
		if err := b.Set(prefix(tagOffset, partition), offsetValue(next), nil); err != nil {
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
	// Chunks of a partition snapshot wait here for their descriptor; no batch commits while
	// some are pending, so a replay resumed from the stored offset never starts between them.
	chunks := map[int][]byte{}
	firstChunk := int64(-1)
	for _, r := range recs {
		if r.Offset < from {
			continue
		}
		if i, ok := parseChunkKey(r.Key); ok {
			if len(chunks) == 0 {
				firstChunk = r.Offset
			}
			chunks[i] = r.Value
			from = r.Offset + 1
			continue
		}
		if bytes.Equal(r.Key, ResetRecordKey) {
			clear(chunks) // a cycle cut short before the reset: its chunks are dropped with it
			known = map[string][numTimers]int64{}
		}
		if bytes.Equal(r.Key, PartitionRecordKey) && r.Value != nil {
			v, err := assemblePartition(r.Value, chunks)
			if err != nil {
				return fmt.Errorf("state: partition %d changelog offset %d: %w", partition, r.Offset, err)
			}
			r.Value = v
			clear(chunks)
		}
		if err := s.applyRecord(b, partition, r, known); err != nil {
			return fmt.Errorf("state: partition %d changelog offset %d: %w", partition, r.Offset, err)
		}
		from = r.Offset + 1
		if pending++; pending >= replayBatchRecords && len(chunks) == 0 {
			if err := commit(from); err != nil {
				return err
			}
		}
	}
	if len(chunks) > 0 {
		// Chunks without their descriptor (a cycle cut short): read them again next time.
		from = firstChunk
	}
	if pending > 0 {
		return commit(from)
	}
	return nil
}

// applyRecord applies r to the batch. known, if not nil, holds the deadlines of every key the
// partition has (see Replay), and is kept up to date.
func (s *Store) applyRecord(b *pebble.Batch, partition int32, r ChangelogRecord, known map[string][numTimers]int64) error {
	if bytes.Equal(r.Key, ResetRecordKey) {
		if r.Value == nil {
			return nil
		}
		if _, err := ParseResetMarker(r.Value); err != nil {
			return err
		}
		// Everything before the marker is the state before the reset.
		for _, tag := range []byte{tagKey, tagTimer, tagPartition} {
			start := prefix(tag, partition)
			if err := b.DeleteRange(start, prefixEnd(start), nil); err != nil {
				return err
			}
		}
		return b.Set(prefix(tagReset, partition), r.Value, nil)
	}
	if bytes.Equal(r.Key, PartitionRecordKey) {
		if r.Value == nil {
			return b.Delete(prefix(tagPartition, partition), nil)
		}
		return b.Set(prefix(tagPartition, partition), r.Value, nil)
	}
	key := string(r.Key)
	var old, cur [numTimers]int64
	if known != nil {
		old = known[key]
	} else if v, closer, err := b.Get(keyKey(partition, key)); err == nil {
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
		if known != nil {
			delete(known, key)
		}
	} else {
		var err error
		if cur, _, err = ParseKeyRecord(r.Value); err != nil {
			return err
		}
		if err := b.Set(keyKey(partition, key), r.Value, nil); err != nil {
			return err
		}
		if known != nil {
			known[key] = cur
		}
	}
	return moveTimers(b, partition, key, old, cur)
}

// replayFrom returns the changelog offset the stored state reflects and whether the partition
// holds anything: a partition with no stored offset holds nothing (Reset deletes it with the
// rest, and a cycle's batch writes it with the rest).
func (s *Store) replayFrom(partition int32) (int64, bool, error) {
	v, closer, err := s.db.Get(prefix(tagOffset, partition))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	off, ok := parseOffset(v)
	if !ok {
		return 0, false, fmt.Errorf("state: partition %d: corrupt changelog offset", partition)
	}
	return off, true, nil
}
