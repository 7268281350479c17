package rules

import (
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

// TestParseLogJSONRoundTrip: AppendLogJSON then ParseLogJSON gives the entry back, for every
// state, every action kind and every field set or left out.
func TestParseLogJSONRoundTrip(t *testing.T) {
	var every []ActionRecord
	for k := range ActionKind(len(actionNames)) {
		every = append(every, ActionRecord{Rule: "r/" + k.String(), Kind: k})
	}
	var entries []LogEntry
	for s := range LogState(len(logStateNames)) {
		entries = append(entries,
			LogEntry{EventID: "e1", Type: "add-to-cart", Key: "p1", Time: 1_767_225_600_123, Topic: "events", Partition: 3,
				Offset: 42, State: s},
			LogEntry{EventID: "e\"2\"\n", Type: "päge-view", Key: "k\t\u2028", Time: 253_402_300_799_999, Topic: "t", Partition: -1,
				Offset: -1, State: s, ConfigVersion: "v7", ProcessingMicros: 12, Unregistered: true,
				Outcome: &Outcome{State: s, Reason: ReasonRuleError, Detail: `rule "b": when: x is a string, not a number`,
					Fired: []string{"a", "b/c", ""}, Actions: every}},
			LogEntry{State: s, Outcome: &Outcome{State: s, Detail: "d"}},
			LogEntry{State: s, Outcome: &Outcome{State: s, Reason: "invalid-time"}},
			LogEntry{State: s, Outcome: &Outcome{State: s, Fired: []string{"only"}}},
			LogEntry{State: s, Outcome: &Outcome{State: s, Actions: []ActionRecord{{Rule: "", Kind: ActStop}}}},
		)
	}
	for _, e := range entries {
		b := AppendLogJSON(nil, &e)
		got, err := ParseLogJSON(b)
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Errorf("%s\nparsed as %+v (outcome %+v), %v\nwant      %+v (outcome %+v)", b, got, got.Outcome, err, e, e.Outcome)
		}
	}
}

// TestParseLogJSONTolerant: what dwell log did with records that are not quite entries.
func TestParseLogJSONTolerant(t *testing.T) {
	e, err := ParseLogJSON(AppendLogJSON(nil, &LogEntry{EventID: "a", Type: "t", Key: "k", Time: 0, Topic: "x",
		Partition: 2, Offset: 3, State: Late, ConfigVersion: "v1", ProcessingMicros: 5, Unregistered: true}))
	if err != nil || e.EventID != "a" || e.Partition != 2 || e.Offset != 3 || e.State != Late || e.ConfigVersion != "v1" ||
		e.ProcessingMicros != 5 || !e.Unregistered || e.Time != 0 {
		t.Errorf("%+v, %v", e, err)
	}
	for _, bad := range []string{"", "x", "[1]", `{"event_id":`, "null", `"s"`} {
		if _, err := ParseLogJSON([]byte(bad)); !errors.Is(err, ErrNotLogJSON) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	e, err = ParseLogJSON([]byte(`{"type":"t","offset":"7","rules":"r","state":"replayed","actions":["a/tag","b/fly"],"processing_us":-3}`))
	var fe *LogFieldsError
	if !errors.As(err, &fe) || e.Type != "t" || e.Offset != 0 || e.Outcome != nil || e.ProcessingMicros != 0 {
		t.Fatalf("tolerant decode: %+v %v", e, err)
	}
	want := []string{"event_id", "key", "time", "topic", "partition", "offset", "state", "rules", "actions", "processing_us"}
	if !reflect.DeepEqual(fe.Keys, want) || !fe.Lacks("time") || fe.Lacks("type") {
		t.Errorf("keys %q, want %q", fe.Keys, want)
	}
	if (*LogFieldsError)(nil).Lacks("time") {
		t.Error("a nil *LogFieldsError lacks something")
	}
}

// FuzzParseLogJSON: any record on the event-log topic parses or is refused, never panics; what
// parses writes back to what parses the same; an entry written by AppendLogJSON always parses.
func FuzzParseLogJSON(f *testing.F) {
	f.Add([]byte(`{"event_id":"a","type":"t","partition":"x"}`), "e", int64(3), uint8(0))
	f.Add([]byte(`not json`), "", int64(-1), uint8(5))
	f.Add(AppendLogJSON(nil, &LogEntry{EventID: "e", State: Errored, Outcome: &Outcome{State: Errored, Fired: []string{"r"},
		Actions: []ActionRecord{{"r", ActTag}}, Reason: "x", Detail: "y"}, ProcessingMicros: 9}), "x/y", int64(1)<<40, uint8(9))
	f.Fuzz(func(t *testing.T, raw []byte, id string, offset int64, kind uint8) {
		e, err := ParseLogJSON(raw)
		var fe *LogFieldsError
		if err != nil && !errors.Is(err, ErrNotLogJSON) && !errors.As(err, &fe) {
			t.Fatalf("%q: error %v is neither ErrNotLogJSON nor a *LogFieldsError", raw, err)
		}
		if err == nil {
			again, err := ParseLogJSON(AppendLogJSON(nil, &e))
			if err != nil || !reflect.DeepEqual(again, e) {
				t.Fatalf("%q parsed as %+v; written and parsed again: %+v, %v", raw, e, again, err)
			}
		}
		if !utf8.ValidString(id) {
			return
		}
		s := LogState(kind % uint8(len(logStateNames)))
		k := ActionKind(kind % uint8(len(actionNames)))
		in := LogEntry{EventID: id, Type: id, Key: id, Offset: offset, State: s, Unregistered: kind%2 == 0,
			Outcome: &Outcome{State: s, Fired: []string{id}, Actions: []ActionRecord{{Rule: id, Kind: k}}}}
		v := AppendLogJSON(nil, &in)
		if got, err := ParseLogJSON(v); err != nil || !reflect.DeepEqual(got, in) {
			t.Fatalf("%s parsed as %+v, %v", v, got, err)
		}
	})
}
