package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// moveRig is a broker holding dead letters as the processor writes them: 4 invalid-time ones
// (2 old, 2 recent), 3 malformed-json ones (recent), plus one committed and one aborted
// transaction.
type moveRig struct {
	env               *pipelinetest.Env
	dlq, events, elog string
	old, recent       time.Time
	brokers           string
}

func newMoveRig(t *testing.T) *moveRig {
	env := pipelinetest.New(t, 2, []string{"dwell.dlq", "events", "dwell.event-log"})
	m := &moveRig{env: env, dlq: env.Name("dwell.dlq"), events: env.Name("events"), elog: env.Name("dwell.event-log"),
		old: time.Now().Add(-3 * time.Hour).Truncate(time.Millisecond), recent: time.Now().Add(-time.Minute).Truncate(time.Millisecond),
		brokers: strings.Join(env.Brokers, ",")}
	dead := func(i int, reason string, ts time.Time, value string) *kgo.Record {
		return &kgo.Record{Topic: m.dlq, Key: fmt.Appendf(nil, "p%d", i), Value: []byte(value), Timestamp: ts,
			Headers: []kgo.RecordHeader{
				{Key: "dwell-reason", Value: []byte(reason)}, {Key: "dwell-detail", Value: []byte("detail")},
				{Key: "dwell-topic", Value: []byte("events")}, {Key: "dwell-partition", Value: []byte("1")},
				{Key: "dwell-offset", Value: fmt.Appendf(nil, "%d", 100+i)},
			}}
	}
	var recs []*kgo.Record
	for i := range 4 {
		ts := m.old
		if i >= 2 {
			ts = m.recent
		}
		recs = append(recs, dead(i, "invalid-time", ts, fmt.Sprintf(`{"id":"e%d","type":"Page View","time":"yesterday","profile":"p%d"}`, i, i)))
	}
	for i := 4; i < 7; i++ {
		recs = append(recs, dead(i, "malformed-json", m.recent, `{"type":`))
	}
	opsProduce(t, env.Brokers, recs...)
	// A transaction aborted at the end of the topic: its records are never read.
	tx, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...), kgo.TransactionalID(env.Name("move-test")))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	ctx := context.Background()
	for _, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort} {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		reason := "committed-tx"
		if !commit {
			reason = "aborted-tx"
		}
		for p := range int32(2) {
			if err := tx.ProduceSync(ctx, &kgo.Record{Topic: m.dlq, Partition: p, Value: []byte(`{"type":"x"}`), Timestamp: m.recent,
				Headers: []kgo.RecordHeader{{Key: "dwell-reason", Value: []byte(reason)}}}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// readTopic returns every committed record of topic.
func readTopic(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	offs := map[int32]kgo.Offset{}
	left := 0
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			offs[o.Partition] = kgo.NewOffset().AtStart()
			left++
		}
	})
	if left == 0 {
		return nil
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offs}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var out []*kgo.Record
	done := map[int32]bool{}
	for len(done) < left && ctx.Err() == nil {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if e, _ := ends.Lookup(topic, r.Partition); r.Offset >= e.Offset-1 {
				done[r.Partition] = true
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	if ctx.Err() != nil {
		t.Fatalf("reading %s timed out", topic)
	}
	return out
}

func TestMoveByReason(t *testing.T) {
	m := newMoveRig(t)
	code, stdout, stderr := runCLI(t, "", "move", "--brokers", m.brokers, "--from", m.dlq, "--to", m.events,
		"--event-log-topic", m.elog, "--filter", `reason == "invalid-time" && value.type == "Page View"`, "--progress", "1ns")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout: %q", stdout)
	}
	if !strings.Contains(stderr, "scanned 9 records, matched 4") || !strings.Contains(stderr, "records/s") || !strings.Contains(stderr, "100.0% of ") {
		t.Errorf("no progress line: %q", stderr)
	}
	if !strings.Contains(stderr, "scanned 9 records, matched 4, wrote 4 to "+m.events) || !strings.Contains(stderr, "logged 4 as transferred") {
		t.Errorf("final count: %q", stderr)
	}
	moved := readTopic(t, m.env.Brokers, m.events)
	if len(moved) != 4 {
		t.Fatalf("%d records in %s, want 4", len(moved), m.events)
	}
	orig := map[string]*kgo.Record{}
	for _, r := range readTopic(t, m.env.Brokers, m.dlq) {
		orig[fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)] = r
	}
	for _, r := range moved {
		src := orig[recordHeader(r, "dwell-reprocess-of")]
		if src == nil {
			t.Fatalf("dwell-reprocess-of %q names no record of %s", recordHeader(r, "dwell-reprocess-of"), m.dlq)
		}
		if string(r.Key) != string(src.Key) || string(r.Value) != string(src.Value) {
			t.Errorf("copy %s=%s of %s=%s", r.Key, r.Value, src.Key, src.Value)
		}
		if len(r.Headers) != len(src.Headers)+1 || recordHeader(r, "dwell-reason") != "invalid-time" {
			t.Errorf("headers %v, want the original %v plus dwell-reprocess-of", r.Headers, src.Headers)
		}
	}
	// The event log: one transferred entry per moved record, naming the original input record.
	logs := readTopic(t, m.env.Brokers, m.elog)
	if len(logs) != 4 {
		t.Fatalf("%d event-log records, want 4", len(logs))
	}
	for _, r := range logs {
		var e struct {
			EventID, Type, Key, State, Topic string `json:",omitempty"`
			Partition                        int32
			Offset                           int64
		}
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		if e.State != "transferred" || e.Type != "page-view" || e.Topic != "events" || e.Partition != 1 || e.Offset < 100 || e.Offset > 103 {
			t.Errorf("event log %s", r.Value)
		}
	}
	var e struct {
		EventID string `json:"event_id"`
		Key     string
	}
	_ = json.Unmarshal(logs[0].Value, &e)
	if e.EventID != "e"+strings.TrimPrefix(e.Key, "p") {
		t.Errorf("event log %s: event_id is not the event's id", logs[0].Value)
	}
}

