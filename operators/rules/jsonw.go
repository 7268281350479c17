package rules

import (
	"unicode/utf8"
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

// strMap writes the values of m in the order of names (sorted by name).
func (w *jsonObject) strMap(k string, names []namedTmpl, m map[string]string) {
	w.key(k)
	var o jsonObject
	o.b = w.b
	for _, n := range names {
		o.str(n.name, m[n.name])
	}
	w.b = o.end()
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
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
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
	b = append(b, s[start:]...)
	return append(b, '"')
}
