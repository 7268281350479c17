package rules

import (
	"encoding/json"
	"strconv"

	"github.com/dwellhq/dwell/operators/internal/jsonx"
)

// Property lookup for the lazy part of the environment, over the scanners of
// operators/internal/jsonx: conditions name property paths (event.properties.cart.total), and
// only those are read out of the raw properties object, without decoding the rest. Decoding properties with encoding/json costs microseconds per
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

// field returns the raw value of key in the JSON object obj, or nil.
func field(obj []byte, key string) []byte {
	i := jsonx.SkipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil
	}
	i++
	for {
		i = jsonx.SkipWS(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return nil
		}
		end, esc := jsonx.SkipString(obj, i)
		if end < 0 {
			return nil
		}
		var match bool
		if esc {
			var k string
			match = json.Unmarshal(obj[i:end], &k) == nil && k == key
		} else {
			match = jsonx.String(obj[i+1:end-1]) == key
		}
		i = jsonx.SkipWS(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return nil
		}
		start := jsonx.SkipWS(obj, i+1)
		j := jsonx.SkipValue(obj, start)
		if j < 0 {
			return nil
		}
		if match {
			return obj[start:j]
		}
		i = jsonx.SkipWS(obj, j)
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
		if _, esc := jsonx.SkipString(raw, 0); esc {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return jval{}
			}
			return jval{k: jStr, s: s}
		}
		return jval{k: jStr, s: jsonx.String(raw[1 : len(raw)-1])}
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
		f, err := strconv.ParseFloat(jsonx.String(raw), 64)
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
	i := jsonx.SkipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return false
	}
	i++
	for {
		i = jsonx.SkipWS(arr, i)
		if i >= len(arr) || arr[i] == ']' {
			return false
		}
		j := jsonx.SkipValue(arr, i)
		if j < 0 {
			return false
		}
		if v := parseScalar(arr[i:j]); v.k == jStr && v.s == s {
			return true
		}
		i = jsonx.SkipWS(arr, j)
		if i >= len(arr) || arr[i] != ',' {
			return false
		}
		i++
	}
}

// arrayLen counts the elements of the JSON array arr (0 when it is not one).
func arrayLen(arr []byte) int {
	i := jsonx.SkipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return 0
	}
	n := 0
	for i++; ; n++ {
		i = jsonx.SkipWS(arr, i)
		if i >= len(arr) || arr[i] == ']' {
			return n
		}
		j := jsonx.SkipValue(arr, i)
		if j < 0 {
			return n
		}
		i = jsonx.SkipWS(arr, j)
		if i < len(arr) && arr[i] == ',' {
			i++
		}
	}
}