func TestMoveSinceUntilAndDryRun(t *testing.T) {
	m := newMoveRig(t)
	// --since 1h: the 2 recent invalid-time dead letters, written for real.
	code, _, stderr := runCLI(t, "", "move", "--brokers", m.brokers, "--from", m.dlq, "--to", m.events,
		"--event-log-topic", "", "--filter", `reason == "invalid-time"`, "--since", "1h")
	if code != exitOK || !strings.Contains(stderr, "matched 2, wrote 2") || strings.Contains(stderr, "logged") {
		t.Fatalf("--since: exit %d: %s", code, stderr)
	}
	if n := len(readTopic(t, m.env.Brokers, m.events)); n != 2 {
		t.Errorf("%d records moved, want 2", n)
	}
	if n := len(readTopic(t, m.env.Brokers, m.elog)); n != 0 {
		t.Errorf("%d event-log records with --event-log-topic ''", n)
	}
	// --until (RFC 3339) as a dry run: the old ones, printed, nothing written.
	until := m.old.Add(time.Minute).Format(time.RFC3339)
	code, stdout, stderr := runCLI(t, "", "move", "--brokers", m.brokers, "--from", m.dlq, "--to", m.events,
		"--event-log-topic", m.elog, "--until", until, "--dry-run")
	if code != exitOK || !strings.Contains(stderr, "matched 2, would write 2") {
		t.Fatalf("--until --dry-run: exit %d: %s", code, stderr)
	}
	if got := strings.Count(stdout, "\n"); got != 2 || !strings.Contains(stdout, `"dwell-reason":"invalid-time"`) {
		t.Errorf("dry run printed %d records:\n%s", got, stdout)
	}
	if n := len(readTopic(t, m.env.Brokers, m.events)); n != 2 {
		t.Errorf("the dry run wrote: %d records in %s, want still 2", n, m.events)
	}
	if n := len(readTopic(t, m.env.Brokers, m.elog)); n != 0 {
		t.Errorf("the dry run logged %d records", n)
	}
	// Everything: the committed transaction's records are read, the aborted one's are not.
	code, _, stderr = runCLI(t, "", "move", "--brokers", m.brokers, "--from", m.dlq, "--to", m.events, "--dry-run",
		"--filter", `offset >= 0`)
	if code != exitOK || !strings.Contains(stderr, "scanned 9 records, matched 9") {
		t.Errorf("all: exit %d: %s", code, stderr)
	}
}

func TestMoveUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"move", "--from", "a"}, "name both topics"},
		{[]string{"move", "--from", "a", "--to", "a"}, "both"},
		{[]string{"move", "--from", "a", "--to", "b", "--filter", `reason == 3`}, "mismatched types string and int) (1:8)"},
		{[]string{"move", "--from", "a", "--to", "b", "--filter", `nosuch == "x"`}, "unknown name nosuch (1:1)"},
		{[]string{"move", "--from", "a", "--to", "b", "--filter", `offset`}, "expected bool"},
		{[]string{"move", "--from", "a", "--to", "b", "--since", "yesterday"}, "neither RFC 3339"},
		{[]string{"move", "--from", "a", "--to", "b", "--since", "1h", "--until", "2h"}, "not after"},
	} {
		code, _, stderr := runCLI(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

func TestMoveMissingTopic(t *testing.T) {
	m := newMoveRig(t)
	code, _, stderr := runCLI(t, "", "move", "--brokers", m.brokers, "--from", m.dlq, "--to", m.env.Name("nosuch"),
		"--event-log-topic", m.elog)
	if code != exitFailure || !strings.Contains(stderr, "move: topics "+m.env.Name("nosuch")+" do not exist") {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

// recordHeader returns the last value of r's header key ("" when it has none).
func recordHeader(r *kgo.Record, key string) string {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == key {
			return string(r.Headers[i].Value)
		}
	}
	return ""
}
