package operators

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dwellhq/dwell/operators/internal/jsonx"
)

// Decoder turns record values into Events. It is a single-pass JSON scanner written for this one
// schema: known fields are extracted as views into the record value, and every other byte is
// still checked (structure, literals, numbers, string escapes, UTF-8, nesting depth), so that
// whatever dwell passes on is valid JSON. It allocates only for strings with escapes and for
// event types not yet seen. A Decoder is owned by one goroutine.
type Decoder struct {
	maxBytes, maxDepth, maxID int
	skew                      int64
	types                     map[string]string // interned normalised types
	norm                      []byte

	// batch is the raw events array of the record Decode last found to be a batch
	// (ErrBatch), batchTime its time when it had one.
	batch     []byte
	batchTime int64
	batchHasT bool
}

// ErrBatch is what Decode returns for a record in Tracardi's /track batch shape: an object
// with an "events" array, whose other fields (source, session, profile, context, time) are
// those of every event in it. Decode has filled ev with them; Elements then decodes the
// events one by one.
var ErrBatch = &DecodeError{Reason: "batch", Detail: "a batch of events"}

// maxInternedTypes bounds the type intern table; rarer types beyond it are allocated per event.
const maxInternedTypes = 4096

// NewDecoder returns a decoder for the limits in cfg (defaults filled).
func NewDecoder(cfg *Config) *Decoder {
	return &Decoder{
		maxBytes: cfg.MaxEventBytes, maxDepth: cfg.MaxDepth, maxID: cfg.MaxIDBytes,
		skew:  cfg.MaxFutureSkew.Milliseconds(),
		types: make(map[string]string),
	}
}

// DecodeError says why a record was rejected.
type DecodeError struct {
	Reason Reason
	Detail string // the field, or the byte offset of malformed JSON
}

func (e *DecodeError) Error() string { return string(e.Reason) + ": " + e.Detail }

// Decode decodes rec into ev. On failure ev is undefined and the error says why; the caller
// dead-letters rec. Syntax comes first: a value that is not valid JSON (or not valid UTF-8, or
// nested too deep) is rejected for that even when a field before the fault has the wrong type.
// A record timestamp outside the range of event times (negative, or after 9999) counts as
// absent for the event time and the skew rule.
func (d *Decoder) Decode(rec *Record, ev *Event) *DecodeError {
	*ev = Event{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Raw: rec.Value, RecordTime: rec.Timestamp}
	if len(rec.Value) > d.maxBytes {
		return &DecodeError{ReasonTooLarge, "value is " + strconv.Itoa(len(rec.Value)) + " bytes, limit " + strconv.Itoa(d.maxBytes)}
	}
	p := parser{b: rec.Value, maxDepth: d.maxDepth, field: "event"}
	var rawType []byte
	haveTime := false
	p.ws()
	if p.i >= len(p.b) {
		return &DecodeError{ReasonMalformedJSON, "empty value"}
	}
	if p.b[p.i] != '{' {
		// Valid JSON of another kind is the wrong type; anything else is malformed.
		p.value()
		if p.ws(); p.fail == "" && p.i == len(p.b) {
			return &DecodeError{ReasonWrongFieldType, "event must be a JSON object"}
		}
		p.malformed()
		return &DecodeError{p.fail, p.detailString()}
	}
	p.objStart()
	var events []byte
	for first := true; ; first = false {
		key, more := p.objNext(first)
		if !more || p.fail != "" {
			break
		}
		p.field = "event"
		switch string(key) {
		case "events":
			// An array makes the record a batch; anything else is an unknown field, as before.
			if p.fail == "" && p.peek() == '[' {
				p.field = "events"
				events = p.rawValue('[')
			} else {
				p.value()
			}
		case "id":
			p.field = "id"
			ev.ID = p.idValue(d.maxID, false)
		case "type":
			p.field = "type"
			rawType = p.idValue(d.maxID, true)
			if rawType == nil {
				p.reject(ReasonMissingType, "type is null")
			}
		case "time":
			p.field = "time"
			haveTime = p.timeValue(ev)
		case "profile":
			p.field = "profile"
			ev.Profile = p.refValue(d.maxID)
		case "session":
			p.field = "session"
			ev.Session = p.refValue(d.maxID)
		case "source":
			p.field = "source"
			ev.Source = p.refValue(d.maxID)
		case "properties":
			p.field = "properties"
			ev.Properties = p.rawValue('{')
		case "context":
			p.field = "context"
			ev.Context = p.contextValue(ev)
		case "traits":
			p.field = "traits"
			ev.Traits = p.rawValue('{')
		case "tags":
			p.field = "tags"
			ev.Tags = p.tagsValue()
		case "options":
			p.field = "options"
			p.optionsValue(ev)
		default:
			p.field = "event"
			p.value()
		}
	}
	if p.fail == "" {
		p.ws()
		if p.i != len(p.b) {
			p.malformed()
		}
	}
	if p.fail != "" {
		return &DecodeError{p.fail, p.detailString()}
	}
	if p.bad != "" {
		return &DecodeError{p.bad, p.badDetail}
	}
	if events != nil {
		d.batch, d.batchTime, d.batchHasT = events, ev.Time, haveTime
		if ev.TimeAdjusted {
			d.batchTime = ev.OriginalTime // the elements' skew is checked on their own
		}
		return ErrBatch
	}
	if rawType == nil {
		return &DecodeError{ReasonMissingType, "no type field"}
	}
	ev.Type = d.normType(rawType)
	if ev.Type == "" {
		return &DecodeError{ReasonMissingType, "type is empty"}
	}
	if _, sys := ParseSystemType(ev.Type); sys {
		return &DecodeError{ReasonSystemEventType, ev.Type + " is emitted by dwell and not accepted from producers"}
	}
	recTime := rec.Timestamp
	if recTime < 0 || recTime > maxTime { // NoTimestamp, or no usable time
		recTime = NoTimestamp
	}
	if !haveTime {
		if recTime == NoTimestamp {
			return &DecodeError{ReasonMissingTime, "no time field and no record timestamp"}
		}
		ev.Time = recTime
	} else if recTime != NoTimestamp && ev.Time-d.skew > recTime {
		ev.OriginalTime, ev.Time, ev.TimeAdjusted = ev.Time, recTime, true
	}
	return nil
}

