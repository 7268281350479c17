package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/dwellhq/dwell/operators/wire"
)

// Snapshot is a consistent, read-only view of one partition's stored state as it was when
// Store.Snapshot took it, read as the records a compacted changelog of that state holds: each
// key's record (the key, and the 'k' value as stored, which is the changelog's value) in key
// order, then the partition record (PartitionRecords: its chunks, then PartitionRecordKey).
// Writes after it was taken are not seen. The live processor reads one over many cycles to
// write a savepoint (pipeline/savepoint); it must be closed, read to the end or not: an open
// Pebble snapshot keeps the versions it sees from being compacted away.
//
// A Snapshot is used by one goroutine at a time.
type Snapshot struct {
	snap      *pebble.Snapshot
	partition int32
	// part is the partition record, nil when the partition has none (nothing was ever
	// committed for it); offset is the changelog offset the state reflects, -1 if none.
	part   []byte
	offset int64
	// next is the lower bound of the key records not read yet; nil once they all have been.
	next, last []byte
	// pkeys and pvalues are the partition record's changelog records; pnext the next to read.
	pkeys, pvalues [][]byte
	pnext          int
	keys           int64
}

// Snapshot takes a snapshot of partition's stored state. Close it when done.
func (s *Store) Snapshot(partition int32) (*Snapshot, error) {
	sn := &Snapshot{snap: s.db.NewSnapshot(), partition: partition, offset: -1, next: prefix(tagKey, partition)}
	for _, f := range []struct {
		tag byte
		get func(v []byte) error
	}{
		{tagPartition, func(v []byte) error { sn.part = bytes.Clone(v); return nil }},
		{tagOffset, func(v []byte) error {
			off, ok := parseOffset(v)
			if !ok {
				return errors.New("corrupt changelog offset")
			}
			sn.offset = off
			return nil
		}},
	} {
		v, closer, err := sn.snap.Get(prefix(f.tag, partition))
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err == nil {
			err = f.get(v)
			closer.Close()
		}
		if err != nil {
			_ = sn.snap.Close()
			return nil, fmt.Errorf("state: partition %d: snapshot: %w", partition, err)
		}
	}
	if sn.part != nil {
		sn.pkeys, sn.pvalues = PartitionRecords(sn.part, MaxPartitionChunk)
	}
	return sn, nil
}

// Partition is the partition record the snapshot holds (AppendPartitionRecord), nil if none:
// then the partition has no committed state. It is read last, after the keys.
func (sn *Snapshot) Partition() []byte { return sn.part }

// ChangelogOffset is the changelog offset the snapshot's state reflects (the offset after the
// last changelog record it includes), -1 if none is stored.
func (sn *Snapshot) ChangelogOffset() int64 { return sn.offset }

// Keys counts the key records read so far.
func (sn *Snapshot) Keys() int64 { return sn.keys }

// Read calls fn with the snapshot's next records, in order, until the keys' and values' bytes
// passed reach maxBytes (at least one record is passed), and reports whether every record has
// now been read. key and value are valid only during the call; an error of fn is returned as
// is, and the records after the one it failed on are read by the next call. Each call reads
// through its own Pebble iterator, closed before it returns, so that a snapshot read over many
// calls pins no memtable between them.
func (sn *Snapshot) Read(maxBytes int, fn func(key, value []byte) error) (done bool, err error) {
	n := 0
	if sn.next != nil {
		upper := prefixEnd(prefix(tagKey, sn.partition))
		it, err := sn.snap.NewIter(&pebble.IterOptions{LowerBound: sn.next, UpperBound: upper})
		if err != nil {
			return false, fmt.Errorf("state: partition %d: reading a snapshot: %w", sn.partition, err)
		}
		// The bounds stay untouched while the iterator is open; the next read starts just
		// after the last key read (sn.last, then with a zero byte appended).
		sn.last = sn.last[:0]
		ok := it.First()
		var ferr error
		for ; ok && (n == 0 || n < maxBytes); ok = it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				ferr = fmt.Errorf("state: partition %d: reading a snapshot: %w", sn.partition, err)
				break
			}
			k := it.Key()
			if ferr = fn(k[5:], v); ferr != nil {
				break
			}
			sn.keys++
			n += len(k) - 5 + len(v)
			sn.last = append(sn.last[:0], k...)
		}
		if err := it.Close(); err != nil && ferr == nil {
			ferr = fmt.Errorf("state: partition %d: reading a snapshot: %w", sn.partition, err)
		}
		switch {
		case !ok && ferr == nil:
			sn.next = nil
		case len(sn.last) > 0:
			sn.next, sn.last = append(sn.last, 0), sn.next[:0]
		}
		if ferr != nil {
			return false, ferr
		}
	}
	for sn.next == nil && sn.pnext < len(sn.pkeys) && (n == 0 || n < maxBytes) {
		k, v := sn.pkeys[sn.pnext], sn.pvalues[sn.pnext]
		if err := fn(k, v); err != nil {
			return false, err
		}
		sn.pnext++
		n += len(k) + len(v)
	}
	return sn.next == nil && sn.pnext == len(sn.pkeys), nil
}

// Close releases the snapshot. It may be called more than once.
func (sn *Snapshot) Close() error {
	if sn.snap == nil {
		return nil
	}
	err := sn.snap.Close()
	sn.snap = nil
	if err != nil {
		return fmt.Errorf("state: partition %d: closing a snapshot: %w", sn.partition, err)
	}
	return nil
}

// savepointTimeValue is the value of an 's' key: the time of the partition's last completed
// savepoint, Unix milliseconds plus one (so that a stored 0 reads as corrupt).
func savepointTimeValue(t time.Time) []byte {
	return binary.AppendUvarint(nil, uint64(max(t.UnixMilli(), 0))+1)
}

// PutSavepointTime records t as the time of the partition's last completed savepoint, so that
// a restarted processor keeps its savepoint interval.
func (b *Batch) PutSavepointTime(t time.Time) error {
	if err := b.b.Set(prefix(tagSavepoint, b.partition), savepointTimeValue(t), nil); err != nil {
		return fmt.Errorf("state: partition %d: writing the savepoint time: %w", b.partition, err)
	}
	return nil
}

// SavepointTime returns the time of the partition's last completed savepoint (PutSavepointTime),
// and false when none is recorded.
func (s *Store) SavepointTime(partition int32) (time.Time, bool, error) {
	v, closer, err := s.db.Get(prefix(tagSavepoint, partition))
	if errors.Is(err, pebble.ErrNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("state: partition %d: reading the savepoint time: %w", partition, err)
	}
	defer closer.Close()
	r := wire.NewReader(v)
	ms := r.Uvarint()
	if !r.Complete() || ms == 0 {
		return time.Time{}, false, fmt.Errorf("state: partition %d: corrupt savepoint time", partition)
	}
	return time.UnixMilli(int64(ms - 1)), true, nil
}
