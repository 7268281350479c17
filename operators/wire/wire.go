package wire

import (
	"encoding/binary"
	"math"
)

// Reader reads a record; see the package documentation. The zero Reader is an empty one.
type Reader struct {
	b         []byte
	bad       bool
	canonical bool
}

// NewReader returns a Reader of b.
func NewReader(b []byte) Reader { return Reader{b: b} }

// NewCanonicalReader returns a Reader of b that also rejects varints that are not minimally
// encoded (a last byte of 0 after continuation bytes).
func NewCanonicalReader(b []byte) Reader { return Reader{b: b, canonical: true} }

// Fail marks the reader bad: a caller's own check of a value it read failed.
func (r *Reader) Fail() {
	r.bad = true
	r.b = nil
}

// Ok says whether every read so far succeeded.
func (r *Reader) Ok() bool { return !r.bad }

// Complete says whether every read so far succeeded and nothing is left.
func (r *Reader) Complete() bool { return !r.bad && len(r.b) == 0 }

// Len is the number of bytes left (0 once bad).
func (r *Reader) Len() int { return len(r.b) }

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if len(r.b) == 0 {
		r.Fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 { return r.UvarintMax(math.MaxUint64) }

// UvarintMax reads an unsigned varint that must not exceed limit (a count or a length about to
// be allocated for, or a value with a range).
func (r *Reader) UvarintMax(limit uint64) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit || r.canonical && n > 1 && r.b[n-1] == 0 {
		r.Fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Varint reads a signed (zig-zag) varint.
func (r *Reader) Varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 || r.canonical && n > 1 && r.b[n-1] == 0 {
		r.Fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Span reads the next n bytes, as a view.
func (r *Reader) Span(n int) []byte {
	if n < 0 || n > len(r.b) {
		r.Fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// Bytes reads a length-prefixed byte string, as a view.
func (r *Reader) Bytes() []byte {
	n := r.Uvarint()
	if n > uint64(len(r.b)) {
		r.Fail()
		return nil
	}
	return r.Span(int(n))
}

// String reads a length-prefixed byte string as a string (a copy: it allocates). It is a read,
// not fmt.Stringer's String: it consumes what it returns.
func (r *Reader) String() string { return string(r.Bytes()) }

// Rest reads everything left, as a view.
func (r *Reader) Rest() []byte { return r.Span(len(r.b)) }

// AppendBytes appends b as a length-prefixed byte string (what Bytes reads).
func AppendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// AppendString appends s as a length-prefixed byte string (what String reads).
func AppendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}