// Elements calls fn for each element of the batch that Decode just returned ErrBatch for:
// batch holds the batch's fields (as Decode filled them), rec is the batch's record. Each
// element becomes an event of its own: a self-contained JSON object (ev.Raw, newly allocated)
// made of the batch's id-less defaults, an id derived from rec's topic, partition, offset and
// the element's index (AppendElementID), the batch's source, session, profile, context and
// time, followed by the element's own members, which win; it is decoded as a record at rec's
// offset and timestamp would be. So an element with no time of its own takes the batch's,
// else rec's timestamp; and the reorder buffer, a dead letter or a move back to the input
// keeps everything the event was. An element that fails to decode comes with its error and
// its bytes: it is dead-lettered alone.
func (d *Decoder) Elements(rec *Record, batch *Event, ev *Event, fn func(index int, elem []byte, ev *Event, err *DecodeError)) {
	arr := d.batch
	d.batch = nil
	batchTime, batchHasT := d.batchTime, d.batchHasT
	sub := Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Timestamp: rec.Timestamp}
	eachElement(arr, func(index int, elem []byte) {
		sub.Value = elem
		if elem[0] == '{' {
			sub.Value = appendElement(make([]byte, 0, len(elem)+len(batch.Context)+160), rec, index, batch, batchTime, batchHasT, elem)
		}
		fn(index, sub.Value, ev, d.element(&sub, ev, index))
	})
}

// CheckElements is Elements without building the elements' events: it decodes each element of
// the batch Decode just returned ErrBatch for on its own, as a record at rec's timestamp, and
// calls fn with the verdict Elements would give it. An element's own members are all that
// can fail (the batch's fields were checked by Decode), except the size of the event Elements
// would build, which is bounded here by the element's size plus the batch's fields. With
// rec.Timestamp NoTimestamp, an element without a time of its own fails missing-time and
// nothing else (that check comes last): so a caller learns which elements have one. It
// allocates nothing for valid elements: for an intake that rejects a bad request whole
// (dwell collect) rather than dead-lettering its bad elements one by one.
func (d *Decoder) CheckElements(rec *Record, batch *Event, ev *Event, fn func(index int, elem []byte, ev *Event, err *DecodeError)) {
	arr := d.batch
	d.batch = nil
	sub := Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Timestamp: rec.Timestamp}
	// what appendElement adds: the id, the batch's refs (quoted, escapes at most doubling
	// them), its context and its time
	extra := 64 + 2*(len(batch.Source)+len(batch.Session)+len(batch.Profile)) + 40 + len(batch.Context) + 30
	eachElement(arr, func(index int, elem []byte) {
		if len(elem)+extra > d.maxBytes {
			fn(index, elem, ev, &DecodeError{ReasonTooLarge, "events[" + strconv.Itoa(index) + "]: with the batch's fields the event is over " + strconv.Itoa(d.maxBytes) + " bytes"})
			return
		}
		sub.Value = elem
		fn(index, elem, ev, d.element(&sub, ev, index))
	})
}

