package operators

// Event times are Unix milliseconds. Parsing and formatting are hand-written because they run
// for every event: time.Parse costs about 200 ns and allocates on error; these allocate nothing.

const (
	msPerDay = 86_400_000
	// maxTime is 9999-12-31T23:59:59.999Z; later and negative times are rejected.
	maxTime = 253_402_300_799_999
)

// daysFromCivil converts a proleptic Gregorian date to days since 1970-01-01 (H. Hinnant).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era = (z - 146096) / 146097
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return
}

func daysIn(y, m int64) int64 {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func digits(b []byte, n int) (int64, bool) {
	if len(b) < n {
		return 0, false
	}
	var v int64
	for _, c := range b[:n] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// ParseTime parses an RFC 3339 timestamp in any common form: 'T', 't' or ' ' between date and
// time, optional seconds, any number of fraction digits (kept to the millisecond, truncated),
// and a zone of Z, z, ±HH:MM, ±HHMM or ±HH; no zone means UTC. It returns Unix milliseconds.
func ParseTime(b []byte) (int64, bool) {
	y, ok1 := digits(b, 4)
	if !ok1 || len(b) < 16 || b[4] != '-' || b[7] != '-' {
		return 0, false
	}
	mo, ok2 := digits(b[5:], 2)
	d, ok3 := digits(b[8:], 2)
	if !ok2 || !ok3 || (b[10] != 'T' && b[10] != 't' && b[10] != ' ') || b[13] != ':' {
		return 0, false
	}
	h, ok4 := digits(b[11:], 2)
	mi, ok5 := digits(b[14:], 2)
	if !ok4 || !ok5 {
		return 0, false
	}
	var s, ms int64
	rest := b[16:]
	if len(rest) > 0 && rest[0] == ':' {
		var ok bool
		if s, ok = digits(rest[1:], 2); !ok {
			return 0, false
		}
		rest = rest[3:]
		if len(rest) > 0 && (rest[0] == '.' || rest[0] == ',') {
			i := 1
			for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
				if i <= 3 {
					ms = ms*10 + int64(rest[i]-'0')
				}
				i++
			}
			if i == 1 {
				return 0, false
			}
			for n := i; n <= 3; n++ {
				ms *= 10
			}
			rest = rest[i:]
		}
	}
	if mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) || h > 23 || mi > 59 || s > 59 {
		return 0, false
	}
	var off int64
	switch {
	case len(rest) == 0:
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	case rest[0] == '+' || rest[0] == '-':
		oh, ok := digits(rest[1:], 2)
		if !ok {
			return 0, false
		}
		var om int64
		switch z := rest[3:]; {
		case len(z) == 0:
		case len(z) == 3 && z[0] == ':':
			om, ok = digits(z[1:], 2)
		case len(z) == 2:
			om, ok = digits(z, 2)
		default:
			ok = false
		}
		if !ok || oh > 23 || om > 59 {
			return 0, false
		}
		off = (oh*60 + om) * 60_000
		if rest[0] == '-' {
			off = -off
		}
	default:
		return 0, false
	}
	t := daysFromCivil(y, mo, d)*msPerDay + ((h*60+mi)*60+s)*1000 + ms - off
	if t < 0 || t > maxTime {
		return 0, false
	}
	return t, true
}

// AppendTime appends t (Unix ms) as RFC 3339 in UTC with milliseconds: 2006-01-02T15:04:05.000Z.
func AppendTime(dst []byte, t int64) []byte {
	days, ms := t/msPerDay, t%msPerDay
	if ms < 0 {
		days--
		ms += msPerDay
	}
	y, m, d := civilFromDays(days)
	secs := ms / 1000
	ms %= 1000
	dst = appendPad(dst, y, 4)
	dst = append(dst, '-')
	dst = appendPad(dst, m, 2)
	dst = append(dst, '-')
	dst = appendPad(dst, d, 2)
	dst = append(dst, 'T')
	dst = appendPad(dst, secs/3600, 2)
	dst = append(dst, ':')
	dst = appendPad(dst, secs/60%60, 2)
	dst = append(dst, ':')
	dst = appendPad(dst, secs%60, 2)
	dst = append(dst, '.')
	dst = appendPad(dst, ms, 3)
	return append(dst, 'Z')
}

func appendPad(dst []byte, v int64, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for v >= 10 || width > 1 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	i--
	buf[i] = byte('0' + v)
	return append(dst, buf[i:]...)
}
