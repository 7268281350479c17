package operators

import (
	"fmt"
	"math"

	"github.com/dwellhq/dwell/operators/wire"
)

// Inspection: a read-only copy of one key's state, for interactive queries. It changes nothing
// in the sessionizer: a key that is not in memory is decoded from the cold store's snapshot
// without being loaded back (no eviction clock, no timers, no gauges touched). Like every
// method, it must be called on the goroutine that owns the sessionizer.

// KeyView is a copy of a key's state as Inspect found it. Its slices are its own; Ext is the
// key's extension itself (nil: none), which the caller must only read, and only until the
// sessionizer processes again.
type KeyView struct {
	Key string // the state key: 'p'+profile or 's'+session
	// LastEvent is the key's last event time (Unix ms); HasLastEvent says there is one.
	LastEvent    int64
	HasLastEvent bool
	// LastVisitEnd is the last activity of the key's most recent ended visit, if VisitEnded.
	LastVisitEnd int64
	VisitEnded   bool
	VisitSeq     uint64 // visits the key has had
	SessionSeq   uint64 // sessions the key has had
	Visit        *ActivityView
	Sessions     []ActivityView
	// Deadlines of the key's pending timers (Unix ms event time; 0: none).
	VisitDeadline, SessionDeadline, ForgetAt, ExtDeadline int64
	Ext                                                   KeyExt
	InMemory                                              bool // false: read from the cold store
}

// ActivityView is a copy of an open visit or session.
type ActivityView struct {
	ID        string // hex, as in the system events
	SessionID string // sessions: the input's session id; visits: the session of the latest event
	Deadline  int64  // when it ends if nothing more arrives (Unix ms event time)
	Cause     EventRefView
	Summary   Summary // its byte slices are copies
}

// EventRefView is a copy of an EventRef: the last event of an activity.
type EventRefView struct {
	ID        string
	Topic     string
	Partition int32
	Offset    int64
}

// Inspect returns a copy of the state of key (a state key, as Change.Key names it); ok is false
// when the sessionizer holds nothing for it, in memory or in the cold store.
func (s *Sessionizer) Inspect(key string) (v KeyView, ok bool, err error) {
	if k := s.keys[key]; k != nil {
		v = s.viewKey(k)
		v.InMemory = true
		return v, true, nil
	}
	if s.cold == nil {
		return KeyView{}, false, nil
	}
	if _, gone := s.forgotten[key]; gone {
		return KeyView{}, false, nil
	}
	b, ok, err := s.cold.LoadKey(key)
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("operators: partition %d: loading key %q: %w", s.partition, key, err)
		}
		return KeyView{}, false, err
	}
	k, err := s.decodeDetached(b)
	if err != nil {
		return KeyView{}, false, fmt.Errorf("operators: partition %d: reading key %q: %w", s.partition, key, err)
	}
	return s.viewKey(k), true, nil
}

func (s *Sessionizer) viewKey(k *keyState) KeyView {
	v := KeyView{
		Key: k.key, LastEvent: k.lastSeen, HasLastEvent: k.seen, LastVisitEnd: k.visitEnd, VisitEnded: k.ended,
		VisitSeq: k.visitSeq, SessionSeq: k.sessSeq, Ext: k.ext,
	}
	d := s.deadlines(k)
	v.SessionDeadline, v.VisitDeadline, v.ForgetAt, v.ExtDeadline = d[timerSession], d[timerVisit], d[timerForget], d[timerExt]
	if k.visit != nil {
		a := viewActivity(&k.visit.activity, k.visit.session)
		a.Deadline = s.visitDeadline(k.visit)
		v.Visit = &a
	}
	for ss := k.sessions; ss != nil; ss = ss.next {
		a := viewActivity(&ss.activity, ss.id)
		a.Deadline = s.sessionDeadline(ss)
		v.Sessions = append(v.Sessions, a)
	}
	return v
}

func viewActivity(a *activity, session []byte) ActivityView {
	sm := a.Summary
	sm.EntryURL = clone(sm.EntryURL)
	sm.ExitURL = clone(sm.ExitURL)
	sm.Source = clone(sm.Source)
	sm.Device = clone(sm.Device)
	sm.Types = nil
	if len(a.Types) > 0 {
		sm.Types = append([]TypeCount(nil), a.Types...)
	}
	return ActivityView{
		ID: string(a.id[:]), SessionID: string(session), Summary: sm,
		Cause: EventRefView{ID: string(a.cause.ID), Topic: a.cause.Topic, Partition: a.cause.Partition, Offset: a.cause.Offset},
	}
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte{}, b...)
}

// decodeDetached reads a key snapshot (AppendKeySnapshot) into a new key state that belongs to
// no map, wheel or pool of the sessionizer: the read-only twin of restoreKey.
func (s *Sessionizer) decodeDetached(b []byte) (*keyState, error) {
	r := wire.NewReader(b)
	version := r.Byte()
	if version != 1 && version != keySnapshotVersion {
		if !r.Ok() {
			return nil, errSnapshot
		}
		return nil, fmt.Errorf("operators: key snapshot version %d is not supported", version)
	}
	key := r.Bytes()
	k := &keyState{key: string(key)}
	k.lastSeen = readTime(&r)
	flags := r.Byte()
	k.visitEnd = r.Varint()
	k.visitSeq, k.sessSeq = r.Uvarint(), r.Uvarint()
	if !r.Ok() || len(key) < 2 || key[0] != 'p' && key[0] != 's' || flags > 15 || version == 1 && flags > 7 {
		return nil, errSnapshot
	}
	k.ended, k.seen = flags&1 != 0, flags&4 != 0
	if flags&2 != 0 {
		v := &visitState{}
		v.session = append([]byte(nil), r.Bytes()...)
		v.entryTime = r.Varint()
		s.readActivity(&r, &v.activity, k, 'v', nil, 0)
		k.visit = v
	}
	n := int(r.UvarintMax(uint64(min(s.cfg.MaxOpenSessions, math.MaxInt32))))
	var last *sessionState
	for range n {
		id := r.Bytes()
		if !r.Ok() || len(id) == 0 {
			return nil, errSnapshot
		}
		ss := &sessionState{id: append([]byte(nil), id...)}
		ss.seq, ss.countedIn = r.Uvarint(), r.Uvarint()
		s.readActivity(&r, &ss.activity, k, 's', ss.id, ss.seq)
		if last == nil {
			k.sessions = ss
		} else {
			last.next = ss
		}
		last = ss
		k.nsess++
	}
	if flags&8 != 0 {
		b := r.Bytes()
		if r.Ok() {
			x, err := s.decodeExt(b)
			if err != nil {
				return nil, err
			}
			k.ext = x
		}
	}
	if !r.Complete() {
		return nil, errSnapshot
	}
	return k, nil
}
