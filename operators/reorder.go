package operators

import (
	"bytes"
	"cmp"
	"slices"
)

// reorderBuffer holds events that are ahead of the watermark, so that they are processed in
// event-time order once the watermark passes them. Ties are broken by event id, then arrival,
// so that a permutation of events with distinct ids gives the same processing order.
type reorderBuffer struct {
	heap []reorderEntry
	evs  []Event // slots; free holds the unused ones
	free []int32
	seq  uint64
}

type reorderEntry struct {
	time int64
	seq  uint64
	slot int32
}

func (r *reorderBuffer) len() int { return len(r.heap) }

func (r *reorderBuffer) minTime() int64 { return r.heap[0].time }

func (r *reorderBuffer) less(a, b *reorderEntry) bool {
	if a.time != b.time {
		return a.time < b.time
	}
	if c := bytes.Compare(r.evs[a.slot].ID, r.evs[b.slot].ID); c != 0 {
		return c < 0
	}
	return a.seq < b.seq
}

// push copies ev into the buffer.
func (r *reorderBuffer) push(ev *Event) {
	r.seq++
	r.pushSeq(ev, r.seq)
}

// inArrivalOrder returns the buffered entries sorted by arrival (a new slice).
func (r *reorderBuffer) inArrivalOrder() []reorderEntry {
	out := slices.Clone(r.heap)
	slices.SortFunc(out, func(a, b reorderEntry) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// pushSeq copies ev into the buffer with the given arrival number (restores keep the numbers
// the events had, so ties break as they would have).
func (r *reorderBuffer) pushSeq(ev *Event, seq uint64) {
	var slot int32
	if n := len(r.free); n > 0 {
		slot = r.free[n-1]
		r.free = r.free[:n-1]
	} else {
		slot = int32(len(r.evs))
		r.evs = append(r.evs, Event{})
	}
	r.evs[slot] = *ev
	r.heap = append(r.heap, reorderEntry{time: ev.Time, seq: seq, slot: slot})
	// sift up
	h := r.heap
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !r.less(&h[i], &h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

// pop removes the earliest event and returns it. The pointer is valid until the next push.
func (r *reorderBuffer) pop() *Event {
	h := r.heap
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	r.heap = h
	i := 0
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if rr := l + 1; rr < len(h) && r.less(&h[rr], &h[l]) {
			m = rr
		}
		if !r.less(&h[m], &h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	r.free = append(r.free, top.slot)
	return &r.evs[top.slot]
}
