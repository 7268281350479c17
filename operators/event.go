package operators

import "math"

// NoTimestamp marks a record without a broker timestamp (offline input).
const NoTimestamp = math.MinInt64

// Record is one input record, Kafka-free. Times are Unix milliseconds.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	// Timestamp is the record's broker or producer time, or NoTimestamp.
	Timestamp int64
}

// Event is a decoded tracking event. Its byte fields are views into Raw (or, for strings with
// escapes, freshly decoded copies); they stay valid as long as Raw does.
type Event struct {
	Topic     string
	Partition int32
	Offset    int64
	Raw       []byte // the record value, exactly as received
	// RecordTime is the record timestamp, or NoTimestamp.
	RecordTime int64

	// ID is the event's own id; nil means it is derived from topic, partition and offset
	// (AppendEventID writes either).
	ID   []byte
	Type string // normalised: lower case, spaces to '-'
	// Time is the event time in Unix ms; OriginalTime is the time the producer sent when the
	// skew rule replaced it (TimeAdjusted).
	Time         int64
	OriginalTime int64
	TimeAdjusted bool
	Ephemeral    bool

	Profile, Session, Source []byte // ids; nil when absent
	// Raw JSON values, nil when absent: objects for Properties, Context and Traits, an array of
	// strings for Tags.
	Properties, Context, Traits, Tags []byte
	// URL is context.page.url; Device is context.device (a string) or context.device.type.
	URL, Device []byte
}

// Reason says why a record was dead-lettered or an event was late. Values are stable,
// machine-readable identifiers.
type Reason string

// Dead-letter reasons.
const (
	ReasonTooLarge        Reason = "too-large"
	ReasonMalformedJSON   Reason = "malformed-json"
	ReasonTooDeep         Reason = "too-deep"
	ReasonInvalidUTF8     Reason = "invalid-utf8"
	ReasonMissingType     Reason = "missing-type"
	ReasonWrongFieldType  Reason = "wrong-field-type"
	ReasonInvalidTime     Reason = "invalid-time"
	ReasonMissingTime     Reason = "missing-time"
	ReasonSystemEventType Reason = "system-event-type"
	// ReasonTimeTooFar: the event time is valid but too far ahead to trust: more than
	// MaxTimeJump ahead of the partition's watermark, more than MaxFutureSkew ahead of the wall
	// clock (live), or so late in year 9999 that an end of its visit or session would fall after
	// MaxTime. The sessionizer's guard (guard.go) checks it, after decoding.
	ReasonTimeTooFar Reason = "time-too-far"
)

// Late reasons.
const (
	// LateVisitEnded: the event is older than the watermark and falls into, or within visit_gap
	// after, a visit of its key that has already ended.
	LateVisitEnded Reason = "visit-ended"
	// LateBeforeVisit: the event is older than the watermark and earlier than the start of its
	// key's open visit, which it cannot move.
	LateBeforeVisit Reason = "before-open-visit"
	// LateBeyondLateness: the event is further behind the watermark than the allowed lateness
	// (Config.AllowedLateness, the visit gap by default). It is late whatever its key's state:
	// it creates no key, profile, visit or session and changes no state, so that a backfill into
	// a running instance gives late records, never history the watermark has already passed.
	LateBeyondLateness Reason = "beyond-allowed-lateness"
)

// LateReasons lists every late reason.
func LateReasons() []Reason {
	return []Reason{LateVisitEnded, LateBeforeVisit, LateBeyondLateness}
}

// DeadReasons lists every dead-letter reason, for metrics that pre-register their series.
func DeadReasons() []Reason {
	return append(DecodeReasons(), ReasonTimeTooFar, ReasonUnregistered, ReasonSchemaViolation, ReasonRuleError,
		ReasonOutputTooLarge, ReasonProduceFailed)
}

// DecodeReasons lists the dead-letter reasons of decoding.
func DecodeReasons() []Reason {
	return []Reason{ReasonTooLarge, ReasonMalformedJSON, ReasonTooDeep, ReasonInvalidUTF8, ReasonMissingType,
		ReasonWrongFieldType, ReasonInvalidTime, ReasonMissingTime, ReasonSystemEventType}
}

// Dead-letter reasons of the rules layer (operators/rules): the registry rejected the event's
// type or its properties, or a rule failed on it and the rules say to dead-letter such events.
const (
	ReasonUnregistered    Reason = "unregistered-type"
	ReasonSchemaViolation Reason = "schema-violation"
	ReasonRuleError       Reason = "rule-error"
)

// Dead-letter reasons of the live processor's producer (pipeline): an output of the input
// (the enriched copy, a rule's output, ...) is larger than its topic accepts (its
// max.message.bytes), or Kafka refused an output of the input with an error no retry can fix
// (INVALID_RECORD, say). An output that derives from no input (a timer's system event, a fired
// schedule) is dead-lettered itself, with the same reasons.
const (
	ReasonOutputTooLarge Reason = "output-too-large"
	ReasonProduceFailed  Reason = "produce-failed"
)
