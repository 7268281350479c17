package operators

import (
	"encoding/binary"
	"errors"
)

// This file is the persistence seam that state/ implements: the sessionizer reports which keys
// changed in a processing cycle, with their pending timer deadlines, and timers are persisted
// under keys whose byte order is deadline order, so that a restored partition reads its due
// timers with one ordered scan.

// TimerKind names one of a key's timers; each key has at most one pending deadline per kind.
type TimerKind uint8

const (
	// TimerSession closes the key's earliest-due open session.
	TimerSession TimerKind = timerSession
	// TimerVisit ends the key's open visit.
	TimerVisit TimerKind = timerVisit
	// TimerForget forgets a key unseen for profile_ttl (in memory and, through the index, in
	// the store).
	TimerForget TimerKind = timerForget
	// TimerExt is the key extension's next deadline (ext.go): rules' scheduled events.
	TimerExt TimerKind = timerExt
)

// Change describes a key changed since the last drain.
type Change struct {
	// Key is the state key: 'p' then the profile id, or 's' then the session id.
	Key string
	// Deadlines are the key's pending timer deadlines by kind (0: none).
	Deadlines [numTimers]int64
	// Persisted are the deadlines reported at the previous drain (or restored), which a timer
	// index must delete when they differ.
	Persisted [numTimers]int64
	// Deleted says the key was forgotten: delete its state and its Persisted timers.
	Deleted bool
}

// TrackChanges makes the sessionizer remember which keys change, for DrainChanges. A pipeline
// that persists state turns it on; offline runs leave it off and keep no such list.
func (s *Sessionizer) TrackChanges(on bool) { s.track = on }

// DrainChanges calls fn for every key changed since the last drain, in the order they first
// changed, and forgets them.
func (s *Sessionizer) DrainChanges(fn func(c Change)) {
	for i, k := range s.dirty {
		s.dirty[i] = nil
		if k.deleted {
			fn(Change{Key: k.key, Persisted: k.persisted, Deleted: true})
			s.release(k)
			continue
		}
		c := Change{Key: k.key, Deadlines: s.deadlines(k)}
		c.Persisted, k.persisted = k.persisted, c.Deadlines
		fn(c)
		k.dirty = false
	}
	s.dirty = s.dirty[:0]
	clear(s.forgotten)
}

// deadlines are k's real timer deadlines by kind (the wheel's may be earlier: timers are
// lazy).
func (s *Sessionizer) deadlines(k *keyState) (d [numTimers]int64) {
	if k.sessions != nil {
		d[timerSession] = s.firstSessionDeadline(k)
	}
	if k.visit != nil {
		d[timerVisit] = s.visitDeadline(k.visit)
	}
	if k.seen {
		d[timerForget] = k.lastSeen + s.ttl
	}
	d[timerExt] = k.extDeadline()
	return d
}

// timerKeyLen is the fixed prefix of a timer key: partition, deadline, kind.
const timerKeyLen = 4 + 8 + 1

// AppendTimerKey appends the persistent key of a timer: partition and deadline big-endian, then
// kind and state key, so that keys sort by (partition, deadline, kind, key), the order in which
// timers fire.
func AppendTimerKey(dst []byte, partition int32, deadline int64, kind TimerKind, key []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(partition))
	dst = binary.BigEndian.AppendUint64(dst, uint64(deadline))
	dst = append(dst, byte(kind))
	return append(dst, key...)
}

// ParseTimerKey splits a key made by AppendTimerKey; key aliases b.
func ParseTimerKey(b []byte) (partition int32, deadline int64, kind TimerKind, key []byte, err error) {
	if len(b) < timerKeyLen+1 {
		return 0, 0, 0, nil, errors.New("operators: timer key too short")
	}
	partition = int32(binary.BigEndian.Uint32(b))
	deadline = int64(binary.BigEndian.Uint64(b[4:]))
	kind = TimerKind(b[12])
	if kind > TimerExt || deadline < 0 {
		return 0, 0, 0, nil, errors.New("operators: malformed timer key")
	}
	return partition, deadline, kind, b[timerKeyLen:], nil
}
