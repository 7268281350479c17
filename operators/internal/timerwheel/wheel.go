// Package timerwheel is a hierarchical timing wheel over integer event time (milliseconds) with
// intrusive nodes, owned by one goroutine and free of locks.
//
// # Layout
//
// The wheel has 8 levels of 64 slots. Level i has a granularity of 64^i ms, so the wheel covers
// 2^48 ms (about 8,900 years) without an overflow list. A node with deadline d > now lives at the
// lowest level i where d and now agree on every bit above level i (d>>(6(i+1)) == now>>(6(i+1)))
// in slot (d>>(6i))&63. Each level keeps a 64-bit occupancy mask, so the earliest pending node is
// found with one TrailingZeros per level: it lies in the lowest non-empty level, earliest slot.
//
// # Invariants
//
//   - Every node with deadline <= now has fired (or sits in the due list, fired by the next
//     Advance). Advance never moves now backwards.
//   - Nodes that share a deadline fire in the order of the wheel's less function, so firing order
//     is a total, deterministic order (deadline, then less) whatever order they were scheduled in.
//   - Schedule and Cancel are O(1) and allocate nothing: nodes are embedded in their owners.
//     Advance costs O(levels) per node over its lifetime (cascades) plus the fired nodes.
package timerwheel

import (
	"math"
	"math/bits"
	"slices"
)

const (
	levelBits = 6
	slots     = 1 << levelBits
	levels    = 8
	// MaxDeadline is the largest deadline the wheel accepts; later deadlines are clamped to it.
	MaxDeadline = int64(1)<<(levelBits*levels) - 1
)

// Node is a timer embedded in its owner. The zero Node is unscheduled.
type Node[T any] struct {
	prev, next *Node[T]
	deadline   int64
	state      nodeState
	level      int8
	slot       int8
	// Value identifies the owner; the wheel never reads it.
	Value T
}

type nodeState uint8

const (
	idle      nodeState = iota
	inSlot              // linked in lists[level][slot]
	immediate           // in Wheel.immediate: due at the next Advance
	firing              // in the batch being fired; not yet handed to fire
)

// Deadline is the node's pending deadline, or 0 when it is not scheduled.
func (n *Node[T]) Deadline() int64 {
	if n.state == idle {
		return 0
	}
	return n.deadline
}

// At is the deadline the node was last scheduled for, also after it fired: a fire callback
// uses it to tell which deadline fired.
func (n *Node[T]) At() int64 { return n.deadline }

// Scheduled reports whether the node is pending.
func (n *Node[T]) Scheduled() bool { return n.state != idle }

type list[T any] struct{ head *Node[T] }

// Wheel is a hierarchical timing wheel. Use New.
type Wheel[T any] struct {
	now   int64
	mask  [levels]uint64
	lists [levels][slots]list[T]
	count int
	less  func(a, b *Node[T]) bool
	// immediate holds nodes whose deadline is at or before now; they fire next.
	immediate []*Node[T]
	batch     []*Node[T] // scratch for fireImmediate
}

// New returns a wheel whose current time is now. less orders nodes that share a deadline; it
// must be a strict total order over distinct nodes for firing order to be deterministic.
func New[T any](now int64, less func(a, b *Node[T]) bool) *Wheel[T] {
	return &Wheel[T]{now: now, less: less}
}

// Now is the time up to which every timer has fired.
func (w *Wheel[T]) Now() int64 { return w.now }

// Len is the number of pending timers.
func (w *Wheel[T]) Len() int { return w.count }

// Schedule sets n's deadline, moving it if it was already pending. A deadline at or before Now
// fires at the next Advance. Deadlines above MaxDeadline are clamped.
func (w *Wheel[T]) Schedule(n *Node[T], deadline int64) {
	deadline = min(deadline, MaxDeadline)
	switch n.state {
	case idle:
		w.count++
	case inSlot:
		if n.deadline == deadline {
			return
		}
		w.unlink(n)
	default:
		w.unlink(n)
	}
	n.deadline = deadline
	w.place(n)
}

// Cancel removes n if it is pending.
func (w *Wheel[T]) Cancel(n *Node[T]) {
	if n.state == idle {
		return
	}
	w.unlink(n)
	w.count--
	n.state = idle
}

func (w *Wheel[T]) place(n *Node[T]) {
	if n.deadline <= w.now {
		n.state = immediate
		w.immediate = append(w.immediate, n)
		return
	}
	x := uint64(n.deadline ^ w.now)
	lvl := min((bits.Len64(x)-1)/levelBits, levels-1)
	s := int((n.deadline >> (levelBits * lvl)) & (slots - 1))
	l := &w.lists[lvl][s]
	n.state, n.level, n.slot = inSlot, int8(lvl), int8(s)
	n.prev, n.next = nil, l.head
	if l.head != nil {
		l.head.prev = n
	}
	l.head = n
	w.mask[lvl] |= 1 << s
}

