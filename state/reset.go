package state

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"

	"github.com/dwellhq/dwell/operators/wire"
)

// ResetRecordKey is the changelog key of a reset marker, which dwell reset writes to each
// partition of the changelog in the transaction that also rewinds the group's offsets. A
// replay of the changelog that meets one drops all the state it has built so far (everything
// before the marker belongs to the state before the reset), and goes on: the records after the
// marker (a savepoint's copy, or none when the state starts empty) are the state the rewound
// input offsets match. Compaction keeps the latest marker, after the records it supersedes.
// Like PartitionRecordKey it starts with a byte no state key starts with.
var ResetRecordKey = []byte("\x00reset")

// ResetMarker is the value of a reset marker.
//
//	version byte (1) | uvarint len, id | uvarint time (ms) | uvarint topic count |
//	per topic, sorted: uvarint len, name, uvarint offset
type ResetMarker struct {
	// ID names the reset. Every output written while the partition replays carries it (the
	// header dwell-replay).
	ID string
	// Time is when the reset was made (wall clock, Unix ms).
	Time int64
	// Until are the input offsets, per topic, that the group had reached before the reset:
	// while the partition's input is below them, it is replaying.
	Until map[string]int64
}

const resetMarkerVersion = 1

// AppendResetMarker appends m's encoding.
func AppendResetMarker(dst []byte, m ResetMarker) []byte {
	dst = append(dst, resetMarkerVersion)
	dst = wire.AppendString(dst, m.ID)
	dst = binary.AppendUvarint(dst, uint64(max(m.Time, 0)))
	topics := make([]string, 0, len(m.Until))
	for t := range m.Until {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	dst = binary.AppendUvarint(dst, uint64(len(topics)))
	for _, t := range topics {
		dst = wire.AppendString(dst, t)
		dst = binary.AppendUvarint(dst, uint64(max(m.Until[t], 0)))
	}
	return dst
}

// ParseResetMarker reads a reset marker.
func ParseResetMarker(b []byte) (ResetMarker, error) {
	errCorrupt := errors.New("state: corrupt reset marker")
	if len(b) == 0 || b[0] != resetMarkerVersion {
		return ResetMarker{}, errCorrupt
	}
	r := wire.NewReader(b[1:])
	m := ResetMarker{ID: r.String(), Time: int64(r.UvarintMax(math.MaxInt64)), Until: map[string]int64{}}
	n := r.UvarintMax(1 << 16)
	for range n {
		t, off := r.String(), r.UvarintMax(math.MaxInt64)
		if !r.Ok() {
			return ResetMarker{}, errCorrupt
		}
		m.Until[t] = int64(off)
	}
	if !r.Complete() {
		return ResetMarker{}, errCorrupt
	}
	return m, nil
}

// Replaying reports whether a partition whose state holds input up to next (the next offset
// per topic) is still below the offsets m's reset rewound from.
func (m ResetMarker) Replaying(next map[string]int64) bool {
	for t, until := range m.Until {
		if next[t] < until {
			return true
		}
	}
	return false
}
