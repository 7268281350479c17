package operators

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"

	"github.com/dwellhq/dwell/operators/wire"
)

// Snapshots are the durable form of a sessionizer's state, for state/ to write to Pebble and
// to the changelog: one per key (profile, visit and open sessions), and one per partition
// (watermark and the events waiting in the reorder buffer). Restoring every key snapshot and the
// partition snapshot into a new Sessionizer and feeding it the records after the snapshot gives
// exactly the output the original would have given.
//
// The encoding is versioned, compact (varints, no field names) and canonical; ids that derive
// from content (visit ids) are not stored but recomputed.

const (
	// keySnapshotVersion 2 added the key extension (flag 8); version 1 is still read.
	keySnapshotVersion = 2
	// partitionSnapshotVersion 2 adds the target watermark and the held records of a partition
	// that is behind (budget.go); a partition that is not is written as version 1, which is
	// still read.
	partitionSnapshotVersion = 2
	// maxSnapshotItems bounds counts read from a snapshot before allocating for them.
	maxSnapshotItems = 1 << 16
)

var errSnapshot = errors.New("operators: corrupt snapshot")

// AppendKeySnapshot appends the snapshot of the state key (as Change.Key names it) to dst. ok
// is false when the sessionizer holds nothing for key.
func (s *Sessionizer) AppendKeySnapshot(dst []byte, key string) (_ []byte, ok bool) {
	k := s.keys[key]
	if k == nil {
		return dst, false
	}
	dst = append(dst, keySnapshotVersion)
	dst = wire.AppendString(dst, k.key)
	dst = binary.AppendVarint(dst, k.lastSeen)
	flags := byte(0)
	if k.ended {
		flags |= 1
	}
	if k.visit != nil {
		flags |= 2
	}
	if k.seen {
		flags |= 4
	}
	if k.ext != nil {
		flags |= 8
	}
	dst = append(dst, flags)
	dst = binary.AppendVarint(dst, k.visitEnd)
	dst = binary.AppendUvarint(dst, k.visitSeq)
	dst = binary.AppendUvarint(dst, k.sessSeq)
	if v := k.visit; v != nil {
		dst = wire.AppendBytes(dst, v.session)
		dst = binary.AppendVarint(dst, v.entryTime)
		dst = appendActivity(dst, &v.activity)
	}
	dst = binary.AppendUvarint(dst, uint64(k.nsess))
	for ss := k.sessions; ss != nil; ss = ss.next {
		dst = wire.AppendBytes(dst, ss.id)
		dst = binary.AppendUvarint(dst, ss.seq)
		dst = binary.AppendUvarint(dst, ss.countedIn)
		dst = appendActivity(dst, &ss.activity)
	}
	if k.ext != nil {
		s.extBuf = k.ext.AppendEncode(s.extBuf[:0])
		dst = wire.AppendBytes(dst, s.extBuf)
	}
	return dst, true
}

func appendActivity(dst []byte, a *activity) []byte {
	if a.cause.ID != nil {
		dst = append(dst, 1)
		dst = wire.AppendBytes(dst, a.cause.ID)
	} else {
		dst = append(dst, 0)
	}
	dst = wire.AppendString(dst, a.cause.Topic)
	dst = binary.AppendVarint(dst, int64(a.cause.Partition))
	dst = binary.AppendVarint(dst, a.cause.Offset)
	sm := &a.Summary
	dst = binary.AppendVarint(dst, sm.StartedAt)
	dst = binary.AppendVarint(dst, sm.LastActivity-sm.StartedAt)
	dst = binary.AppendUvarint(dst, uint64(sm.EventCount))
	dst = binary.AppendUvarint(dst, uint64(sm.PageViewCount))
	dst = binary.AppendUvarint(dst, uint64(sm.SessionCount))
	dst = wire.AppendBytes(dst, sm.EntryURL)
	dst = wire.AppendBytes(dst, sm.ExitURL)
	dst = wire.AppendBytes(dst, sm.Source)
	dst = wire.AppendBytes(dst, sm.Device)
	dst = binary.AppendUvarint(dst, uint64(len(sm.Types)))
	for _, tc := range sm.Types {
		dst = wire.AppendString(dst, tc.Type)
		dst = binary.AppendUvarint(dst, uint64(tc.Count))
	}
	return binary.AppendUvarint(dst, uint64(sm.OtherTypes))
}

// readTime reads an event time, which must lie in the range the sessionizer accepts.
func readTime(r *wire.Reader) int64 {
	t := r.Varint()
	if t < 0 || t > maxTime {
		r.Fail()
	}
	return t
}

// RestoreKey installs a key snapshot made by AppendKeySnapshot, replacing what the sessionizer
// holds for that key, and arms its timers. Call it before processing records that follow the
// snapshot. b is not retained.
func (s *Sessionizer) RestoreKey(b []byte) error { return s.restoreKey(b, true) }