// element decodes one batch element and names it in the error.
func (d *Decoder) element(sub *Record, ev *Event, index int) *DecodeError {
	err := d.Decode(sub, ev)
	switch {
	case err == ErrBatch:
		d.batch = nil
		err = &DecodeError{ReasonWrongFieldType, "events[" + strconv.Itoa(index) + "]: a batch inside a batch"}
	case err != nil:
		err = &DecodeError{err.Reason, "events[" + strconv.Itoa(index) + "]: " + err.Detail}
	}
	return err
}

// eachElement calls fn with each value of the JSON array arr (valid JSON: Decode checked it).
func eachElement(arr []byte, fn func(index int, elem []byte)) {
	i := jsonx.SkipWS(arr, 1) // after '['
	for index := 0; i < len(arr) && arr[i] != ']'; index++ {
		j := jsonx.SkipValue(arr, i)
		if j < 0 {
			return
		}
		fn(index, arr[i:j])
		i = jsonx.SkipWS(arr, j)
		if i < len(arr) && arr[i] == ',' {
			i = jsonx.SkipWS(arr, i+1)
		}
	}
}

// appendElement appends the event object of a batch element (see Elements): the batch's
// fields, then the element's members, so that those of the element win (the decoder keeps the
// last of a repeated field).
func appendElement(dst []byte, rec *Record, index int, batch *Event, t int64, hasT bool, elem []byte) []byte {
	dst = append(dst, `{"id":"`...)
	dst = AppendElementID(dst, rec, index)
	dst = append(dst, '"')
	for _, f := range [...]struct {
		name string
		v    []byte
	}{{"source", batch.Source}, {"session", batch.Session}, {"profile", batch.Profile}} {
		if f.v != nil {
			dst = append(dst, `,"`...)
			dst = append(dst, f.name...)
			dst = append(dst, `":`...)
			dst = jsonx.AppendQuotedUTF8(dst, jsonx.String(f.v))
		}
	}
	if batch.Context != nil {
		dst = append(dst, `,"context":`...)
		dst = append(dst, batch.Context...)
	}
	if hasT {
		dst = append(dst, `,"time":`...)
		dst = strconv.AppendInt(dst, t, 10)
	}
	if k := jsonx.SkipWS(elem, 1); k < len(elem) && elem[k] != '}' {
		dst = append(dst, ',')
	}
	return append(dst, elem[1:]...)
}

// AppendElementID appends the derived id of element index of the batch in rec: 32 hex digits
// of SHA-256 over topic, partition, offset and index (never the id of a single event).
func AppendElementID(dst []byte, rec *Record, index int) []byte {
	var scratch [112]byte
	b := append(scratch[:0], rec.Topic...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(rec.Partition))
	b = binary.BigEndian.AppendUint64(b, uint64(rec.Offset))
	b = append(b, 'e')
	b = binary.BigEndian.AppendUint64(b, uint64(index))
	sum := sha256.Sum256(b)
	return hex.AppendEncode(dst, sum[:16])
}

// normType lower-cases t, trims spaces and turns inner spaces into '-', returning an interned
// string.
func (d *Decoder) normType(t []byte) string {
	t = bytes.TrimSpace(t)
	n := d.norm[:0]
	for _, c := range t {
		if c >= utf8.RuneSelf {
			return NormalizeType(string(t)) // rare: non-ASCII letters
		}
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c == ' ':
			c = '-'
		}
		n = append(n, c)
	}
	d.norm = n
	return d.intern(n)
}

// intern returns b as a string, shared with earlier equal strings while the table has room.
func (d *Decoder) intern(b []byte) string {
	if s, ok := d.types[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(d.types) < maxInternedTypes {
		d.types[s] = s
	}
	return s
}

// NormalizeType normalises an event type: trimmed, lower case, spaces to '-'.
func NormalizeType(t string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(t)), " ", "-")
}

