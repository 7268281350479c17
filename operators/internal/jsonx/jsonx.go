package jsonx

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
	"unsafe"
)

// String views b as a string, without copying. b must not change while the string is in use.
func String(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// Bytes views s as bytes, without copying. They must never be written.
func Bytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// Special marks the bytes a string scan must stop at: control bytes, '"', '\\', and every byte
// of a multi-byte UTF-8 sequence. Between them lie plain bytes: printable ASCII, copied as they
// are and valid as they are.
var Special = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = true
	}
	return
}()

// specialMask flags the lanes of the 8 bytes in x that Special marks (the high bit of each
// flagged lane; exact for the lowest flagged lane, while lanes above it may be flagged wrongly
// by a borrow): the classic "has a byte less than n" and "has a zero byte" tricks over one
// 64-bit word.
func specialMask(x uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q, s := x^(ones*'"'), x^(ones*'\\')
	m := ((x - ones*0x20) | (q - ones) | (s - ones)) &^ x & highs
	return m | x&highs
}

// SkipPlain returns the index of the first byte at or after i that Special marks, or len(b).
// It tests eight bytes at a time: most of an event is string bytes, and a byte-at-a-time loop
// was 40% of decoding.
func SkipPlain(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if m := specialMask(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && !Special[b[i]] {
		i++
	}
	return i
}
