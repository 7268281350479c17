package state

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"

	"github.com/dwellhq/dwell/operators/wire"
)

// A partition record is what the store and the changelog keep for a partition (the value of
// PartitionRecordKey, chunked by PartitionRecords when large): the next input offset per topic
// that its state holds, then the sessionizer's partition snapshot.
//
//	version byte (1) | uvarint topic count | per topic, sorted: uvarint len, name, uvarint next offset | snapshot
//
// The version byte is never chunkedMarker, so a whole record never reads as a chunk descriptor.
const partitionRecordVersion = 1

// AppendPartitionRecord appends the partition record of next and the sessionizer snapshot snap.
func AppendPartitionRecord(dst []byte, next map[string]int64, snap []byte) []byte {
	topics := make([]string, 0, len(next))
	for t := range next {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	dst = append(dst, partitionRecordVersion)
	dst = binary.AppendUvarint(dst, uint64(len(topics)))
	for _, t := range topics {
		dst = wire.AppendString(dst, t)
		dst = binary.AppendUvarint(dst, uint64(next[t]))
	}
	return append(dst, snap...)
}

// ParsePartitionRecord fills next and returns the sessionizer snapshot (a view into b).
func ParsePartitionRecord(b []byte, next map[string]int64) ([]byte, error) {
	errCorrupt := errors.New("state: corrupt partition record")
	if len(b) == 0 || b[0] != partitionRecordVersion {
		return nil, errCorrupt
	}
	r := wire.NewReader(b[1:])
	n := r.UvarintMax(1 << 16)
	for range n {
		topic, off := r.String(), r.UvarintMax(math.MaxInt64)
		if !r.Ok() {
			return nil, errCorrupt
		}
		next[topic] = int64(off)
	}
	if !r.Ok() {
		return nil, errCorrupt
	}
	return r.Rest(), nil
}
