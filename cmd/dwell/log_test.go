package main

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// newLogRig writes event-log entries as the processor (and dwell move) write them, with
// rules.AppendLogJSON, plus two records that are not quite entries.
func newLogRig(t *testing.T) (brokers, topic string, errLine string) {
	env := pipelinetest.New(t, 2, []string{"dwell.event-log"})
	topic = env.Name("dwell.event-log")
	now := time.Now()
	old, recent := now.Add(-3*time.Hour), now.Add(-10*time.Minute)
	ms := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	entry := func(ts time.Time, e rules.LogEntry) *kgo.Record {
		return &kgo.Record{Topic: topic, Key: []byte(e.Key), Value: rules.AppendLogJSON(nil, &e), Timestamp: ts}
	}
	errEntry := entry(recent.Add(time.Second), rules.LogEntry{EventID: "e2", Type: "add-to-cart", Key: "p2", Time: ms + 1000, Topic: "events",
		Partition: 1, Offset: 8, State: rules.Errored, ConfigVersion: "v3", ProcessingMicros: 40,
		Outcome: &rules.Outcome{State: rules.Errored, Fired: []string{"vip"}, Reason: rules.ReasonRuleError,
			Detail: `rule "vip": when: cannot compare string and number`}})
	recs := []*kgo.Record{
		entry(recent, rules.LogEntry{EventID: "e1", Type: "page-view", Key: "p1", Time: ms, Topic: "events", Partition: 0, Offset: 41,
			State: rules.Processed, ProcessingMicros: 12, Outcome: &rules.Outcome{Fired: []string{"cart-timer"},
				Actions: []rules.ActionRecord{{Rule: "cart-timer", Kind: rules.ActSchedule}, {Rule: "cart-timer", Kind: rules.ActTag}}}}),
		errEntry,
		entry(old, rules.LogEntry{EventID: "e0", Type: "page-view", Key: "p1", Time: ms - 3600_000, Topic: "events", Partition: 0,
			Offset: 7, State: rules.Transferred}),
		entry(recent.Add(2*time.Second), rules.LogEntry{EventID: "e3", Type: "purchase", Key: "p3", Time: ms + 2000, Topic: "events",
			Partition: 1, Offset: 9, State: rules.DeadLettered, Unregistered: true}),
		{Topic: topic, Key: []byte("p4"), Value: []byte("not json"), Timestamp: recent},
		// A field of another type (a future or hand-made record): the rest still shows.
		{Topic: topic, Key: []byte("p5"), Value: []byte(`{"event_id":"e5","type":"add-to-wishlist","key":"p5","partition":"x","state":"processed","extra":1}`),
			Timestamp: recent.Add(3 * time.Second)},
	}
	opsProduce(t, env.Brokers, recs...)
	return strings.Join(env.Brokers, ","), topic, string(errEntry.Value)
}

func TestLogSearch(t *testing.T) {
	brokers, topic, errLine := newLogRig(t)
	logCmd := func(args ...string) (string, string) {
		t.Helper()
		code, stdout, stderr := runCLI(t, "", append([]string{"log", "--brokers", brokers, "--topic", topic}, args...)...)
		if code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		return stdout, stderr
	}
	rows := func(table string) []string {
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if !strings.HasPrefix(lines[0], "TIME ") {
			t.Fatalf("no header:\n%s", table)
		}
		return lines[1:]
	}

	// Default: the last hour, as a table.
	out, stderr := logCmd()
	got := rows(out)
	if len(got) != 4 {
		t.Fatalf("%d rows in the last hour, want 4 (e1, e2, e3, e5):\n%s", len(got), out)
	}
	if !strings.Contains(stderr, "4 entries matched of 6 read") || !strings.Contains(stderr, "1 records were not event-log entries") {
		t.Errorf("stderr: %q", stderr)
	}
	header := strings.Split(out, "\n")[0]
	for _, col := range []string{"TIME", "ID", "TYPE", "KEY", "AT", "STATE", "RULES", "ACTIONS", "US", "DETAIL"} {
		if !strings.Contains(header, col) {
			t.Errorf("header %q lacks %s", header, col)
		}
	}
	// Aligned: every row's STATE column starts where the header's does.
	col := strings.Index(header, "STATE")
	for _, r := range got {
		if len(r) <= col || r[col-1] != ' ' || r[col] == ' ' {
			t.Errorf("row not aligned with STATE at %d:\n%s\n%s", col, header, r)
		}
	}
	for _, want := range []string{"2026-05-01T12:00:00.000Z", "e1", "events/0/41", "processed", "cart-timer/schedule,cart-timer/tag",
		"12", "rule-error: rule \"vip\"", "dead-lettered", "unregistered", "add-to-wishlist"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "e1 ") > strings.Index(out, "e3 ") {
		t.Errorf("not oldest first:\n%s", out)
	}

	// Filters.
	if out, _ := logCmd("--type", "Page View", "--profile", "p1", "--since", "4h"); len(rows(out)) != 2 ||
		!strings.Contains(out, "transferred") {
		t.Errorf("--type page-view --profile p1 --since 4h:\n%s", out)
	}
	if out, _ := logCmd("--type", "add-*"); len(rows(out)) != 2 {
		t.Errorf("--type add-*:\n%s", out)
	}
	if out, _ := logCmd("--rule", "vip"); len(rows(out)) != 1 {
		t.Errorf("--rule vip:\n%s", out)
	}
	if out, _ := logCmd("--state", "transferred", "--since", ""); len(rows(out)) != 1 {
		t.Errorf("--state transferred over the whole log:\n%s", out)
	}
	if out, _ := logCmd("--state", "error", "--json"); out != errLine+"\n" {
		t.Errorf("--state error --json:\n%s\nwant\n%s", out, errLine)
	}
	out, stderr = logCmd("--limit", "1", "--json")
	// The count is of every match, not of those shown (issue 13).
	if !strings.Contains(out, `"event_id":"e5"`) || strings.Count(out, "\n") != 1 || !strings.Contains(stderr, "4 entries matched of 6 read; the 1 most recent shown") {
		t.Errorf("--limit 1: %s %s", out, stderr)
	}
	if out, _ := logCmd("--id", "nosuch"); len(rows(out)) != 0 {
		t.Errorf("--id nosuch:\n%s", out)
	}
}

func TestLogUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"log", "--state", "done"}, "use processed, error"},
		{[]string{"log", "--since", "last week"}, "neither RFC 3339"},
		{[]string{"log", "--limit", "-1"}, "must not be negative"},
		{[]string{"log", "--type", "[a"}, "syntax error"},
	} {
		code, _, stderr := runCLI(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}