// parser is the scanner state for one record. Syntax errors (malformed JSON, invalid UTF-8, too
// deep) are sticky: the first sets fail and every later step becomes a no-op, so the field loops
// need no error plumbing. Schema errors (a field of the wrong type, an invalid time, an id too
// long, a null type) only set bad: the scan goes on, so that a record that is also malformed is
// reported as malformed, whatever comes first.
type parser struct {
	b         []byte
	i         int
	depth     int
	maxDepth  int
	field     string // top-level field being read, for error details
	fail      Reason
	detail    string
	at        int
	bad       Reason
	badDetail string
}

// reject records a schema error; the first one is reported.
func (p *parser) reject(r Reason, detail string) {
	if p.fail == "" && p.bad == "" {
		p.bad, p.badDetail = r, detail
	}
}

func (p *parser) detailString() string {
	if p.detail != "" {
		return p.detail
	}
	return p.field + " at byte " + strconv.Itoa(p.at)
}

func (p *parser) malformed() {
	if p.fail == "" {
		p.fail, p.at = ReasonMalformedJSON, p.i
	}
}

// wrongType records that the value at p.i is not of the kind wanted. Every caller then skips
// the value with p.value(), which reports it as malformed if it is not a value at all (a
// syntax error wins over a schema error).
func (p *parser) wrongType(want string) {
	p.reject(ReasonWrongFieldType, p.field+" must be "+want)
}

// ws skips whitespace. It is the validating parser's own rather than jsonx.SkipWS: inlined
// into peek with the first-byte test below, it keeps compact JSON (no whitespace between
// tokens) to one comparison per token, and going through SkipWS made BenchmarkDecode 11-16%
// slower.
func (p *parser) ws() {
	// Fast path: compact JSON has no whitespace between tokens.
	if p.i < len(p.b) && p.b[p.i] > ' ' {
		return
	}
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (p *parser) peek() byte {
	if p.i < len(p.b) {
		if c := p.b[p.i]; c > ' ' {
			return c
		}
	}
	p.ws()
	if p.i >= len(p.b) {
		return 0
	}
	return p.b[p.i]
}

func (p *parser) expect(c byte) {
	if p.peek() != c {
		p.malformed()
		return
	}
	p.i++
}

// objStart consumes '{' (the caller has checked it) and enters a nesting level.
func (p *parser) objStart() {
	p.i++
	p.enter()
}

func (p *parser) enter() {
	p.depth++
	if p.depth > p.maxDepth && p.fail == "" {
		p.fail, p.detail = ReasonTooDeep, p.field+" nests deeper than "+strconv.Itoa(p.maxDepth)
	}
}

// objNext reads up to the next member's value and returns its key; more is false at '}'.
func (p *parser) objNext(first bool) (key []byte, more bool) {
	if p.fail != "" {
		return nil, false
	}
	c := p.peek()
	switch {
	case c == '}':
		p.i++
		p.depth--
		return nil, false
	case !first && c == ',':
		p.i++
		c = p.peek()
	case !first:
		p.malformed()
		return nil, false
	}
	if c != '"' {
		p.malformed()
		return nil, false
	}
	key, _ = p.str()
	p.expect(':')
	p.ws()
	return key, p.fail == ""
}

// str reads a string at p.i (which is '"') and returns its decoded contents: a view into b
// unless it has escapes. ok is false on error (p.fail is set).
func (p *parser) str() (s []byte, ok bool) {
	b := p.b
	start := p.i + 1
	i := start
	esc, high := false, false
	for {
		i = jsonx.SkipPlain(b, i)
		if i >= len(b) {
			p.i = i
			p.malformed()
			return nil, false
		}
		switch c := b[i]; {
		case c == '"':
			s := b[start:i]
			p.i = i + 1
			if high && !utf8.Valid(s) {
				if p.fail == "" {
					p.fail, p.detail = ReasonInvalidUTF8, p.field+" has a string that is not valid UTF-8"
				}
				return nil, false
			}
			if esc {
				return p.unescape(s), p.fail == ""
			}
			return s, true
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				p.i = i
				p.malformed()
				return nil, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					p.i = i
					p.malformed()
					return nil, false
				}
				i += 6
			default:
				p.i = i
				p.malformed()
				return nil, false
			}
		case c < 0x20:
			p.i = i
			p.malformed()
			return nil, false
		default:
			high = true
			i++
		}
	}
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func hexVal(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// unescape decodes an already validated string body with escapes. Lone surrogates become U+FFFD,
// as encoding/json does.
func (p *parser) unescape(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch s[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hexVal(s[i+2:])
			i += 6
			if r >= 0xD800 && r < 0xDC00 && i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
				if r2 := hexVal(s[i+2:]); r2 >= 0xDC00 && r2 < 0xE000 {
					r = (r-0xD800)<<10 | (r2 - 0xDC00) + 0x10000
					i += 6
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, s[i+1])
		}
		i += 2
	}
	return out
}

