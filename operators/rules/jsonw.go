package rules

import (
	"encoding/binary"
	"unicode/utf8"
	"unsafe"

	"github.com/dwellhq/dwell/operators"
)

// jsonObject appends a JSON object of string fields to b, in the order written (callers
// write keys sorted, so outputs are canonical). It is what rules write their records with:
// encoding/json over a map costs a reflection walk and a sort per record.
type jsonObject struct {
	b []byte
	n int
}

func (w *jsonObject) key(k string) {
	if w.n == 0 {
		w.b = append(w.b, '{')
	} else {
		w.b = append(w.b, ',')
	}
	w.n++
	w.b = appendJSONString(w.b, k)
	w.b = append(w.b, ':')
}

func (w *jsonObject) str(k, v string) {
	w.key(k)
	w.b = appendJSONString(w.b, v)
}

// strOmit writes the field unless v is empty.
func (w *jsonObject) strOmit(k, v string) {
	if v != "" {
		w.str(k, v)
	}
}

func (w *jsonObject) strList(k string, l []string) {
	w.key(k)
	w.b = append(w.b, '[')
	for i, s := range l {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.b = appendJSONString(w.b, s)
	}
	w.b = append(w.b, ']')
}

// strMap writes an object of names (sorted by name) and their values, in order; names
// without a value get "".
func (w *jsonObject) strMap(k string, names []namedTmpl, vals []string) {
	w.key(k)
	var o jsonObject
	o.b = w.b
	for i, n := range names {
		v := ""
		if i < len(vals) {
			v = vals[i]
		}
		o.str(n.name, v)
	}
	w.b = o.end()
}

// time writes Unix ms as an RFC 3339 string (operators.AppendTime: nothing to escape).
func (w *jsonObject) time(k string, ms int64) {
	w.key(k)
	w.b = append(w.b, '"')
	w.b = appendTime(w.b, ms)
	w.b = append(w.b, '"')
}

func (w *jsonObject) end() []byte {
	if w.n == 0 {
		return append(w.b, '{', '}')
	}
	return append(w.b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendJSONChars(b, s)
	return append(b, '"')
}

// appendJSONChars appends s escaped for a JSON string, without the quotes.
func appendJSONChars(b []byte, s string) []byte {
	sb := unsafe.Slice(unsafe.StringData(s), len(s)) // read only
	start := 0
	for i := 0; ; {
		for i+8 <= len(sb) && plain8(binary.LittleEndian.Uint64(sb[i:])) {
			i += 8 // the common case: 8 bytes that need no escaping, tested at once
		}
		for i < len(s) && plainByte[s[i]] {
			i++
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// plainByte[c] says whether c is printable ASCII other than '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plain8 says whether the 8 bytes of x are printable ASCII other than '"' and '\\' (nothing
// to escape, nothing to validate), with the bit tricks of "has a byte less than n" and "has
// a zero byte" over one 64-bit word.
func plain8(x uint64) bool {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	q, bs := x^(lsb*'"'), x^(lsb*'\\')
	ctl := (x - lsb*0x20) &^ x
	return (ctl|(q-lsb)&^q|(bs-lsb)&^bs|x)&msb == 0
}

// maxFastTime is 10000-01-01T00:00:00Z: appendTime formats the times before it itself.
const maxFastTime = 253_402_300_800_000

const digits2 = "00010203040506070809101112131415161718192021222324252627282930313233343536373839" +
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879" +
	"8081828384858687888990919293949596979899"

// appendTime appends t (Unix ms) exactly as operators.AppendTime does (RFC 3339 in UTC with
// milliseconds), without its digit loops for the times of years 1970 to 9999: it writes the
// time of every event-log record and every emitted event.
func appendTime(b []byte, t int64) []byte {
	if t < 0 || t >= maxFastTime {
		return operators.AppendTime(b, t)
	}
	days, ms := t/86_400_000, t%86_400_000
	// civil from days (H. Hinnant's algorithm), for days >= 0.
	z := days + 719_468
	era := z / 146_097
	doe := z - era*146_097
	yoe := (doe - doe/1460 + doe/36_524 - doe/146_096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if mp >= 10 {
		m = mp - 9
		y++
	}
	secs := ms / 1000
	ms %= 1000
	var a [24]byte
	put2 := func(i int, v int64) { a[i], a[i+1] = digits2[2*v], digits2[2*v+1] }
	put2(0, y/100)
	put2(2, y%100)
	a[4] = '-'
	put2(5, m)
	a[7] = '-'
	put2(8, d)
	a[10] = 'T'
	put2(11, secs/3600)
	a[13] = ':'
	put2(14, secs/60%60)
	a[16] = ':'
	put2(17, secs%60)
	a[19] = '.'
	a[20] = byte('0' + ms/100)
	put2(21, ms%100)
	a[23] = 'Z'
	return append(b, a[:]...)
}
