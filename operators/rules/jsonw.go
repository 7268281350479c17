package rules

import (
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/internal/jsonx"
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
	w.b = jsonx.AppendQuoted(w.b, k)
	w.b = append(w.b, ':')
}

func (w *jsonObject) str(k, v string) {
	w.key(k)
	w.b = jsonx.AppendQuoted(w.b, v)
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
		w.b = jsonx.AppendQuoted(w.b, s)
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
