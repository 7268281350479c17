package deliver

import "sort"

// track is one partition's offsets handed out and not yet committed, in offset order. It has
// no lock of its own: the Deliverer's mutex guards it.
type track struct {
	pending []pend // ascending offsets; the head is never done (popped at once)
	next    int64  // the offset to commit: after the last handled prefix; -1 before any
}

type pend struct {
	offset int64
	done   bool
}

func newTrack() track { return track{next: -1} }

// add records that offset was handed out; offsets must ascend. A repeated or older offset (a
// fetch of before a reassignment) returns false: it is already tracked or handled.
func (t *track) add(offset int64) bool {
	if n := len(t.pending); n > 0 && offset <= t.pending[n-1].offset || offset < t.next {
		return false
	}
	t.pending = append(t.pending, pend{offset: offset})
	return true
}

// done marks offset handled and moves next past the handled prefix.
func (t *track) done(offset int64) {
	i := sort.Search(len(t.pending), func(i int) bool { return t.pending[i].offset >= offset })
	if i == len(t.pending) || t.pending[i].offset != offset {
		return
	}
	t.pending[i].done = true
	j := 0
	for j < len(t.pending) && t.pending[j].done {
		j++
	}
	if j > 0 {
		t.next = t.pending[j-1].offset + 1
		t.pending = append(t.pending[:0], t.pending[j:]...)
	}
}

// lowest is the lowest offset not handled, or next when nothing is pending (-1: unknown).
func (t *track) lowest() int64 {
	if len(t.pending) > 0 {
		return t.pending[0].offset
	}
	return t.next
}