// restoreKey installs a key snapshot; count says whether its open visit and sessions are new
// to the gauges (a partition restore) or were counted while the key was evicted.
func (s *Sessionizer) restoreKey(b []byte, count bool) error {
	r := wire.NewReader(b)
	version := r.Byte()
	if version != 1 && version != keySnapshotVersion {
		if !r.Ok() {
			return errSnapshot
		}
		return fmt.Errorf("operators: key snapshot version %d is not supported", version)
	}
	key := r.Bytes()
	lastSeen := readTime(&r)
	flags := r.Byte()
	visitEnd := r.Varint()
	visitSeq, sessSeq := r.Uvarint(), r.Uvarint()
	if !r.Ok() || len(key) < 2 || key[0] != 'p' && key[0] != 's' || flags > 15 || version == 1 && flags > 7 {
		return errSnapshot
	}
	k := s.keys[string(key)]
	if k == nil {
		k = s.create(key)
	} else {
		s.dropKeyState(k)
	}
	k.lastSeen, k.visitEnd, k.ended, k.seen = lastSeen, visitEnd, flags&1 != 0, flags&4 != 0
	k.visitSeq, k.sessSeq = visitSeq, sessSeq
	if flags&2 != 0 {
		v := s.newVisit()
		v.session = append(v.session[:0], r.Bytes()...)
		v.entryTime = r.Varint()
		s.readActivity(&r, &v.activity, k, 'v', nil, 0)
		k.visit = v
		if count {
			s.stats.OpenVisits++
		}
	}
	n := int(r.UvarintMax(uint64(s.cfg.MaxOpenSessions)))
	for range n {
		id := r.Bytes()
		if !r.Ok() || len(id) == 0 {
			r.Fail()
			break
		}
		ss := s.newSession()
		ss.id = append(ss.id[:0], id...)
		ss.seq, ss.countedIn = r.Uvarint(), r.Uvarint()
		s.readActivity(&r, &ss.activity, k, 's', ss.id, ss.seq)
		k.addSession(ss)
		if count {
			s.stats.OpenSessions++
		}
	}
	var extErr error
	if flags&8 != 0 {
		b := r.Bytes()
		if r.Ok() {
			k.ext, extErr = s.decodeExt(b)
		}
	}
	err := extErr
	if !r.Complete() {
		err = errSnapshot
	}
	if err != nil {
		visits, sessions := s.stats.OpenVisits, s.stats.OpenSessions
		s.dropKeyState(k)
		if !count {
			s.stats.OpenVisits, s.stats.OpenSessions = visits, sessions
		}
		return err
	}
	k.persisted = s.deadlines(k)
	pending := s.extLeftPending(k.persisted[timerExt]) // loaded back during the final flush
	for i, d := range k.persisted {
		if d != 0 && !(pending && (i == timerExt || i == timerForget)) {
			s.arm(&k.timers[i], d)
		}
	}
	return nil
}

// dropKeyState releases k's visit and sessions and cancels its timers.
func (s *Sessionizer) dropKeyState(k *keyState) {
	if k.visit != nil {
		s.freeVisit = append(s.freeVisit, k.visit)
		k.visit = nil
		s.stats.OpenVisits--
	}
	for ss := k.sessions; ss != nil; {
		next := ss.next
		ss.next = nil
		s.freeSess = append(s.freeSess, ss)
		s.stats.OpenSessions--
		ss = next
	}
	k.sessions, k.lastSess, k.nsess = nil, nil, 0
	k.ext = nil
	for i := range k.timers {
		s.wheel.Cancel(&k.timers[i])
	}
}

func (s *Sessionizer) readActivity(r *wire.Reader, a *activity, k *keyState, kind byte, sessionID []byte, seq uint64) {
	a.cause = EventRef{}
	if r.Byte() == 1 {
		a.causeBuf = append(a.causeBuf[:0], r.Bytes()...)
		a.cause.ID = a.causeBuf
	}
	a.cause.Topic = s.dec.intern(r.Bytes())
	part := r.Varint()
	if part < math.MinInt32 || part > math.MaxInt32 {
		r.Fail()
	}
	a.cause.Partition = int32(part)
	a.cause.Offset = r.Varint()
	sm := &a.Summary
	*sm = Summary{EntryURL: sm.EntryURL[:0], ExitURL: sm.ExitURL[:0], Source: sm.Source[:0], Device: sm.Device[:0], Types: sm.Types[:0]}
	sm.StartedAt = readTime(r)
	d := r.Varint()
	if d < 0 || d > maxTime-sm.StartedAt {
		r.Fail()
	}
	sm.LastActivity = sm.StartedAt + d
	sm.EventCount = uint32(r.UvarintMax(math.MaxUint32))
	sm.PageViewCount = uint32(r.UvarintMax(math.MaxUint32))
	sm.SessionCount = uint32(r.UvarintMax(math.MaxUint32))
	sm.EntryURL = append(sm.EntryURL, r.Bytes()...)
	sm.ExitURL = append(sm.ExitURL, r.Bytes()...)
	sm.Source = append(sm.Source, r.Bytes()...)
	sm.Device = append(sm.Device, r.Bytes()...)
	n := int(r.UvarintMax(uint64(s.cfg.MaxTypeCounts)))
	for range n {
		t := r.Bytes()
		if !r.Ok() {
			break
		}
		sm.Types = append(sm.Types, TypeCount{Type: s.dec.intern(t), Count: uint32(r.UvarintMax(math.MaxUint32))})
	}
	sm.OtherTypes = uint32(r.UvarintMax(math.MaxUint32))
	id := s.contentID(kind, k.key, sm.StartedAt, sessionID, seq)
	hex.Encode(a.id[:], id[:])
}