// value skips one JSON value, validating it.
func (p *parser) value() {
	if p.fail != "" {
		return
	}
	switch c := p.peek(); {
	case c == '{':
		p.objStart()
		for first := true; ; first = false {
			if _, more := p.objNext(first); !more {
				return
			}
			p.value()
		}
	case c == '[':
		p.i++
		p.enter()
		for first := true; p.arrNext(first); first = false {
			p.value()
		}
	case c == '"':
		p.str()
	case c == 't':
		p.literal("true")
	case c == 'f':
		p.literal("false")
	case c == 'n':
		p.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		p.number()
	default:
		p.malformed()
	}
}

// arrNext positions p at the next element; it is false at ']' (consumed) or on error.
func (p *parser) arrNext(first bool) bool {
	if p.fail != "" {
		return false
	}
	c := p.peek()
	if c == ']' {
		p.i++
		p.depth--
		return false
	}
	if !first {
		if c != ',' {
			p.malformed()
			return false
		}
		p.i++
		p.ws()
	}
	return true
}

func (p *parser) literal(lit string) {
	if !bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
		p.malformed()
		return
	}
	p.i += len(lit)
}

// number validates a JSON number and reports where its integer part, fraction and exponent are.
func (p *parser) number() (intPart, frac []byte, hasExp bool) {
	b, i := p.b, p.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		p.i = i
		p.malformed()
		return
	}
	intPart = b[start:i]
	if i < len(b) && b[i] == '.' {
		i++
		fs := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == fs {
			p.i = i
			p.malformed()
			return
		}
		frac = b[fs:i]
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		hasExp = true
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		es := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == es {
			p.i = i
			p.malformed()
			return
		}
	}
	p.i = i
	return
}

// isNull consumes a null and reports whether there was one.
func (p *parser) isNull() bool {
	if p.peek() == 'n' {
		p.literal("null")
		return true
	}
	return false
}

// idValue reads a string field (id, type); null reads as absent. Empty strings read as absent
// too, except for the type, which the caller rejects.
func (p *parser) idValue(maxLen int, keepEmpty bool) []byte {
	if p.fail != "" || p.isNull() {
		return nil
	}
	if p.peek() != '"' {
		p.wrongType("a string")
		p.value()
		return nil
	}
	s, ok := p.str()
	if !ok {
		return nil
	}
	if len(s) > maxLen {
		p.reject(ReasonTooLarge, p.field+" is longer than "+strconv.Itoa(maxLen)+" bytes")
		return nil
	}
	if len(s) == 0 {
		if keepEmpty {
			return s[:0:0]
		}
		return nil
	}
	return s
}

// refValue reads profile, session or source: a string, {"id": "..."} (other members ignored),
// or null.
func (p *parser) refValue(maxLen int) []byte {
	if p.fail != "" || p.isNull() {
		return nil
	}
	switch p.peek() {
	case '"':
		return p.idValue(maxLen, false)
	case '{':
		p.objStart()
		var id []byte
		for first := true; ; first = false {
			key, more := p.objNext(first)
			if !more {
				return id
			}
			if string(key) == "id" {
				id = p.idValue(maxLen, false)
			} else {
				p.value()
			}
		}
	}
	p.wrongType(`a string or an object {"id": ...}`)
	p.value()
	return nil
}

// rawValue reads a value that must be of the kind opened by open ('{' or '['), or null, and
// returns its raw bytes.
func (p *parser) rawValue(open byte) []byte {
	if p.fail != "" || p.isNull() {
		return nil
	}
	start := p.i
	if p.peek() != open {
		if open == '{' {
			p.wrongType("an object")
		} else {
			p.wrongType("an array")
		}
		p.value()
		return nil
	}
	p.value()
	return p.b[start:p.i]
}