// unlink takes n out of whatever holds it; a firing node is only marked, the batch skips it.
func (w *Wheel[T]) unlink(n *Node[T]) {
	switch n.state {
	case inSlot:
		l := &w.lists[n.level][n.slot]
		if n.prev != nil {
			n.prev.next = n.next
		} else {
			l.head = n.next
		}
		if n.next != nil {
			n.next.prev = n.prev
		}
		if l.head == nil {
			w.mask[n.level] &^= 1 << n.slot
		}
		n.prev, n.next = nil, nil
	case immediate:
		i := slices.Index(w.immediate, n)
		w.immediate = slices.Delete(w.immediate, i, i+1)
	}
	n.state = idle
}

// Next returns the earliest pending deadline, or math.MaxInt64 when none is pending.
func (w *Wheel[T]) Next() int64 {
	best := int64(math.MaxInt64)
	for _, n := range w.immediate {
		best = min(best, n.deadline)
	}
	if best != math.MaxInt64 {
		return best
	}
	for lvl := range levels {
		if w.mask[lvl] == 0 {
			continue
		}
		// The earliest slot of the lowest non-empty level holds the minimum; scan it.
		s := bits.TrailingZeros64(w.mask[lvl])
		for n := w.lists[lvl][s].head; n != nil; n = n.next {
			best = min(best, n.deadline)
		}
		return best
	}
	return best
}

// Advance moves the wheel to target, firing every timer with deadline <= target in order of
// (deadline, less). fire may Schedule and Cancel timers, the fired one included; a timer it
// schedules at or before target fires within this same call.
func (w *Wheel[T]) Advance(target int64, fire func(n *Node[T])) { w.AdvanceWhile(target, fire, nil) }

// AdvanceWhile is Advance with a budget: before each timer fires it asks more, and when more
// says no it stops there and returns false. The timers left keep their order: a later Advance
// fires them first, exactly as one unbounded Advance would have (the same timers in the same
// order). Now stays at or below the earliest timer left. A nil more never stops.
func (w *Wheel[T]) AdvanceWhile(target int64, fire func(n *Node[T]), more func() bool) bool {
	target = min(target, MaxDeadline)
	for {
		if len(w.immediate) > 0 {
			// Nodes due at or before now; after a budget stopped an Advance, now may be past
			// target, and those due after target wait.
			if w.immediateMin() > target {
				break
			}
			if !w.fireImmediate(fire, more) {
				return false
			}
			continue
		}
		lvl := 0
		for lvl < levels && w.mask[lvl] == 0 {
			lvl++
		}
		if lvl == levels {
			break
		}
		s := bits.TrailingZeros64(w.mask[lvl])
		shift := uint(levelBits * (lvl + 1))
		start := (w.now>>shift)<<shift | int64(s)<<(levelBits*lvl)
		if start > target {
			break
		}
		// Every node of this slot has a deadline in [start, start+64^lvl) and nothing pending is
		// earlier, so time can jump to start. Re-placing cascades the nodes to lower levels; those
		// due exactly at start (all of them on level 0) land in the immediate list.
		head := w.lists[lvl][s].head
		w.lists[lvl][s].head = nil
		w.mask[lvl] &^= 1 << s
		w.now = start
		for n := head; n != nil; {
			next := n.next
			n.prev, n.next = nil, nil
			w.place(n)
			n = next
		}
	}
	w.now = max(w.now, target)
	return true
}

func (w *Wheel[T]) immediateMin() int64 {
	d := w.immediate[0].deadline
	for _, n := range w.immediate[1:] {
		d = min(d, n.deadline)
	}
	return d
}

// fireImmediate fires the nodes of the smallest deadline in the immediate list, in less order,
// asking more (if not nil) before each; it returns false when more stopped it, with the nodes
// not fired back in the immediate list.
func (w *Wheel[T]) fireImmediate(fire func(n *Node[T]), more func() bool) bool {
	d := w.immediateMin()
	batch := w.batch[:0]
	keep := w.immediate[:0]
	for _, n := range w.immediate {
		if n.deadline == d {
			n.state = firing
			batch = append(batch, n)
		} else {
			keep = append(keep, n)
		}
	}
	clear(w.immediate[len(keep):])
	w.immediate = keep
	if len(batch) > 1 {
		slices.SortFunc(batch, func(a, b *Node[T]) int {
			switch {
			case w.less(a, b):
				return -1
			case w.less(b, a):
				return 1
			}
			return 0
		})
	}
	w.batch = nil // fire may re-enter Advance through the owner; give it its own scratch
	for i, n := range batch {
		batch[i] = nil
		if n.state != firing { // moved or cancelled by an earlier fire of this batch
			continue
		}
		if more != nil && !more() {
			// Out of budget: what is left of the batch waits in the immediate list, to be
			// sorted again (by the same order) when firing resumes.
			batch[i] = n
			for _, m := range batch[i:] {
				if m != nil && m.state == firing {
					m.state = immediate
					w.immediate = append(w.immediate, m)
				}
			}
			clear(batch[i:])
			w.batch = batch[:0]
			return false
		}
		n.state = idle
		w.count--
		fire(n)
	}
	w.batch = batch[:0]
	return true
}
