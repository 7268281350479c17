package operators

import (
	"fmt"

	"github.com/dwellhq/dwell/operators/internal/jsonx"
	"github.com/dwellhq/dwell/operators/internal/timerwheel"
)

type nodeT = *timerwheel.Node[*keyState]

// A key extension is state that another layer keeps per key alongside the sessionizer's: dwell's
// rules keep a profile's traits, tags, counters and scheduled events this way. The sessionizer
// treats it as part of the key: it is written into the key's snapshot (so the changelog, the
// store, eviction and restore carry it), it is forgotten with the key, and its earliest
// deadline is one more timer of the key (TimerExt) that fires in event-time order with the
// others, as a KindTimer output.
//
// The layer reaches a key's extension through the outputs the sessionizer emits: during Emit,
// Ext(o) returns it and SetExt(o, x) replaces it or reports that it changed, which marks the key
// changed and re-arms its extension timer.

// KeyExt is a key's extension state.
type KeyExt interface {
	// NextDeadline is the event time at which the extension wants its next KindTimer output
	// (0: none).
	NextDeadline() int64
	// Empty reports that there is nothing to keep.
	Empty() bool
	// AppendEncode appends the extension's durable form, which the decoder given to
	// SetExtDecoder reads back.
	AppendEncode(dst []byte) []byte
}

// Admission is an admission hook's verdict on a decoded input event (SetAdmit).
type Admission struct {
	// Reason, when set, dead-letters the event with Detail (counted like decoding failures).
	Reason Reason
	Detail string
	// Drop discards the event without processing it (the hook has accounted for it).
	Drop bool
	// Ephemeral makes the event ephemeral: processed, but not written to the events output.
	Ephemeral bool
}

// SetExtDecoder enables key extensions: dec reads an extension's durable form back when a key
// is restored or loaded from the cold store. It also makes the sessionizer emit KindEvent for
// ephemeral events (with Event.Ephemeral set) and KindPassThrough likewise, so that the layer
// above sees every event; that layer must not write ephemeral events to the events output.
func (s *Sessionizer) SetExtDecoder(dec func(b []byte) (KeyExt, error)) {
	s.extDec = dec
}

// SetAdmit installs a hook that Process calls on every decoded event before it is sessionized.
func (s *Sessionizer) SetAdmit(fn func(ev *Event) Admission) { s.admit = fn }

// Ext returns the extension of o's key, nil when it has none. o must be an output the
// sessionizer is emitting (the call is made during Emit) with a key: KindSystem, KindEvent,
// KindLate or KindTimer.
func (s *Sessionizer) Ext(o *Output) KeyExt {
	if o.k == nil {
		return nil
	}
	return o.k.ext
}

// SetExt makes x the extension of o's key (nil or empty: none) and notes that it changed: the
// key is marked changed and its extension timer re-armed at x.NextDeadline(). Call it during
// Emit, after changing the extension in place too.
func (s *Sessionizer) SetExt(o *Output, x KeyExt) {
	k := o.k
	if k == nil {
		return
	}
	if x != nil && x.Empty() && x.NextDeadline() == 0 {
		x = nil
	}
	k.ext = x
	s.markDirty(k)
	n := &k.timers[timerExt]
	if x == nil {
		s.wheel.Cancel(n)
		return
	}
	if d := x.NextDeadline(); d != 0 {
		s.arm(n, d)
	} else {
		s.wheel.Cancel(n)
	}
}

// extDeadline is k's extension deadline (0: none).
func (k *keyState) extDeadline() int64 {
	if k.ext == nil {
		return 0
	}
	return k.ext.NextDeadline()
}

// PendingCounter is implemented by a KeyExt that can say how many deadlines it holds (rules:
// its scheduled events), so that Stats.ExtPending counts them; other extensions count as one.
type PendingCounter interface {
	Pending() int
}

// fireExt handles k's due extension timer: a KindTimer output at the deadline, after which the
// extension (updated by the emitter) says when it is due next.
//
// At the end of input (Flush) an extension fires only up to the largest event time seen: a
// later deadline stays pending in the key's state and is counted in Stats.ExtPending. Input
// ended there, so nothing after it has happened; and a schedule that schedules again when it
// fires would otherwise run event time on forever.
func (s *Sessionizer) fireExt(k *keyState, n nodeT) {
	d := k.extDeadline()
	if d == 0 {
		return
	}
	if d != n.At() {
		s.wheel.Schedule(n, d) // early: the deadline moved later
		return
	}
	if s.flushing && d > s.maxSeen {
		if c, ok := k.ext.(PendingCounter); ok {
			s.stats.ExtPending += uint64(c.Pending())
		} else {
			s.stats.ExtPending++
		}
		// The forget timer waits for the extension's deadline (fire): with that left pending
		// it would re-arm itself for ever. A key with pending deadlines is not forgotten.
		s.wheel.Cancel(&k.timers[timerForget])
		return
	}
	s.o = Output{Kind: KindTimer, Key: jsonx.Bytes(k.key[1:]), Due: d, k: k}
	// The key's open visit and session at the deadline: every visit and session deadline up to
	// it has fired already (the wheel fires in deadline order), so what is open is open then.
	if k.visit != nil {
		s.o.VisitID, s.o.Visit = k.visit.id[:], &k.visit.Summary
	}
	if ss := k.currentSession(); ss != nil {
		s.o.Session, s.o.SessionID = &ss.Summary, ss.id
	}
	s.out.Emit(&s.o)
	if next := k.extDeadline(); next != 0 {
		// An emitter that left the due timer in place would fire it forever: the next firing
		// is strictly later.
		s.wheel.Schedule(n, max(next, d+1))
	}
}

func (s *Sessionizer) decodeExt(b []byte) (KeyExt, error) {
	if s.extDec == nil {
		return nil, fmt.Errorf("operators: the snapshot has extension state (rules) but no decoder was set")
	}
	return s.extDec(b)
}

// KeyOutput returns an output (KindTimer, due at at) of the profile or session key named by
// key (its state key: 'p' or 's', then the id), loading it back from the cold store if it was
// evicted; nil when the partition does not hold it. It is how a scheduled job that fires for
// each key reaches a key outside an event (pipeline/jobs.go): the caller reads and sets the
// key's extension with Ext and SetExt, as while a timer of the key fires. The output is the
// caller's; the key's open visit and session are as they are now.
func (s *Sessionizer) KeyOutput(key []byte, at int64) *Output {
	if len(key) < 2 {
		return nil
	}
	k := s.lookup(key)
	if k == nil {
		return nil
	}
	o := &Output{Kind: KindTimer, Key: jsonx.Bytes(k.key[1:]), Due: at, k: k}
	if k.visit != nil {
		o.VisitID, o.Visit = k.visit.id[:], &k.visit.Summary
	}
	if ss := k.currentSession(); ss != nil {
		o.Session, o.SessionID = &ss.Summary, ss.id
	}
	return o
}

// AppendKeys appends the state keys held in memory, in no order (offline: with the cold
// store's, every key of the partition).
func (s *Sessionizer) AppendKeys(dst []string) []string {
	for k := range s.keys {
		dst = append(dst, k)
	}
	return dst
}

// AppendDirtyKeys appends the state keys changed since the last DrainChanges, forgotten ones
// left out: with the keys a store holds as of that drain, every key of the partition.
func (s *Sessionizer) AppendDirtyKeys(dst []string) []string {
	for _, k := range s.dirty {
		if k != nil && !k.deleted {
			dst = append(dst, k.key)
		}
	}
	return dst
}
