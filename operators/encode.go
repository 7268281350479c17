package operators

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"unicode/utf8"

	"github.com/dwellhq/dwell/operators/internal/jsonx"
)

// AppendJSON appends o as one JSON object (no newline). The encoding is canonical: the same
// Output always gives the same bytes.
func AppendJSON(dst []byte, o *Output) []byte {
	switch o.Kind {
	case KindSystem:
		return appendSystem(dst, o)
	case KindDead:
		return appendDead(dst, o)
	default:
		return appendEvent(dst, o)
	}
}

// AppendEventID appends the id of the event ref names: its own id, or one derived from where
// it was read (32 hex digits of SHA-256 over topic, partition and offset).
func AppendEventID(dst []byte, ref *EventRef) []byte {
	if ref.ID != nil {
		return append(dst, ref.ID...)
	}
	var scratch [96]byte
	b := append(scratch[:0], ref.Topic...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(ref.Partition))
	b = binary.BigEndian.AppendUint64(b, uint64(ref.Offset))
	sum := sha256.Sum256(b)
	return hex.AppendEncode(dst, sum[:16])
}

func appendEvent(dst []byte, o *Output) []byte {
	ev := o.Event
	ref := EventRef{ID: ev.ID, Topic: ev.Topic, Partition: ev.Partition, Offset: ev.Offset}
	dst = append(dst, `{"id":"`...)
	if ev.ID != nil {
		dst = jsonx.AppendEscapedUTF8(dst, jsonx.String(ev.ID))
	} else {
		dst = AppendEventID(dst, &ref)
	}
	dst = append(dst, `","type":`...)
	dst = jsonx.AppendQuotedUTF8(dst, ev.Type)
	dst = append(dst, `,"time":"`...)
	dst = AppendTime(dst, ev.Time)
	dst = append(dst, '"')
	dst = appendField(dst, "profile", ev.Profile)
	dst = appendField(dst, "session", ev.Session)
	dst = appendField(dst, "source", ev.Source)
	if o.Kind == KindEvent {
		dst = append(dst, `,"visit_id":"`...)
		dst = append(dst, o.VisitID...)
		dst = append(dst, '"')
	}
	if ev.TimeAdjusted {
		dst = append(dst, `,"time_adjusted":true,"original_time":"`...)
		dst = AppendTime(dst, ev.OriginalTime)
		dst = append(dst, '"')
	}
	if o.Kind == KindLate {
		dst = append(dst, `,"late":true,"late_reason":`...)
		dst = jsonx.AppendQuotedUTF8(dst, string(o.Reason))
	}
	dst = append(dst, `,"properties":`...)
	if ev.Properties != nil {
		dst = append(dst, ev.Properties...)
	} else {
		dst = append(dst, "{}"...)
	}
	dst = appendRaw(dst, "context", ev.Context)
	dst = appendRaw(dst, "traits", ev.Traits)
	dst = appendRaw(dst, "tags", ev.Tags)
	return append(dst, '}')
}

func appendSystem(dst []byte, o *Output) []byte {
	se := o.System
	dst = append(dst, `{"id":"`...)
	dst = hex.AppendEncode(dst, se.ID[:])
	dst = append(dst, `","type":"`...)
	dst = append(dst, se.Type.String()...)
	dst = append(dst, `","time":"`...)
	dst = AppendTime(dst, se.Time)
	dst = append(dst, '"')
	dst = appendField(dst, "profile", se.Profile)
	dst = appendField(dst, "session", se.Session)
	dst = appendField(dst, "source", se.Source)
	dst = append(dst, `,"cause_event_id":"`...)
	if se.Cause.ID != nil {
		dst = jsonx.AppendEscapedUTF8(dst, jsonx.String(se.Cause.ID))
	} else {
		dst = AppendEventID(dst, &se.Cause)
	}
	dst = append(dst, `",`...)
	dst = append(dst, `"properties":`...)
	dst = AppendSystemProperties(dst, o)
	return append(dst, '}')
}

// AppendSystemProperties appends the properties object of the system event o (KindSystem), as
// it is written in the event's JSON: the summary of visit-ended and session-closed, the visit
// id, start time (and, for visit-started, entry URL and device) of the others. Rules see it
// as event.properties.
func AppendSystemProperties(dst []byte, o *Output) []byte {
	se := o.System
	dst = append(dst, '{')
	switch {
	case se.Summary != nil:
		dst = appendSummary(dst, se)
	case se.Type == ProfileCreated:
	default:
		if se.VisitID != nil {
			dst = append(dst, `"visit_id":"`...)
			dst = append(dst, se.VisitID...)
			dst = append(dst, `",`...)
		}
		dst = append(dst, `"started_at":"`...)
		dst = AppendTime(dst, se.Started)
		dst = append(dst, '"')
		if se.Type == VisitStarted && o.Event != nil {
			dst = appendField(dst, "entry_url", o.Event.URL)
			dst = appendField(dst, "device", o.Event.Device)
		}
	}
	return append(dst, '}')
}

