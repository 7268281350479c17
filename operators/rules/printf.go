package rules

import (
	"math"
	"reflect"
	"unicode/utf8"
)

// printfBound returns an upper bound of len(fmt.Sprintf(format, a...)), or a number above
// limit as soon as the bound passes it (so that its own work is bounded by limit and the
// length of format, whatever a holds). It follows fmt's reading of a format (doPrintf: flags,
// argument indexes, widths and precisions, the verbs and their arguments, what fmt writes for
// bad ones) and bounds what each verb writes for its argument (fmtBound). A width pads every
// value a verb prints, each element of a list and each key and value of a map, which is what
// makes printf's output grow past its arguments'.
func printfBound(format string, a []any, limit int) int {
	b := &fmtBounder{limit: limit}
	end := len(format)
	argNum := 0
	afterIndex := false
	reordered := false
	// argNumber is fmt's pp.argNumber.
	argNumber := func(argNum, i int, good *bool) (int, int, bool) {
		if len(format) <= i || format[i] != '[' {
			return argNum, i, false
		}
		reordered = true
		index, wid, ok := fmtParseArgNumber(format[i:])
		if ok && 0 <= index && index < len(a) {
			return index, i + wid, true
		}
		*good = false
		return argNum, i + wid, ok
	}
formatLoop:
	for i := 0; i < end && b.n <= limit; {
		good := true
		lasti := i
		for i < end && format[i] != '%' {
			i++
		}
		b.add(i - lasti)
		if i >= end {
			break
		}
		i++
		var f fmtFlags
	simpleFormat:
		for ; i < end; i++ {
			c := format[i]
			switch c {
			case '#':
				f.sharp = true
			case '0', '+', '-':
			case ' ':
				f.space = true
			default:
				if 'a' <= c && c <= 'z' && argNum < len(a) {
					if c == 'v' {
						f.sharpV, f.sharp = f.sharp, false
					}
					b.arg(a[argNum], rune(c), f)
					argNum++
					i++
					continue formatLoop
				}
				break simpleFormat
			}
		}
		argNum, i, afterIndex = argNumber(argNum, i, &good)
		if i < end && format[i] == '*' {
			i++
			var ok bool
			f.wid, ok, argNum = fmtIntFromArg(a, argNum)
			if !ok {
				b.add(len("%!(BADWIDTH)"))
			}
			f.wid = max(f.wid, -f.wid)
			afterIndex = false
		} else {
			var present bool
			f.wid, present, i = fmtParsenum(format, i, end)
			if afterIndex && present {
				good = false
			}
		}
		if i+1 < end && format[i] == '.' {
			i++
			if afterIndex {
				good = false
			}
			argNum, i, afterIndex = argNumber(argNum, i, &good)
			if i < end && format[i] == '*' {
				i++
				var ok bool
				f.prec, ok, argNum = fmtIntFromArg(a, argNum)
				if f.prec < 0 {
					f.prec, ok = 0, false
				}
				if !ok {
					b.add(len("%!(BADPREC)"))
				}
				afterIndex = false
			} else {
				f.prec, _, i = fmtParsenum(format, i, end)
			}
		}
		if !afterIndex {
			argNum, i, afterIndex = argNumber(argNum, i, &good)
		}
		if i >= end {
			b.add(len("%!(NOVERB)"))
			break
		}
		verb, size := utf8.DecodeRuneInString(format[i:])
		i += size
		switch {
		case verb == '%':
			b.add(1)
		case !good || argNum >= len(a): // %!v(BADINDEX), %!v(MISSING)
			b.add(len("%!(BADINDEX)") + utf8.RuneLen(verb)) // a bad byte is written as U+FFFD
		default:
			if verb == 'v' {
				f.sharpV, f.sharp = f.sharp, false
			}
			b.arg(a[argNum], verb, f)
			argNum++
		}
	}
	if !reordered && argNum < len(a) {
		b.add(len("%!(EXTRA )"))
		for _, arg := range a[argNum:] {
			b.add(2 + 1) // ", " and '='
			if arg != nil {
				b.add(len(reflect.TypeOf(arg).String()))
			}
			b.arg(arg, 'v', fmtFlags{})
		}
	}
	return b.n
}