func (p *parser) tagsValue() []byte {
	if p.fail != "" || p.isNull() {
		return nil
	}
	if p.peek() != '[' {
		p.wrongType("an array of strings")
		p.value()
		return nil
	}
	start := p.i
	p.i++
	p.enter()
	for first := true; p.arrNext(first); first = false {
		if p.peek() != '"' {
			p.wrongType("an array of strings")
			p.value()
			continue
		}
		p.str()
	}
	return p.b[start:p.i]
}

// timeValue reads an RFC 3339 string or epoch milliseconds (a fraction is truncated); null
// reads as absent.
func (p *parser) timeValue(ev *Event) bool {
	if p.fail != "" || p.isNull() {
		return false
	}
	switch c := p.peek(); {
	case c == '"':
		s, ok := p.str()
		if !ok {
			return false
		}
		t, ok := ParseTime(s)
		if !ok {
			p.invalidTime("is not an RFC 3339 timestamp")
			return false
		}
		ev.Time = t
		return true
	case c == '-' || c >= '0' && c <= '9':
		intPart, _, exp := p.number()
		if p.fail != "" {
			return false
		}
		if exp || len(intPart) > 15 || intPart[0] == '-' {
			p.invalidTime("epoch milliseconds out of range")
			return false
		}
		var t int64
		for _, c := range intPart {
			t = t*10 + int64(c-'0')
		}
		if t > maxTime {
			p.invalidTime("epoch milliseconds out of range")
			return false
		}
		ev.Time = t
		return true
	}
	p.wrongType("an RFC 3339 string or epoch milliseconds")
	p.value()
	return false
}

func (p *parser) invalidTime(why string) {
	p.reject(ReasonInvalidTime, "time "+why)
}

// contextValue reads the context object, picking out page.url and device (a string, or an
// object's type). As everywhere, the last of duplicate keys wins: a later context, page, url,
// device or type replaces what an earlier one set, and one that is not a string clears it.
func (p *parser) contextValue(ev *Event) []byte {
	ev.URL, ev.Device = nil, nil
	if p.fail != "" || p.isNull() {
		return nil
	}
	if p.peek() != '{' {
		p.wrongType("an object")
		p.value()
		return nil
	}
	start := p.i
	p.objStart()
	for first := true; ; first = false {
		key, more := p.objNext(first)
		if !more {
			break
		}
		switch string(key) {
		case "page":
			ev.URL = nil
			if p.peek() != '{' {
				p.value()
				continue
			}
			ev.URL = p.stringMember("url")
		case "device":
			ev.Device = nil
			switch p.peek() {
			case '"':
				ev.Device, _ = p.str()
			case '{':
				ev.Device = p.stringMember("type")
			default:
				p.value()
			}
		default:
			p.value()
		}
	}
	if p.fail != "" {
		return nil
	}
	return p.b[start:p.i]
}

// stringMember reads the object at p.i and returns the value of its last member called name
// when that is a string (nil otherwise); every other member is validated and skipped.
func (p *parser) stringMember(name string) (v []byte) {
	p.objStart()
	for first := true; ; first = false {
		k, more := p.objNext(first)
		if !more {
			return v
		}
		if string(k) != name {
			p.value()
			continue
		}
		v = nil
		if p.peek() == '"' {
			v, _ = p.str()
		} else {
			p.value()
		}
	}
}

// optionsValue reads options; only ephemeral (a boolean; null reads as false) is interpreted.
func (p *parser) optionsValue(ev *Event) {
	ev.Ephemeral = false // a later options replaces an earlier one
	if p.fail != "" || p.isNull() {
		return
	}
	if p.peek() != '{' {
		p.wrongType("an object")
		p.value()
		return
	}
	p.objStart()
	for first := true; ; first = false {
		key, more := p.objNext(first)
		if !more {
			return
		}
		if string(key) != "ephemeral" {
			p.value()
			continue
		}
		switch p.peek() {
		case 't':
			p.literal("true")
			ev.Ephemeral = true
		case 'f':
			p.literal("false")
			ev.Ephemeral = false
		case 'n':
			p.literal("null")
			ev.Ephemeral = false
		default:
			p.field = "options.ephemeral"
			p.wrongType("a boolean")
			p.field = "options"
			p.value()
		}
	}
}