func appendSummary(dst []byte, se *SystemEvent) []byte {
	sm := se.Summary
	if se.VisitID != nil {
		dst = append(dst, `"visit_id":"`...)
		dst = append(dst, se.VisitID...)
		dst = append(dst, `",`...)
	}
	dst = append(dst, `"reason":"`...)
	dst = append(dst, sm.Reason.String()...)
	dst = append(dst, `","started_at":"`...)
	dst = AppendTime(dst, sm.StartedAt)
	dst = append(dst, `","ended_at":"`...)
	dst = AppendTime(dst, sm.LastActivity)
	dst = append(dst, `","duration_ms":`...)
	dst = strconv.AppendInt(dst, sm.LastActivity-sm.StartedAt, 10)
	dst = append(dst, `,"event_count":`...)
	dst = strconv.AppendUint(dst, uint64(sm.EventCount), 10)
	dst = append(dst, `,"page_view_count":`...)
	dst = strconv.AppendUint(dst, uint64(sm.PageViewCount), 10)
	if se.Type == VisitEnded {
		dst = append(dst, `,"session_count":`...)
		dst = strconv.AppendUint(dst, uint64(sm.SessionCount), 10)
	}
	dst = appendField(dst, "entry_url", sm.EntryURL)
	dst = appendField(dst, "exit_url", sm.ExitURL)
	dst = appendField(dst, "source", sm.Source)
	dst = appendField(dst, "device", sm.Device)
	dst = append(dst, `,"event_types":{`...)
	for i, tc := range sm.Types {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = jsonx.AppendQuotedUTF8(dst, tc.Type)
		dst = append(dst, ':')
		dst = strconv.AppendUint(dst, uint64(tc.Count), 10)
	}
	dst = append(dst, '}')
	if sm.OtherTypes > 0 {
		dst = append(dst, `,"other_types":`...)
		dst = strconv.AppendUint(dst, uint64(sm.OtherTypes), 10)
	}
	return dst
}

// appendDead writes a dead letter of a record the sessionizer could not take (AppendDeadJSON).
func appendDead(dst []byte, o *Output) []byte {
	r := o.Record
	return AppendDeadJSON(dst, DeadLetter{Reason: string(o.Reason), Detail: o.Detail, Topic: r.Topic, Partition: r.Partition,
		Offset: r.Offset, Value: r.Value})
}

// DeadLetter is what a dead letter's JSON says (AppendDeadJSON).
type DeadLetter struct {
	Reason, Detail string
	// Topic, Partition and Offset name the input record; Topic is "" and Offset -1 for an
	// event dwell made (a system event, a fired schedule).
	Topic     string
	Partition int32
	Offset    int64
	// EventID is set for an event whose rules failed.
	EventID string
	// Value is the original bytes (an input record), or the event's JSON (dwell's own).
	Value []byte
}

// AppendDeadJSON appends the one JSON layout of every dead letter in a file:
//
//	{"reason":"...","detail":"...","topic":"events","partition":0,"offset":42,
//	 "event_id":"...","value":"..."}
//
// event_id only when set; value is a string when the bytes are valid UTF-8, else
// "value_base64" holds them in base64.
func AppendDeadJSON(dst []byte, d DeadLetter) []byte {
	dst = append(dst, `{"reason":`...)
	dst = jsonx.AppendQuotedUTF8(dst, d.Reason)
	dst = append(dst, `,"detail":`...)
	dst = jsonx.AppendQuotedUTF8(dst, d.Detail)
	dst = append(dst, `,"topic":`...)
	dst = jsonx.AppendQuotedUTF8(dst, d.Topic)
	dst = append(dst, `,"partition":`...)
	dst = strconv.AppendInt(dst, int64(d.Partition), 10)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, d.Offset, 10)
	if d.EventID != "" {
		dst = append(dst, `,"event_id":`...)
		dst = jsonx.AppendQuotedUTF8(dst, d.EventID)
	}
	if utf8.Valid(d.Value) {
		dst = append(dst, `,"value":`...)
		dst = jsonx.AppendQuotedUTF8(dst, jsonx.String(d.Value))
	} else {
		dst = append(dst, `,"value_base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, d.Value)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// appendField appends ,"name":"value", or ,"name":null for an absent or empty value (ids are
// never empty: the decoder reads an empty id as absent).
func appendField(dst []byte, name string, v []byte) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	if len(v) == 0 {
		return append(dst, "null"...)
	}
	return jsonx.AppendQuotedUTF8(dst, jsonx.String(v))
}

// appendRaw appends ,"name":raw when raw is present.
func appendRaw(dst []byte, name string, raw []byte) []byte {
	if raw == nil {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return append(dst, raw...)
}