// AppendPartitionSnapshot appends the partition's own state: the watermark, the largest event
// time seen, and the events waiting in the reorder buffer (as records, in arrival order), so
// that the records before the snapshot need not be read again.
func (s *Sessionizer) AppendPartitionSnapshot(dst []byte) []byte {
	behind := s.Behind()
	if behind {
		dst = append(dst, partitionSnapshotVersion)
	} else {
		dst = append(dst, 1)
	}
	dst = binary.AppendVarint(dst, s.watermark)
	dst = binary.AppendVarint(dst, s.maxSeen)
	dst = binary.AppendUvarint(dst, s.buf.seq)
	entries := s.buf.inArrivalOrder()
	dst = binary.AppendUvarint(dst, uint64(len(entries)))
	for _, e := range entries {
		ev := &s.buf.evs[e.slot]
		dst = binary.AppendUvarint(dst, e.seq)
		dst = wire.AppendString(dst, ev.Topic)
		dst = binary.AppendVarint(dst, int64(ev.Partition))
		dst = binary.AppendVarint(dst, ev.Offset)
		dst = binary.AppendVarint(dst, ev.RecordTime)
		dst = wire.AppendBytes(dst, ev.Raw)
	}
	if !behind {
		return dst
	}
	dst = binary.AppendVarint(dst, s.target)
	dst = binary.AppendUvarint(dst, uint64(s.heldLen()))
	for _, h := range s.held[s.heldNext:] {
		dst = wire.AppendString(dst, h.Topic)
		dst = binary.AppendVarint(dst, int64(h.Partition))
		dst = binary.AppendVarint(dst, h.Offset)
		dst = binary.AppendVarint(dst, h.Timestamp)
		if h.Key == nil { // a null key stays null
			dst = append(dst, 0)
		} else {
			dst = append(dst, 1)
			dst = wire.AppendBytes(dst, h.Key)
		}
		dst = wire.AppendBytes(dst, h.Value)
	}
	return dst
}

// RestorePartition installs a partition snapshot made by AppendPartitionSnapshot into a
// sessionizer that has processed nothing yet. Buffered events are decoded again from their
// record values, which the sessionizer then holds (b is retained).
func (s *Sessionizer) RestorePartition(b []byte) error {
	if s.stats.Records != 0 || s.buf.len() != 0 {
		return errors.New("operators: RestorePartition on a sessionizer that has processed records")
	}
	r := wire.NewReader(b)
	version := r.Byte()
	if version != 1 && version != partitionSnapshotVersion {
		if !r.Ok() {
			return errSnapshot
		}
		return fmt.Errorf("operators: partition snapshot version %d is not supported", version)
	}
	watermark, maxSeen, seq := r.Varint(), r.Varint(), r.Uvarint()
	n := r.UvarintMax(maxSnapshotItems * 16)
	if !r.Ok() {
		return errSnapshot
	}
	s.watermark, s.target, s.maxSeen = watermark, watermark, maxSeen
	var ev Event
	for range n {
		eseq := r.Uvarint()
		rec := Record{Topic: s.dec.intern(r.Bytes())}
		part := r.Varint()
		rec.Partition, rec.Offset, rec.Timestamp = int32(part), r.Varint(), r.Varint()
		rec.Value = r.Bytes()
		if !r.Ok() || part < math.MinInt32 || part > math.MaxInt32 {
			return errSnapshot
		}
		if err := s.dec.Decode(&rec, &ev); err != nil {
			return fmt.Errorf("operators: buffered record at offset %d no longer decodes: %w", rec.Offset, err)
		}
		s.buf.pushSeq(&ev, eseq)
	}
	if version >= 2 {
		s.target = r.Varint()
		n := r.UvarintMax(maxSnapshotItems * 16)
		if !r.Ok() || s.target < s.watermark {
			return errSnapshot
		}
		s.held = make([]Record, 0, n)
		for range n {
			h := Record{Topic: s.dec.intern(r.Bytes())}
			part := r.Varint()
			h.Partition, h.Offset, h.Timestamp = int32(part), r.Varint(), r.Varint()
			switch r.Byte() {
			case 0:
			case 1:
				h.Key = r.Bytes()
			default:
				r.Fail()
			}
			h.Value = r.Bytes()
			if !r.Ok() || part < math.MinInt32 || part > math.MaxInt32 {
				return errSnapshot
			}
			s.held = append(s.held, h)
		}
	}
	if !r.Complete() {
		return errSnapshot
	}
	s.buf.seq = seq
	return nil
}
