package rules

import (
	"errors"
	"strconv"

	"github.com/dwellhq/dwell/operators/internal/jsonx"
)

// The event log (issue 5): one record per processed event, for dwell.event-log. This file
// encodes it; the pipeline fills the parts only it knows (where the event was read, how long
// it took) and decides which events to log (LogLevel).

// LogLevel says which events are logged.
type LogLevel uint8

const (
	// LogAll logs every event.
	LogAll LogLevel = iota
	// LogErrors logs events whose state is error or dead-lettered.
	LogErrors
	// LogNone logs nothing.
	LogNone
)

var logLevelNames = [...]string{"all", "errors", "none"}

func (l LogLevel) String() string { return logLevelNames[l] }

// ParseLogLevel reads all, errors or none.
func ParseLogLevel(s string) (LogLevel, error) {
	for i, n := range logLevelNames {
		if n == s {
			return LogLevel(i), nil
		}
	}
	return 0, errors.New("rules: the event log level is all, errors or none, not " + strconv.Quote(s))
}

// Logs says whether an event in state s is logged at level l.
func (l LogLevel) Logs(s LogState) bool {
	switch l {
	case LogAll:
		return true
	case LogErrors:
		return s == Errored || s == DeadLettered
	}
	return false
}

// LogEntry is one event-log record.
type LogEntry struct {
	EventID, Type, Key string
	Time               int64 // event time, Unix ms
	// NoTime: the entry has no time (a record that could not be decoded, had no record
	// timestamp, and came before any event time of its partition); "time" is then omitted,
	// never written as the Unix epoch.
	NoTime    bool
	Topic     string
	Partition int32
	Offset    int64
	// State overrides Outcome.State when the pipeline knows better (Late, Transferred).
	State         LogState
	Outcome       *Outcome // nil for events no rule saw (late without late rules, transferred)
	ConfigVersion string
	// ProcessingMicros is how long the event took, for the pipeline to measure (0: omitted).
	ProcessingMicros int64
	Unregistered     bool
}

// AppendLogJSON appends e as one JSON object (no newline):
//
//	{"event_id":"...","type":"add-to-cart","key":"p1","time":"2026-...Z","topic":"events",
//	 "partition":3,"offset":42,"state":"processed","rules":["cart-timer"],
//	 "actions":["cart-timer/schedule"],"reason":"...","detail":"...","unregistered":true,
//	 "config_version":"v7","processing_us":12}
//
// rules, actions, reason, detail, unregistered and processing_us are omitted when empty, time
// when NoTime.
func AppendLogJSON(dst []byte, e *LogEntry) []byte {
	// Written out with literal keys: one record per event at level all, so it is on the hot
	// path (0 allocations, a few hundred ns).
	b := append(dst, `{"event_id":`...)
	b = jsonx.AppendQuoted(b, e.EventID)
	b = append(b, `,"type":`...)
	b = jsonx.AppendQuoted(b, e.Type)
	b = append(b, `,"key":`...)
	b = jsonx.AppendQuoted(b, e.Key)
	if !e.NoTime {
		b = append(b, `,"time":"`...)
		b = appendTime(b, e.Time)
		b = append(b, '"')
	}
	b = append(b, `,"topic":`...)
	b = jsonx.AppendQuoted(b, e.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(e.Partition), 10)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, e.Offset, 10)
	b = append(b, `,"state":"`...)
	b = append(b, e.State.String()...) // a fixed name: nothing to escape
	b = append(b, '"')
	if o := e.Outcome; o != nil {
		if len(o.Fired) > 0 {
			b = append(b, `,"rules":[`...)
			for i, r := range o.Fired {
				if i > 0 {
					b = append(b, ',')
				}
				b = jsonx.AppendQuoted(b, r)
			}
			b = append(b, ']')
		}
		if len(o.Actions) > 0 {
			b = append(b, `,"actions":[`...)
			for i, a := range o.Actions {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, '"')
				b = jsonx.AppendEscaped(b, a.Rule)
				b = append(b, '/')
				b = append(b, a.Kind.String()...)
				b = append(b, '"')
			}
			b = append(b, ']')
		}
		if o.Reason != "" {
			b = append(b, `,"reason":`...)
			b = jsonx.AppendQuoted(b, string(o.Reason))
		}
		if o.Detail != "" {
			b = append(b, `,"detail":`...)
			b = jsonx.AppendQuoted(b, o.Detail)
		}
	}
	if e.Unregistered || e.Outcome != nil && e.Outcome.Unregistered {
		b = append(b, `,"unregistered":true`...)
	}
	if e.ConfigVersion != "" {
		b = append(b, `,"config_version":`...)
		b = jsonx.AppendQuoted(b, e.ConfigVersion)
	}
	if e.ProcessingMicros > 0 {
		b = append(b, `,"processing_us":`...)
		b = strconv.AppendInt(b, e.ProcessingMicros, 10)
	}
	return append(b, '}')
}
