package operators

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
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
	keySnapshotVersion       = 2
	partitionSnapshotVersion = 1
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
	dst = appendBytes(dst, []byte(k.key))
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
		dst = appendBytes(dst, v.session)
		dst = binary.AppendVarint(dst, v.entryTime)
		dst = appendActivity(dst, &v.activity)
	}
	dst = binary.AppendUvarint(dst, uint64(k.nsess))
	for ss := k.sessions; ss != nil; ss = ss.next {
		dst = appendBytes(dst, ss.id)
		dst = binary.AppendUvarint(dst, ss.seq)
		dst = binary.AppendUvarint(dst, ss.countedIn)
		dst = appendActivity(dst, &ss.activity)
	}
	if k.ext != nil {
		s.extBuf = k.ext.AppendEncode(s.extBuf[:0])
		dst = appendBytes(dst, s.extBuf)
	}
	return dst, true
}

func appendActivity(dst []byte, a *activity) []byte {
	if a.cause.ID != nil {
		dst = append(dst, 1)
		dst = appendBytes(dst, a.cause.ID)
	} else {
		dst = append(dst, 0)
	}
	dst = appendBytes(dst, []byte(a.cause.Topic))
	dst = binary.AppendVarint(dst, int64(a.cause.Partition))
	dst = binary.AppendVarint(dst, a.cause.Offset)
	sm := &a.Summary
	dst = binary.AppendVarint(dst, sm.StartedAt)
	dst = binary.AppendVarint(dst, sm.LastActivity-sm.StartedAt)
	dst = binary.AppendUvarint(dst, uint64(sm.EventCount))
	dst = binary.AppendUvarint(dst, uint64(sm.PageViewCount))
	dst = binary.AppendUvarint(dst, uint64(sm.SessionCount))
	dst = appendBytes(dst, sm.EntryURL)
	dst = appendBytes(dst, sm.ExitURL)
	dst = appendBytes(dst, sm.Source)
	dst = appendBytes(dst, sm.Device)
	dst = binary.AppendUvarint(dst, uint64(len(sm.Types)))
	for _, tc := range sm.Types {
		dst = appendBytes(dst, []byte(tc.Type))
		dst = binary.AppendUvarint(dst, uint64(tc.Count))
	}
	return binary.AppendUvarint(dst, uint64(sm.OtherTypes))
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// snapReader reads a snapshot; the first error sticks.
type snapReader struct {
	b   []byte
	err error
}

func (r *snapReader) fail() {
	if r.err == nil {
		r.err = errSnapshot
	}
	r.b = nil
}

func (r *snapReader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *snapReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *snapReader) uvarint(limit uint64) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns a view of the next length-prefixed field.
func (r *snapReader) bytes() []byte {
	n := r.uvarint(math.MaxInt32)
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *snapReader) time() int64 {
	t := r.varint()
	if t < 0 || t > maxTime {
		r.fail()
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
	r := &snapReader{b: b}
	version := r.byte()
	if version != 1 && version != keySnapshotVersion {
		if r.err != nil {
			return r.err
		}
		return fmt.Errorf("operators: key snapshot version %d is not supported", version)
	}
	key := r.bytes()
	lastSeen := r.time()
	flags := r.byte()
	visitEnd := r.varint()
	visitSeq, sessSeq := r.uvarint(math.MaxUint64), r.uvarint(math.MaxUint64)
	if r.err != nil || len(key) < 2 || key[0] != 'p' && key[0] != 's' || flags > 15 || version == 1 && flags > 7 {
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
		v.session = append(v.session[:0], r.bytes()...)
		v.entryTime = r.varint()
		s.readActivity(r, &v.activity, k, 'v', nil, 0)
		k.visit = v
		if count {
			s.stats.OpenVisits++
		}
	}
	n := int(r.uvarint(uint64(s.cfg.MaxOpenSessions)))
	for range n {
		id := r.bytes()
		if r.err != nil || len(id) == 0 {
			r.fail()
			break
		}
		ss := s.newSession()
		ss.id = append(ss.id[:0], id...)
		ss.seq, ss.countedIn = r.uvarint(math.MaxUint64), r.uvarint(math.MaxUint64)
		s.readActivity(r, &ss.activity, k, 's', ss.id, ss.seq)
		k.addSession(ss)
		if count {
			s.stats.OpenSessions++
		}
	}
	var extErr error
	if flags&8 != 0 {
		b := r.bytes()
		if r.err == nil {
			k.ext, extErr = s.decodeExt(b)
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail()
	}
	if r.err == nil && extErr != nil {
		r.err = extErr
	}
	if r.err != nil {
		visits, sessions := s.stats.OpenVisits, s.stats.OpenSessions
		s.dropKeyState(k)
		if !count {
			s.stats.OpenVisits, s.stats.OpenSessions = visits, sessions
		}
		return r.err
	}
	k.persisted = s.deadlines(k)
	for i, d := range k.persisted {
		if d != 0 {
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

func (s *Sessionizer) readActivity(r *snapReader, a *activity, k *keyState, kind byte, sessionID []byte, seq uint64) {
	a.cause = EventRef{}
	if r.byte() == 1 {
		a.causeBuf = append(a.causeBuf[:0], r.bytes()...)
		a.cause.ID = a.causeBuf
	}
	a.cause.Topic = s.dec.intern(r.bytes())
	part := r.varint()
	if part < math.MinInt32 || part > math.MaxInt32 {
		r.fail()
	}
	a.cause.Partition = int32(part)
	a.cause.Offset = r.varint()
	sm := &a.Summary
	*sm = Summary{EntryURL: sm.EntryURL[:0], ExitURL: sm.ExitURL[:0], Source: sm.Source[:0], Device: sm.Device[:0], Types: sm.Types[:0]}
	sm.StartedAt = r.time()
	d := r.varint()
	if d < 0 || d > maxTime-sm.StartedAt {
		r.fail()
	}
	sm.LastActivity = sm.StartedAt + d
	sm.EventCount = uint32(r.uvarint(math.MaxUint32))
	sm.PageViewCount = uint32(r.uvarint(math.MaxUint32))
	sm.SessionCount = uint32(r.uvarint(math.MaxUint32))
	sm.EntryURL = append(sm.EntryURL, r.bytes()...)
	sm.ExitURL = append(sm.ExitURL, r.bytes()...)
	sm.Source = append(sm.Source, r.bytes()...)
	sm.Device = append(sm.Device, r.bytes()...)
	n := int(r.uvarint(uint64(s.cfg.MaxTypeCounts)))
	for range n {
		t := r.bytes()
		if r.err != nil {
			break
		}
		sm.Types = append(sm.Types, TypeCount{Type: s.dec.intern(t), Count: uint32(r.uvarint(math.MaxUint32))})
	}
	sm.OtherTypes = uint32(r.uvarint(math.MaxUint32))
	id := s.contentID(kind, k.key, sm.StartedAt, sessionID, seq)
	hex.Encode(a.id[:], id[:])
}

// AppendPartitionSnapshot appends the partition's own state: the watermark, the largest event
// time seen, and the events waiting in the reorder buffer (as records, in arrival order), so
// that the records before the snapshot need not be read again.
func (s *Sessionizer) AppendPartitionSnapshot(dst []byte) []byte {
	dst = append(dst, partitionSnapshotVersion)
	dst = binary.AppendVarint(dst, s.watermark)
	dst = binary.AppendVarint(dst, s.maxSeen)
	dst = binary.AppendUvarint(dst, s.buf.seq)
	entries := s.buf.inArrivalOrder()
	dst = binary.AppendUvarint(dst, uint64(len(entries)))
	for _, e := range entries {
		ev := &s.buf.evs[e.slot]
		dst = binary.AppendUvarint(dst, e.seq)
		dst = appendBytes(dst, []byte(ev.Topic))
		dst = binary.AppendVarint(dst, int64(ev.Partition))
		dst = binary.AppendVarint(dst, ev.Offset)
		dst = binary.AppendVarint(dst, ev.RecordTime)
		dst = appendBytes(dst, ev.Raw)
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
	r := &snapReader{b: b}
	if v := r.byte(); v != partitionSnapshotVersion {
		if r.err != nil {
			return r.err
		}
		return fmt.Errorf("operators: partition snapshot version %d is not supported", v)
	}
	watermark, maxSeen, seq := r.varint(), r.varint(), r.uvarint(math.MaxUint64)
	n := r.uvarint(maxSnapshotItems * 16)
	if r.err != nil {
		return r.err
	}
	s.watermark, s.maxSeen = watermark, maxSeen
	var ev Event
	for range n {
		eseq := r.uvarint(math.MaxUint64)
		rec := Record{Topic: s.dec.intern(r.bytes())}
		part := r.varint()
		rec.Partition, rec.Offset, rec.Timestamp = int32(part), r.varint(), r.varint()
		rec.Value = r.bytes()
		if r.err != nil || part < math.MinInt32 || part > math.MaxInt32 {
			return errSnapshot
		}
		if err := s.dec.Decode(&rec, &ev); err != nil {
			return fmt.Errorf("operators: buffered record at offset %d no longer decodes: %w", rec.Offset, err)
		}
		s.buf.pushSeq(&ev, eseq)
	}
	if len(r.b) != 0 {
		return errSnapshot
	}
	s.buf.seq = seq
	return nil
}
