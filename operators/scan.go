package operators

import (
	"encoding/binary"
	"math/bits"
)

// skipPlain returns the index of the first byte at or after i that a JSON string scan must
// look at ('"', '\\', a control byte, or a non-ASCII byte), or len(b). It tests eight bytes at a
// time (SWAR): most of an event is string bytes, and a byte-at-a-time loop was 40% of decoding.
func skipPlain(b []byte, i int) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ (ones * '"')
		s := x ^ (ones * '\\')
		// A lane is flagged when it is < 0x20, '"' or '\\' (the classic "has zero/less"
		// tests, exact for the lowest flagged lane) or has its high bit set.
		m := ((x - ones*0x20) | (q - ones) | (s - ones)) &^ x & highs
		m |= x & highs
		if m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(b) && !strSpecial[b[i]] {
		i++
	}
	return i
}
