package operators

import (
	"bytes"
	"math"
)

// Bounded work. One record can move the watermark far (after an idle stretch, or a backfill),
// and then every timer it passes is due at once: a million keys' visits ending, each evicted
// key loaded back from the cold store to fire. A sessionizer given a Budget does that work in
// slices: it stops when the budget is spent and goes on where it stopped at the next call
// (Continue, Process, Tick or Flush), so that a live cycle, and the transaction around it,
// stays short.
//
// The output is the same as without a budget. The watermark the input asked for (the target)
// is kept apart from the watermark reached; while the second trails the first the partition is
// behind, and every record that arrives is held, in arrival order, untouched: it is processed
// only once the watermark has caught up, exactly where an unbounded run would have processed it
// (as a late event, or into the reorder buffer). Timers fire in the same (deadline, key)
// order, across any number of stops (timerwheel.AdvanceWhile), and evicted keys are loaded in
// deadline order, one at a time, as their timers come due. The target and the held records are
// part of the partition snapshot, so a restore goes on exactly where the last commit stopped.

// Budget bounds the work of one call (one live cycle). Its zero value is unlimited.
type Budget struct {
	// Work is how many units the sessionizer may do: each buffered event processed, timer
	// fired, held record processed and evicted key loaded is one. 0 is unlimited.
	Work int
	// Loads bounds the evicted keys loaded back (each also a unit of Work), which stay in
	// memory until the caller evicts again: it bounds memory. 0 is unlimited.
	Loads int
	// Expired, if set, is asked every 64 units whether time is up (the cycle's time budget, or
	// the process stopping); once it says so the work stops as if Work were spent.
	Expired func() bool
}

// budget is the state of the Budget in force.
type budget struct {
	limited bool
	left    int
	loads   int
	checks  int
	expired func() bool
}

// SetBudget sets the budget for the work that follows, until the next SetBudget.
func (s *Sessionizer) SetBudget(b Budget) {
	s.bud = budget{limited: b.Work > 0 || b.Loads > 0 || b.Expired != nil, left: b.Work, loads: b.Loads, expired: b.Expired}
	if b.Work <= 0 {
		s.bud.left = math.MaxInt
	}
	if b.Loads <= 0 {
		s.bud.loads = math.MaxInt
	}
}

// moreLoads spends a load and a unit of work; false means either is spent.
func (s *Sessionizer) moreLoads() bool {
	if s.bud.limited {
		if s.bud.loads <= 0 {
			return false
		}
		s.bud.loads--
	}
	return s.more()
}

// more spends one unit of work; false means the budget is spent and the work must stop here.
func (s *Sessionizer) more() bool {
	if !s.bud.limited {
		return true
	}
	if s.bud.left <= 0 || s.bud.loads <= 0 {
		return false
	}
	s.bud.left--
	if s.bud.expired != nil {
		if s.bud.checks++; s.bud.checks >= 64 {
			s.bud.checks = 0
			if s.bud.expired() {
				s.bud.left = 0
			}
		}
	}
	return true
}

// spend counts a unit of work that cannot stop where it is (a key loaded for the event being
// processed): it only makes the next more say no sooner.
func (s *Sessionizer) spend() {
	if s.bud.limited {
		s.bud.left--
		s.bud.loads--
	}
}

// Behind reports whether the partition has work left that its budget stopped: the watermark
// trails the one asked for, or records are held. The caller goes on with Continue (a live
// worker pauses fetching the partition meanwhile, so that held records stay few).
func (s *Sessionizer) Behind() bool {
	return s.watermark < s.target || s.heldLen() > 0
}

// Held is the number of records waiting for the watermark to catch up.
func (s *Sessionizer) Held() int { return s.heldLen() }

// Target is the watermark the input has asked for; Watermark trails it while Behind.
func (s *Sessionizer) Target() int64 { return s.target }

// Continue goes on with the work a budget stopped, within the budget now in force.
func (s *Sessionizer) Continue() {
	if s.ending {
		s.Flush()
		return
	}
	s.catchUp()
}

// hold keeps a copy of rec, to be processed once the watermark has caught up.
func (s *Sessionizer) hold(rec *Record) {
	h := *rec
	h.Key = bytes.Clone(rec.Key)
	h.Value = bytes.Clone(rec.Value)
	if h.Value == nil {
		h.Value = []byte{}
	}
	s.held = append(s.held, h)
}

func (s *Sessionizer) heldLen() int { return len(s.held) - s.heldNext }

// catchUp moves the watermark toward the target, processing buffered events and firing timers
// in event-time order, then processes held records in arrival order (each of which may move
// the target further), until nothing is left or the budget is spent. Processing a record
// re-enters it through setWatermark: the inner call only raises the target and the outer loop
// does the work.
func (s *Sessionizer) catchUp() {
	if s.catching {
		return
	}
	s.catching = true
	s.catchUpLoop()
	s.catching = false
}

func (s *Sessionizer) catchUpLoop() {
	for s.err == nil {
		if s.watermark < s.target {
			if !s.advanceTo(s.target) {
				return
			}
			continue
		}
		if s.heldLen() == 0 || !s.more() {
			return
		}
		rec := &s.held[s.heldNext]
		s.heldNext++
		if s.heldNext == len(s.held) {
			// Records already processed may still be referenced by what they emitted (dead
			// letters keep the bytes); the slice is dropped, not reused.
			s.held, s.heldNext = nil, 0
		}
		s.process(rec)
	}
}

// advanceTo processes the buffered events up to t and fires the timers due before them and
// before t, in event-time order, and moves the watermark to t; false when the budget stopped
// it first (the watermark then stays at the last event time it completed).
func (s *Sessionizer) advanceTo(t int64) bool {
	for s.buf.len() > 0 && s.buf.minTime() <= t {
		te := s.buf.minTime()
		if !s.fireBefore(te) || !s.more() {
			return false
		}
		ev := s.buf.pop()
		s.processEvent(ev)
		s.watermark = max(s.watermark, te-1)
	}
	if !s.fireBefore(t) {
		return false
	}
	s.watermark = t
	return true
}

// fireBefore fires every timer with a deadline before t (every one, for t = MaxInt64), those
// of evicted keys included, in (deadline, key) order, within the budget. An evicted key is
// loaded when its deadline is next: the timers in memory due before it fire first.
func (s *Sessionizer) fireBefore(t int64) bool {
	if t == math.MinInt64 {
		return true
	}
	target := t - 1
	if t == math.MaxInt64 {
		target = t
	}
	for len(s.coldTimers) > 0 && s.coldTimers[0].deadline <= target && s.err == nil {
		c := s.coldTimers[0].deadline
		if s.wheel.Len() > 0 && !s.wheel.AdvanceWhile(c-1, s.fire, s.more) {
			return false
		}
		if !s.wakeCold(c) {
			return false
		}
	}
	if s.err != nil {
		return false
	}
	if s.wheel.Len() == 0 {
		return true
	}
	return s.wheel.AdvanceWhile(target, s.fire, s.more)
}
