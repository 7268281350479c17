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
// that its state holds, the state of each scheduled job the partition fires (JobState; version 2
// only), then the sessionizer's partition snapshot.
//
//	version byte (1) | uvarint topic count | per topic, sorted: uvarint len, name, uvarint next offset | snapshot
//	version byte (2) | the same topics | uvarint job count | per job, sorted: uvarint len, name,
//	                   varint last (Unix ms), varint sweep (Unix ms, 0: none), uvarint len, cursor | snapshot
//
// A partition without job state writes version 1, as dwell did before jobs, so its bytes do
// not change; both versions are read. The version byte is never chunkedMarker, so a whole
// record never reads as a chunk descriptor.
const (
	partitionRecordVersion     = 1
	partitionRecordVersionJobs = 2
)

// AppendPartitionRecord appends the partition record of next and the sessionizer snapshot snap.
func AppendPartitionRecord(dst []byte, next map[string]int64, snap []byte) []byte {
	return AppendPartitionRecordJobs(dst, next, nil, snap)
}

// JobState is what a partition keeps of one scheduled job: the time up to which its fires are
// decided (Last, Unix ms) and, while a for_each job's fire goes over the partition's keys, the
// fire's scheduled time (Sweep, 0: none) and the last key it reached (Cursor).
type JobState struct {
	Last, Sweep int64
	Cursor      string
}

// AppendPartitionRecordJobs appends the partition record of next, the jobs' states (by job
// name; none: a version 1 record) and the sessionizer snapshot snap.
func AppendPartitionRecordJobs(dst []byte, next map[string]int64, jobs map[string]JobState, snap []byte) []byte {
	version := byte(partitionRecordVersion)
	if len(jobs) > 0 {
		version = partitionRecordVersionJobs
	}
	dst = append(dst, version)
	dst = appendSorted(dst, next, func(dst []byte, v int64) []byte { return binary.AppendUvarint(dst, uint64(v)) })
	if version == partitionRecordVersionJobs {
		dst = appendSorted(dst, jobs, func(dst []byte, j JobState) []byte {
			dst = binary.AppendVarint(dst, j.Last)
			dst = binary.AppendVarint(dst, j.Sweep)
			return wire.AppendString(dst, j.Cursor)
		})
	}
	return append(dst, snap...)
}

func appendSorted[V any](dst []byte, m map[string]V, val func([]byte, V) []byte) []byte {
	names := make([]string, 0, len(m))
	for t := range m {
		names = append(names, t)
	}
	slices.Sort(names)
	dst = binary.AppendUvarint(dst, uint64(len(names)))
	for _, t := range names {
		dst = wire.AppendString(dst, t)
		dst = val(dst, m[t])
	}
	return dst
}

// ParsePartitionRecord fills next and returns the sessionizer snapshot (a view into b).
func ParsePartitionRecord(b []byte, next map[string]int64) ([]byte, error) {
	return ParsePartitionRecordJobs(b, next, nil)
}

// ParsePartitionRecordJobs fills next and jobs (when not nil; a version 1 record has no job
// state) and returns the sessionizer snapshot (a view into b).
func ParsePartitionRecordJobs(b []byte, next map[string]int64, jobs map[string]JobState) ([]byte, error) {
	errCorrupt := errors.New("state: corrupt partition record")
	if len(b) == 0 || b[0] != partitionRecordVersion && b[0] != partitionRecordVersionJobs {
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
	if b[0] == partitionRecordVersionJobs {
		n := r.UvarintMax(1 << 16)
		for range n {
			name := r.String()
			j := JobState{Last: r.Varint(), Sweep: r.Varint(), Cursor: r.String()}
			if !r.Ok() {
				return nil, errCorrupt
			}
			if jobs != nil {
				jobs[name] = j
			}
		}
	}
	if !r.Ok() {
		return nil, errCorrupt
	}
	return r.Rest(), nil
}