// fmtParsenum, fmtParseArgNumber and fmtIntFromArg are fmt's parsenum, parseArgNumber and
// intFromArg.
func fmtParsenum(s string, start, end int) (num int, isnum bool, newi int) {
	if start >= end {
		return 0, false, end
	}
	for newi = start; newi < end && '0' <= s[newi] && s[newi] <= '9'; newi++ {
		if fmtTooLarge(num) {
			return 0, false, end
		}
		num = num*10 + int(s[newi]-'0')
		isnum = true
	}
	return
}

func fmtTooLarge(x int) bool { return x > 1e6 || x < -1e6 }

func fmtParseArgNumber(format string) (index int, wid int, ok bool) {
	if len(format) < 3 {
		return 0, 1, false
	}
	for i := 1; i < len(format); i++ {
		if format[i] == ']' {
			width, ok, newi := fmtParsenum(format, 1, i)
			if !ok || newi != i {
				return 0, i + 1, false
			}
			return width - 1, i + 1, true
		}
	}
	return 0, 1, false
}

func fmtIntFromArg(a []any, argNum int) (num int, isInt bool, newArgNum int) {
	newArgNum = argNum
	if argNum < len(a) {
		switch v := reflect.ValueOf(a[argNum]); v.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			if n := v.Int(); int64(int(n)) == n {
				num, isInt = int(n), true
			}
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
			if n := v.Uint(); int64(n) >= 0 && uint64(int(n)) == n {
				num, isInt = int(n), true
			}
		}
		newArgNum = argNum + 1
		if fmtTooLarge(num) {
			num, isInt = 0, false
		}
	}
	return
}

type fmtFlags struct {
	sharp, sharpV, space bool
	wid, prec            int // 0 when absent: both only ever add to a bound
}

type fmtBounder struct {
	n, limit int
}

func (b *fmtBounder) add(n int) { b.n = min(b.n+n, math.MaxInt/2) }

// arg adds the bound of what fmt prints for arg with verb (printArg): %T and %p first, then
// the value.
func (b *fmtBounder) arg(arg any, verb rune, f fmtFlags) {
	if arg == nil {
		b.add(len("%!(<nil>)") + utf8.RuneLen(verb) + f.wid)
		return
	}
	switch verb {
	case 'T':
		b.add(len(reflect.TypeOf(arg).String()) + f.wid)
		return
	case 'p':
		b.add(len("0x") + 16 + f.wid)
		b.bad(reflect.ValueOf(arg), verb, f) // not a pointer: %!p(type=value)
		return
	}
	b.value(reflect.ValueOf(arg), verb, f, 0)
}

// bad adds what fmt writes for a verb that does not suit v: %!verb(type=value).
func (b *fmtBounder) bad(v reflect.Value, verb rune, f fmtFlags) {
	b.add(len("%!(=)") + utf8.RuneLen(verb) + len(v.Type().String()))
	b.value(v, 'v', fmtFlags{wid: f.wid, prec: f.prec}, 0)
}

