package jsonx

import (
	"encoding/binary"
	"math/bits"
)

// SkipWS returns the index of the first byte at or after i that is not JSON whitespace, or
// len(b).
func SkipWS(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// SkipString returns the index after the string starting at b[i] == '"', and whether it has
// escapes; -1 when it is unterminated.
func SkipString(b []byte, i int) (int, bool) {
	esc := false
	for i++; i < len(b); {
		if i+8 <= len(b) {
			m := quoteOrBackslash(binary.LittleEndian.Uint64(b[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) / 8 // the first '"' or '\\' of the 8 bytes
		}
		switch b[i] {
		case '\\':
			esc = true
			i += 2 // the backslash and the character it escapes
		case '"':
			return i + 1, esc
		default:
			i++
		}
	}
	return -1, esc
}

// quoteOrBackslash marks the bytes of x that are '"' or '\\' (the high bit of each, with the
// bit trick of "has a zero byte" over x^c). Bytes above the first marked one may be marked
// wrongly (a borrow), the first one never.
func quoteOrBackslash(x uint64) uint64 {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	q, bs := x^(lsb*'"'), x^(lsb*'\\')
	return ((q-lsb)&^q | (bs-lsb)&^bs) & msb
}

// SkipValue returns the index after the value starting at b[i] (after whitespace), or -1.
func SkipValue(b []byte, i int) int {
	i = SkipWS(b, i)
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		j, _ := SkipString(b, i)
		return j
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				j, _ := SkipString(b, i)
				if j < 0 {
					return -1
				}
				i = j - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\t' && b[j] != '\r' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}
