package pipeline

import "github.com/twmb/franz-go/pkg/kgo"

// outbuf holds what one worker produces in a cycle: the records themselves, taken from slabs,
// and the bytes of their keys and values (outputs encoded as JSON, changelog keys and key
// records), appended to one buffer and sliced per record. Encoding every output into a fresh
// buffer was a third of the live pipeline's allocations and most of its copying.
//
// The worker resets it at the start of its next cycle's work. By then the cycle's Flush has
// returned, so every promise has run and franz-go holds none of its records; a cycle that
// fails before that stops its workers, and their buffers go with them (a record franz-go may
// still hold is never written again). Within a cycle the buffer only grows: a slice handed out
// is never written again, even when the buffer moves as it grows (the old array stays with the
// records that point into it), and it is capped at its length, so that appending to a
// record's value cannot reach the next one's.
type outbuf struct {
	b     []byte
	slabs [][]kgo.Record
	slab  int // the slab records are taken from
	used  int // records taken from it
}

const (
	// outbufSlab is how many records a slab holds.
	outbufSlab = 256
	// outbufKeep is the most bytes of buffer a reset keeps for the next cycle: a cycle that
	// produced more (a large backlog of timers, say) does not pin its peak for ever.
	outbufKeep = 32 << 20
)

// reset makes the buffer and records ready for reuse; see outbuf for when that is allowed.
func (a *outbuf) reset() {
	if cap(a.b) > outbufKeep {
		a.b = nil
	}
	a.b = a.b[:0]
	for i := 0; i <= a.slab && i < len(a.slabs); i++ {
		clear(a.slabs[i]) // drop what they point to, and franz-go's fields
	}
	a.slab, a.used = 0, 0
}

// record returns a zero record for the cycle.
func (a *outbuf) record() *kgo.Record {
	if a.used == outbufSlab {
		a.slab++
		a.used = 0
	}
	if a.slab == len(a.slabs) {
		a.slabs = append(a.slabs, make([]kgo.Record, outbufSlab))
	}
	r := &a.slabs[a.slab][a.used]
	a.used++
	return r
}

// from returns the bytes appended to the buffer since its length was start, capped.
func (a *outbuf) from(start int) []byte { return a.b[start:len(a.b):len(a.b)] }

// clone returns a copy of b in the buffer, as bytes.Clone does: nil for nil, empty for empty.
func (a *outbuf) clone(b []byte) []byte {
	switch {
	case b == nil:
		return nil
	case len(b) == 0:
		return []byte{}
	}
	start := len(a.b)
	a.b = append(a.b, b...)
	return a.from(start)
}
