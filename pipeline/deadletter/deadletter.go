// Package deadletter declares the wire contract of dwell's dead letters: the record headers that
// say why a record was dead-lettered and which input record it was, one builder that writes
// them, and one reader. The processor (pipeline), the deliverer (pipeline/deliver) and the
// tools that read dead letters (dwell move, dwell demo) all use this file, as Kafka Streams'
// ExceptionHandlerUtils declares its error headers once.
//
// A dead letter keeps the original key and value (and, from the deliverer, the original
// headers); dwell's headers follow them. A record dead-lettered a second time (a queue record
// the deliverer gives up on, or a record moved back and failing again) has its earlier dwell
// headers replaced, never duplicated.
package deadletter

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names. Values are UTF-8 text; partition and offset are decimal.
const (
	// Reason is machine-readable: one of operators' Reason values, a rules outcome reason
	// (rule-failed, ...), or one of the deliverer's reasons.
	Reason = "dwell-reason"
	// Detail is for people: what exactly was wrong (the JSON path, the HTTP status, ...).
	Detail = "dwell-detail"
	// Topic, Partition and Offset name the input record the dead letter was made from; for a
	// record dwell made itself (a system event, a fired schedule) Topic is empty and Offset -1.
	Topic     = "dwell-topic"
	Partition = "dwell-partition"
	Offset    = "dwell-offset"
	// EventID is the event's id, on dead letters of events whose rules failed.
	EventID = "dwell-event-id"
	// Truncated marks a dead letter whose value was cut so that it fits the dead-letter
	// topic's max.message.bytes: its value is the value's original size in bytes, followed by
	// " key " and the key's original size when the key had to be cut as well (only a key that
	// alone is too large). It is not one of the headers Rewrap replaces: the bytes stay cut, so
	// the mark stays.
	Truncated = "dwell-truncated"
)

// Source is what the headers say about a dead letter.
type Source struct {
	Reason, Detail string
	// Topic, Partition and Offset of the input record; Topic is "" when it was none.
	Topic     string
	Partition int32
	Offset    int64
	EventID   string
}

// IsHeader reports whether key is one of dwell's dead-letter headers.
func IsHeader(key string) bool {
	switch key {
	case Reason, Detail, Topic, Partition, Offset, EventID:
		return true
	}
	return false
}

// AppendHeaders appends the dead-letter headers of s to dst (EventID only when set).
func AppendHeaders(dst []kgo.RecordHeader, s Source) []kgo.RecordHeader {
	dst = append(dst,
		kgo.RecordHeader{Key: Reason, Value: []byte(s.Reason)},
		kgo.RecordHeader{Key: Detail, Value: []byte(s.Detail)},
		kgo.RecordHeader{Key: Topic, Value: []byte(s.Topic)},
		kgo.RecordHeader{Key: Partition, Value: strconv.AppendInt(nil, int64(s.Partition), 10)},
		kgo.RecordHeader{Key: Offset, Value: strconv.AppendInt(nil, s.Offset, 10)},
	)
	if s.EventID != "" {
		dst = append(dst, kgo.RecordHeader{Key: EventID, Value: []byte(s.EventID)})
	}
	return dst
}

// Rewrap returns headers with the dwell dead-letter headers that s replaces removed (those of
// an earlier dead-lettering; an earlier EventID stays unless s has one) and those of s
// appended: the record's own headers are kept, in order.
func Rewrap(headers []kgo.RecordHeader, s Source) []kgo.RecordHeader {
	h := make([]kgo.RecordHeader, 0, len(headers)+6)
	for _, kv := range headers {
		if !IsHeader(kv.Key) || (kv.Key == EventID && s.EventID == "") {
			h = append(h, kv)
		}
	}
	return AppendHeaders(h, s)
}

// Read returns what r's dead-letter headers say (the last value of each wins) and whether r
// has a Reason header. Partition and Offset are those of the input record only when Topic is
// set and both parse; otherwise Partition is 0 and Offset -1.
func Read(headers []kgo.RecordHeader) (Source, bool) {
	s := Source{Offset: -1}
	var ok bool
	var part, off string
	for _, h := range headers {
		switch h.Key {
		case Reason:
			s.Reason, ok = string(h.Value), true
		case Detail:
			s.Detail = string(h.Value)
		case Topic:
			s.Topic = string(h.Value)
		case Partition:
			part = string(h.Value)
		case Offset:
			off = string(h.Value)
		case EventID:
			s.EventID = string(h.Value)
		}
	}
	if s.Topic != "" {
		p, perr := strconv.ParseInt(part, 10, 32)
		o, oerr := strconv.ParseInt(off, 10, 64)
		if perr == nil && oerr == nil {
			s.Partition, s.Offset = int32(p), o
		} else {
			s.Topic = ""
		}
	}
	return s, ok
}
