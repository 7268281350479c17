package rules

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strconv"
)

// A tiny JSON scanner for the lazy part of the environment: conditions name property paths
// (event.properties.cart.total), and only those are read out of the raw properties object,
// without decoding the rest. Decoding properties with encoding/json costs microseconds per
// event; finding one field costs a scan over the bytes before it. An Env scans an event's
// properties once for every top-level name the config's paths start at (Env.scanProps), and
// parses a value only when a condition or template reads it.
//
// The input was validated by the decoder (operators.Decoder) or comes from dwell itself, but
// the scanner still fails safely (not found) on anything malformed.

// jkind is the kind of a property value.
type jkind uint8

const (
	jMissing jkind = iota // absent (or the path crosses a non-object)
	jNull
	jBool
	jNum
	jStr
	jOther // an object or an array
)

var jkindNames = [...]string{"missing", "null", "bool", "number", "string", "object or array"}

func (k jkind) String() string { return jkindNames[k] }

// jval is one property value. s may alias the properties bytes.
type jval struct {
	k jkind
	b bool
	n float64
	s string
}

func skipWS(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"', and whether it has
// escapes; -1 when unterminated.
func skipString(b []byte, i int) (int, bool) {
	esc := false
	for i++; i < len(b); {
		if i+8 <= len(b) {
			m := quoteOrBackslash8(binary.LittleEndian.Uint64(b[i:]))
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

// quoteOrBackslash8 marks the bytes of x that are '"' or '\\' (the high bit of each, with the
// bit trick of "has a zero byte" over x^c). Bytes above the first marked one may be marked
// wrongly (a borrow), the first one never.
func quoteOrBackslash8(x uint64) uint64 {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	q, bs := x^(lsb*'"'), x^(lsb*'\\')
	return ((q-lsb)&^q | (bs-lsb)&^bs) & msb
}

// skipValue returns the index after the value starting at b[i] (after whitespace), or -1.
func skipValue(b []byte, i int) int {
	i = skipWS(b, i)
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		j, _ := skipString(b, i)
		return j
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				j, _ := skipString(b, i)
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

// field returns the raw value of key in the JSON object obj, or nil.
func field(obj []byte, key string) []byte {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil
	}
	i++
	for {
		i = skipWS(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return nil
		}
		end, esc := skipString(obj, i)
		if end < 0 {
			return nil
		}
		var match bool
		if esc {
			var k string
			match = json.Unmarshal(obj[i:end], &k) == nil && k == key
		} else {
			match = view(obj[i+1:end-1]) == key
		}
		i = skipWS(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return nil
		}
		start := skipWS(obj, i+1)
		j := skipValue(obj, start)
		if j < 0 {
			return nil
		}
		if match {
			return obj[start:j]
		}
		i = skipWS(obj, j)
		if i >= len(obj) || obj[i] != ',' {
			return nil
		}
		i++
	}
}

// lookup follows path through nested objects of obj.
func lookup(obj []byte, path []string) jval {
	raw := obj
	for _, k := range path {
		raw = field(raw, k)
		if raw == nil {
			return jval{}
		}
	}
	return parseScalar(raw)
}

func parseScalar(raw []byte) jval {
	if len(raw) == 0 {
		return jval{}
	}
	switch c := raw[0]; {
	case c == '"':
		if _, esc := skipString(raw, 0); esc {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return jval{}
			}
			return jval{k: jStr, s: s}
		}
		return jval{k: jStr, s: view(raw[1 : len(raw)-1])}
	case c == 't':
		return jval{k: jBool, b: true}
	case c == 'f':
		return jval{k: jBool}
	case c == 'n':
		return jval{k: jNull}
	case c == '{' || c == '[':
		return jval{k: jOther}
	default:
		if f, ok := parseSimpleNumber(raw); ok {
			return jval{k: jNum, n: f}
		}
		f, err := strconv.ParseFloat(view(raw), 64)
		if err != nil {
			return jval{}
		}
		return jval{k: jNum, n: f}
	}
}

// pow10 are the powers of ten that a float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// parseSimpleNumber reads the common numbers, -?DIGITS(.DIGITS)? with at most 15 digits,
// exactly as strconv.ParseFloat does (an integer below 2^53 divided by an exact power of ten
// is correctly rounded); ok is false for anything else, which ParseFloat then reads.
func parseSimpleNumber(raw []byte) (float64, bool) {
	i, neg := 0, false
	if len(raw) > 0 && raw[0] == '-' {
		i, neg = 1, true
	}
	var mant uint64
	digits, frac, dot := 0, 0, false
	for ; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
			if dot {
				frac++
			}
		case c == '.' && !dot && digits > 0:
			dot = true
		default:
			return 0, false
		}
	}
	if digits == 0 || digits > 15 || dot && frac == 0 {
		return 0, false
	}
	f := float64(mant) / pow10[frac]
	if neg {
		f = -f
	}
	return f, true
}

// arrayHas says whether the JSON array of strings arr holds s.
func arrayHas(arr []byte, s string) bool {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return false
	}
	i++
	for {
		i = skipWS(arr, i)
		if i >= len(arr) || arr[i] == ']' {
			return false
		}
		j := skipValue(arr, i)
		if j < 0 {
			return false
		}
		if v := parseScalar(arr[i:j]); v.k == jStr && v.s == s {
			return true
		}
		i = skipWS(arr, j)
		if i >= len(arr) || arr[i] != ',' {
			return false
		}
		i++
	}
}

// arrayLen counts the elements of the JSON array arr (0 when it is not one).
func arrayLen(arr []byte) int {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return 0
	}
	n := 0
	for i++; ; n++ {
		i = skipWS(arr, i)
		if i >= len(arr) || arr[i] == ']' {
			return n
		}
		j := skipValue(arr, i)
		if j < 0 {
			return n
		}
		i = skipWS(arr, j)
		if i < len(arr) && arr[i] == ',' {
			i++
		}
	}
}
