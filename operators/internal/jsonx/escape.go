package jsonx

import (
	"encoding/binary"
	"unicode/utf8"
)

// AppendQuoted appends s as a JSON string; each byte of invalid UTF-8 becomes U+FFFD.
func AppendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s, true)
	return append(dst, '"')
}

// AppendEscaped appends s escaped for the inside of a JSON string, without the quotes; each
// byte of invalid UTF-8 becomes U+FFFD.
func AppendEscaped(dst []byte, s string) []byte { return appendEscaped(dst, s, true) }

// AppendQuotedUTF8 appends s, which must be valid UTF-8, as a JSON string. Its bytes from 0x80
// up are copied without a check: use it for text the decoder has validated.
func AppendQuotedUTF8(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s, false)
	return append(dst, '"')
}

// AppendEscapedUTF8 is AppendQuotedUTF8 without the quotes.
func AppendEscapedUTF8(dst []byte, s string) []byte { return appendEscaped(dst, s, false) }

const hexDigits = "0123456789abcdef"

// appendEscaped appends s escaped for the inside of a JSON string. check says whether its
// non-ASCII bytes must be checked (invalid UTF-8 becomes U+FFFD) or are known to be valid.
func appendEscaped(dst []byte, s string, check bool) []byte {
	b := Bytes(s) // for the word loads
	start := 0
	for i := 0; ; {
		for i+8 <= len(b) && specialMask(binary.LittleEndian.Uint64(b[i:])) == 0 {
			i += 8 // the common case: 8 bytes that need no escaping, tested at once
		}
		for i < len(s) && !Special[s[i]] {
			i++
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		if !check { // valid UTF-8: copy the run of multi-byte sequences as it is
			for i++; i < len(s) && s[i] >= utf8.RuneSelf; i++ {
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			start = i + 1
		}
		i += size
	}
	return append(dst, s[start:]...)
}
