package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/dwellhq/dwell/operators"
)

// The event log read back: the one parser of what AppendLogJSON writes (dwell log reads the
// event-log topic with it). It sits beside the writer so that the schema is declared here
// only; the round-trip test and fuzz test pin the two together.

// ErrNotLogJSON is the error of ParseLogJSON for a record that is not a JSON object.
var ErrNotLogJSON = errors.New("rules: not an event-log record: not a JSON object")

// LogFieldsError is the error of ParseLogJSON for a JSON object some of whose fields could not
// be read: absent (a field every record has: event_id, type, key, time, topic, partition,
// offset, state), of another JSON type, or naming a time, state or action kind this dwell
// does not read. The entry returned with it holds every other field; the unread ones are zero.
type LogFieldsError struct {
	// Keys are the JSON keys not read, in the order AppendLogJSON writes them.
	Keys []string
}

func (e *LogFieldsError) Error() string {
	return "rules: event-log record: cannot read " + strings.Join(e.Keys, ", ")
}

// Lacks reports whether the field key was not read; a nil *LogFieldsError lacks nothing.
func (e *LogFieldsError) Lacks(key string) bool { return e != nil && slices.Contains(e.Keys, key) }

// logJSON holds the fields of an event-log record, undecoded (nil when absent). encoding/json
// fills it as it fills any struct: keys match case-insensitively, the last of a repeated key
// wins, unknown keys are ignored.
type logJSON struct {
	EventID       json.RawMessage `json:"event_id"`
	Type          json.RawMessage `json:"type"`
	Key           json.RawMessage `json:"key"`
	Time          json.RawMessage `json:"time"`
	Topic         json.RawMessage `json:"topic"`
	Partition     json.RawMessage `json:"partition"`
	Offset        json.RawMessage `json:"offset"`
	State         json.RawMessage `json:"state"`
	Rules         json.RawMessage `json:"rules"`
	Actions       json.RawMessage `json:"actions"`
	Reason        json.RawMessage `json:"reason"`
	Detail        json.RawMessage `json:"detail"`
	Unregistered  json.RawMessage `json:"unregistered"`
	ConfigVersion json.RawMessage `json:"config_version"`
	ProcessingUS  json.RawMessage `json:"processing_us"`
}

// ParseLogJSON reads an event-log record as AppendLogJSON writes it, its inverse: for an entry
// e whose times are in years 1970 to 9999, whose strings are UTF-8, whose Outcome (when set)
// has e's State and lists something (rules, actions, a reason or a detail), and whose
// unregistered flag is e.Unregistered, ParseLogJSON(AppendLogJSON(nil, &e)) returns e.
//
// Reading is tolerant, so that records of an older or newer dwell still show: unknown keys
// are ignored, and fields that cannot be read are left zero and named by a *LogFieldsError,
// returned with the entry of the others. A record that is not a JSON object is an error
// wrapping ErrNotLogJSON.
func ParseLogJSON(b []byte) (LogEntry, error) {
	var w logJSON
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return LogEntry{}, ErrNotLogJSON
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return LogEntry{}, errors.Join(ErrNotLogJSON, err)
	}
	var e LogEntry
	var bad []string
	var ok bool
	e.EventID, _ = logField[string](&bad, "event_id", w.EventID, true)
	e.Type, _ = logField[string](&bad, "type", w.Type, true)
	e.Key, _ = logField[string](&bad, "key", w.Key, true)
	if t, read := logField[string](&bad, "time", w.Time, true); read {
		if e.Time, ok = operators.ParseTime([]byte(t)); !ok {
			bad = append(bad, "time")
		}
	}
	e.Topic, _ = logField[string](&bad, "topic", w.Topic, true)
	e.Partition, _ = logField[int32](&bad, "partition", w.Partition, true)
	e.Offset, _ = logField[int64](&bad, "offset", w.Offset, true)
	if s, read := logField[string](&bad, "state", w.State, true); read {
		if e.State, ok = ParseLogState(s); !ok {
			bad = append(bad, "state")
		}
	}
	var o Outcome
	o.Fired, _ = logField[[]string](&bad, "rules", w.Rules, false)
	actions, _ := logField[[]string](&bad, "actions", w.Actions, false)
	for _, a := range actions {
		i := strings.LastIndexByte(a, '/')
		k := -1
		if i >= 0 {
			k = slices.Index(actionNames[:], a[i+1:])
		}
		if k < 0 {
			o.Actions = nil
			bad = append(bad, "actions")
			break
		}
		o.Actions = append(o.Actions, ActionRecord{Rule: a[:i], Kind: ActionKind(k)})
	}
	reason, _ := logField[string](&bad, "reason", w.Reason, false)
	o.Reason = operators.Reason(reason)
	o.Detail, _ = logField[string](&bad, "detail", w.Detail, false)
	e.Unregistered, _ = logField[bool](&bad, "unregistered", w.Unregistered, false)
	e.ConfigVersion, _ = logField[string](&bad, "config_version", w.ConfigVersion, false)
	if e.ProcessingMicros, _ = logField[int64](&bad, "processing_us", w.ProcessingUS, false); e.ProcessingMicros < 0 {
		e.ProcessingMicros = 0
		bad = append(bad, "processing_us")
	}
	if len(o.Fired) == 0 {
		o.Fired = nil // "rules":[] is no rules, as AppendLogJSON writes none
	}
	if len(o.Fired) > 0 || len(o.Actions) > 0 || o.Reason != "" || o.Detail != "" {
		o.State = e.State
		e.Outcome = &o
	}
	if len(bad) > 0 {
		return e, &LogFieldsError{Keys: bad}
	}
	return e, nil
}

// logField decodes the field key from raw: false, and key added to bad, when it cannot be read
// (or is absent and required); false alone when it is absent and optional.
func logField[T any](bad *[]string, key string, raw json.RawMessage, required bool) (T, bool) {
	var v T
	if raw == nil {
		if required {
			*bad = append(*bad, key)
		}
		return v, false
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		var zero T
		*bad = append(*bad, key)
		return zero, false
	}
	return v, true
}
