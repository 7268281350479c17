package rules

import (
	"encoding/json"
	"testing"
)

func TestEventLog(t *testing.T) {
	out := &Outcome{State: Errored, Reason: ReasonRuleError, Detail: `rule "b": when: x is a string, not a number`,
		Fired: []string{"a"}, Actions: []ActionRecord{{"a", ActTag}, {"a", ActSchedule}}, Unregistered: true}
	e := &LogEntry{EventID: "e1", Type: "add-to-cart", Key: "p1", Time: 1_767_225_600_000, Topic: "events", Partition: 3,
		Offset: 42, State: out.State, Outcome: out, ConfigVersion: "v7", ProcessingMicros: 12}
	got := string(AppendLogJSON(nil, e))
	want := `{"event_id":"e1","type":"add-to-cart","key":"p1","time":"2026-01-01T00:00:00.000Z","topic":"events",` +
		`"partition":3,"offset":42,"state":"error","rules":["a"],"actions":["a/tag","a/schedule"],"reason":"rule-error",` +
		`"detail":"rule \"b\": when: x is a string, not a number","unregistered":true,"config_version":"v7","processing_us":12}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !json.Valid([]byte(got)) {
		t.Fatal("not JSON")
	}
	late := string(AppendLogJSON(nil, &LogEntry{EventID: "e2", Type: "x", Key: "p", Time: 0, Topic: "t", State: Late}))
	if late != `{"event_id":"e2","type":"x","key":"p","time":"1970-01-01T00:00:00.000Z","topic":"t","partition":0,"offset":0,"state":"late"}` {
		t.Fatal(late)
	}
	for _, c := range []struct {
		level string
		state LogState
		want  bool
	}{
		{"all", Processed, true}, {"errors", Processed, false}, {"errors", Errored, true},
		{"errors", DeadLettered, true}, {"errors", Late, false}, {"none", Errored, false},
	} {
		l, err := ParseLogLevel(c.level)
		if err != nil || l.Logs(c.state) != c.want {
			t.Errorf("%s logs %s: %v, %v", c.level, c.state, l.Logs(c.state), err)
		}
	}
	if _, err := ParseLogLevel("some"); err == nil {
		t.Error("ParseLogLevel(some) did not fail")
	}
	for _, s := range []LogState{Processed, Errored, Ignored, DeadLettered, Late, Transferred} {
		if back, ok := ParseLogState(s.String()); !ok || back != s {
			t.Errorf("ParseLogState(%s) = %v, %v", s, back, ok)
		}
	}
}