// value adds the bound of what fmt prints for v (printValue), stopping once over the limit.
func (b *fmtBounder) value(v reflect.Value, verb rune, f fmtFlags, depth int) {
	wid, prec := f.wid, max(f.prec, 0)
	switch {
	case b.n > b.limit:
		return
	case !v.IsValid():
		b.add(len("<invalid reflect.Value>") + wid)
		return
	case v.Kind() == reflect.Interface:
	case v.Type().PkgPath() != "":
		b.add(b.limit + 1) // a named type may format itself (a Stringer): no bound known
		return
	case verb == 'w': // %w is for errors: fmt prints %!w(type=value) for anything else
		b.bad(v, verb, f)
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		if verb != 't' && verb != 'v' {
			b.bad(v, verb, f)
			return
		}
		b.add(len("false") + wid)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		var u uint64
		if v.CanInt() {
			u = uint64(v.Int())
			if v.Int() < 0 {
				u = -u
			}
		} else {
			u = v.Uint()
		}
		const signPrefix = len("-0x")
		switch verb {
		case 'v', 'd':
			b.add(max(digits(u, 10), prec) + signPrefix + wid)
		case 'b':
			b.add(max(digits(u, 2), prec) + signPrefix + wid)
		case 'o', 'O':
			b.add(max(digits(u, 8), prec) + signPrefix + wid)
		case 'x', 'X':
			b.add(max(digits(u, 16), prec) + signPrefix + wid)
		case 'c', 'q', 'U': // a rune: 'x', '\U0010ffff', U+10FFFF 'x'
			b.add(len("U+0010FFFF '\\U0010ffff'") + prec + wid)
		default:
			b.bad(v, verb, f)
		}
	case reflect.Float32, reflect.Float64:
		b.float(v, v.Float(), verb, f)
	case reflect.Complex64, reflect.Complex128:
		c := v.Complex()
		b.add(len("(i)"))
		b.float(v, real(c), verb, f)
		b.float(v, imag(c), verb, f)
	case reflect.String:
		n := v.Len()
		switch verb {
		case 'v', 's':
			if f.sharpV {
				b.add(4*n + 2 + wid) // quoted: at most \xNN for a byte
			} else {
				b.add(n + wid)
			}
		case 'q':
			b.add(4*n + 2 + wid)
		case 'x', 'X':
			b.add(5*n + 2 + wid) // with "# ": 0xNN and a space per byte
		default:
			b.bad(v, verb, f)
		}
	case reflect.Map:
		b.add(len(v.Type().String()) + len("{}(nil)"))
		for it := v.MapRange(); it.Next() && b.n <= b.limit; {
			b.add(len(", :"))
			b.value(it.Key(), verb, f, depth+1)
			b.value(it.Value(), verb, f, depth+1)
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			// bytes: as a string, or each as a number ({0x61, ...}), padded each
			b.add(len(v.Type().String()) + v.Len()*(6+wid) + 5*v.Len() + 2 + wid)
			return
		}
		b.add(len(v.Type().String()) + len("{}(nil)"))
		for i := 0; i < v.Len() && b.n <= b.limit; i++ {
			b.add(len(", "))
			b.value(v.Index(i), verb, f, depth+1)
		}
	case reflect.Interface:
		if v.IsNil() {
			b.add(len("interface {}(nil)") + wid)
			return
		}
		b.value(v.Elem(), verb, f, depth+1)
	default: // pointers, structs, channels, functions: not in a template's data
		b.add(b.limit + 1)
	}
}

// float adds the bound of a float64 printed with verb.
func (b *fmtBounder) float(v reflect.Value, x float64, verb rune, f fmtFlags) {
	wid, prec := f.wid, max(f.prec, 0)
	const sign, exp = 1, len("e+308")
	switch verb {
	case 'v', 'g', 'G', 'x', 'X':
		// Shortest: 17 digits; with a precision, that many (as many zeros with '#'), and in
		// %f form at most 4 leading zeros.
		b.add(sign + len("0x1.p") + max(17, prec, 6) + len("0.0000") + exp + wid)
	case 'e', 'E':
		b.add(sign + len("1.") + max(prec, 6) + exp + wid)
	case 'f', 'F':
		// As many digits as the integer part has, then the precision.
		ints := 1
		if a := math.Abs(x); a >= 10 && !math.IsInf(a, 0) {
			ints = int(math.Log10(a)) + 2
		}
		b.add(sign + ints + len(".") + max(prec, 6) + len("+Inf") + wid)
	case 'b':
		b.add(sign + len("4503599627370496p-1074") + wid)
	default:
		b.bad(v, verb, f)
	}
}

// digits returns the number of digits of u in base.
func digits(u uint64, base uint64) int {
	n := 1
	for ; u >= base; u /= base {
		n++
	}
	return n
}
