package collect

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"

	"github.com/dwellhq/dwell/operators"
)

// payload is a checked /track request body.
type payload struct {
	body    []byte // as received
	source  string
	session string
	profile string // the request's, or minted
	minted  bool   // profile was minted here: the record carries it appended to body
	events  int
	ids     [][]byte // each event's own id, nil where the processor derives it
	// timeless are the offsets in body of the elements without a time of their own, when the
	// batch has none either: they get the time of receipt plus their index (value).
	timeless []timeless
}

// timeless is an element without a time: where it starts in the body, and its index.
type timeless struct{ off, index int }

// checkError is a payload the collector refuses: 400 with the field and a reason (the
// decoder's reasons: malformed-json, wrong-field-type, missing-type, too-large, too-deep,
// invalid-utf8, invalid-time, system-event-type; and missing-source, no-events, too-many-events).
type checkError struct {
	Reason  string `json:"reason"`
	Field   string `json:"field,omitempty"`
	Message string `json:"error"`
	source  string // the request's source, when it got that far (for the metrics' label)
}

func (e *checkError) Error() string { return e.Message }

// decoders are operators.Decoders, one per request at a time (a Decoder is single-goroutine).
type decoders struct {
	pool sync.Pool
}

func newDecoders(cfg operators.Config) *decoders {
	cfg.EnsureDefaults()
	return &decoders{pool: sync.Pool{New: func() any { return operators.NewDecoder(&cfg) }}}
}

// check decodes body with dwell's own decoder, the one the processor runs on the record: the
// collector accepts what the processor would process and refuses the rest at the door, with
// the reason the processor would dead-letter it for. now is the record timestamp the record
// will carry (events without a time take it). maxEvents bounds the events array.
func (ds *decoders) check(topic string, body []byte, now int64, maxEvents int) (*payload, *checkError) {
	d := ds.pool.Get().(*operators.Decoder)
	defer ds.pool.Put(d)
	// Decoded without a record timestamp, an element without a time fails missing-time, and
	// only when all else is right: that is how the timeless are told apart. They will have the
	// time of receipt (value), so they are valid.
	rec := operators.Record{Topic: topic, Partition: -1, Offset: -1, Value: body, Timestamp: operators.NoTimestamp}
	var batch, ev operators.Event
	switch err := d.Decode(&rec, &batch); {
	// a single event (valid: missing-time is the last check), or an object with neither type
	// nor events array: not /track's shape either way
	case err == nil, err.Reason == operators.ReasonMissingTime, err.Reason == operators.ReasonMissingType && err.Detail == "no type field":
		return nil, &checkError{Reason: "no-events", Field: "events",
			Message: `events: missing; a /track payload carries its events in an "events" array: {"source": {"id": ...}, "events": [{"type": "page-view"}]}`}
	case err != operators.ErrBatch:
		return nil, decodeError(err)
	}
	p := &payload{body: body, source: string(batch.Source), session: string(batch.Session), profile: string(batch.Profile)}
	batchTime := batch.Time != 0
	var bad *checkError
	d.CheckElements(&rec, &batch, &ev, func(index int, elem []byte, ev *operators.Event, err *operators.DecodeError) {
		if bad != nil {
			return
		}
		if err != nil && err.Reason == operators.ReasonMissingTime {
			if !batchTime {
				p.timeless = append(p.timeless, timeless{cap(body) - cap(elem), index}) // elem is a subslice of body
			}
			err = nil
		}
		if err != nil {
			bad = decodeError(err)
			return
		}
		p.events++
		if p.events > maxEvents {
			bad = &checkError{Reason: "too-many-events", Field: "events",
				Message: "events: over " + strconv.Itoa(maxEvents) + " events in one request (--max-events); send them in several"}
			return
		}
		var id []byte
		if ev.ID != nil {
			id = append([]byte(nil), ev.ID...)
		}
		p.ids = append(p.ids, id)
	})
	switch {
	case bad != nil:
		bad.source = p.source
		return nil, bad
	case p.events == 0:
		return nil, &checkError{Reason: "no-events", Field: "events", Message: "events: the array is empty"}
	case p.source == "":
		return nil, &checkError{Reason: "missing-source", Field: "source",
			Message: `source: missing; name the event source: "source": {"id": "..."}`}
	}
	return p, nil
}

// decodeError turns the decoder's verdict into a 400's body, the field taken from its detail
// ("events[2]: type is null" is about events[2].type).
func decodeError(err *operators.DecodeError) *checkError {
	return &checkError{Reason: string(err.Reason), Field: fieldOf(err.Detail), Message: string(err.Reason) + ": " + err.Detail}
}

// fieldOf finds the field a decoder detail names: "events[1]: properties must be an object"
// -> "events[1].properties"; "profile is longer than 512 bytes" -> "profile"; "context at byte
// 12" -> "context".
func fieldOf(detail string) string {
	prefix := ""
	if strings.HasPrefix(detail, "events[") {
		if i := strings.Index(detail, "]: "); i > 0 {
			prefix, detail = detail[:i+1]+".", detail[i+3:]
		}
	}
	name, _, _ := strings.Cut(detail, " ")
	name = strings.TrimSuffix(name, ":")
	switch name {
	case "id", "type", "time", "profile", "session", "source", "properties", "context", "traits", "tags", "options", "events":
		return prefix + name
	case "no", "empty", "value", "event":
		if prefix != "" {
			return strings.TrimSuffix(prefix, ".")
		}
		return ""
	}
	if prefix != "" {
		return strings.TrimSuffix(prefix, ".")
	}
	return ""
}

// mintProfile makes a profile id for a request without one: derived from the source and the
// session when there is a session, so that a retried first request of a visitor gets the same
// id; random otherwise. Either way a UUID in form (version 8 when derived, 4 when random).
func mintProfile(source, session string) string {
	var b [16]byte
	if session != "" {
		sum := sha256.Sum256([]byte("dwell-collect-profile\x00" + source + "\x00" + session))
		copy(b[:], sum[:16])
		b[6] = b[6]&0x0f | 0x80
	} else {
		_, _ = rand.Read(b[:]) // never fails (crypto/rand)
		b[6] = b[6]&0x0f | 0x40
	}
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// value is the record value: the body as received, except that
//   - an element without a time of its own (in a batch without one) gets the time of receipt
//     plus its index in milliseconds, as its first member: the processor orders events of one
//     time by id, which would shuffle a request's events (their ids are derived hashes, or
//     random ones); so a request's events keep the order they were sent in;
//   - the minted profile is appended as the object's last member where the request had none
//     (the decoder keeps the last of a repeated field, so it also wins over a "profile": null
//     or "").
func (p *payload) value(now int64) []byte {
	if !p.minted && len(p.timeless) == 0 {
		return p.body
	}
	b := p.body
	out := make([]byte, 0, len(b)+len(p.profile)+16+len(p.timeless)*24)
	at := 0
	for _, e := range p.timeless {
		off := e.off
		out = append(out, b[at:off+1]...) // through the element's '{'
		out = append(out, `"time":`...)
		out = strconv.AppendInt(out, now+int64(e.index), 10)
		if k := nextNonSpace(b, off+1); k < len(b) && b[k] != '}' {
			out = append(out, ',')
		}
		at = off + 1
	}
	if !p.minted {
		return append(out, b[at:]...)
	}
	end := len(b) - 1
	for end >= 0 && b[end] != '}' {
		end--
	}
	out = append(out, b[at:end]...)
	out = append(out, `,"profile":"`...)
	out = append(out, p.profile...) // a minted UUID: nothing to escape
	return append(out, `"}`...)
}

func nextNonSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
