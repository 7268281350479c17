package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKafkaCommandsUnreachable runs every command that talks to Kafka against a closed port:
// each exits 1 within seconds, saying where it looked and what to check (issue 19: dwell tail
// printed nothing and exited 0, dwell produce hung).
func TestKafkaCommandsUnreachable(t *testing.T) {
	dead := closedPort(t)
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte("rules:\n  - name: x\n    on: purchase\n    actions: [{increment: purchases}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(in, []byte(`{"type":"page-view","profile":{"id":"p"},"session":{"id":"s"},"time":"2026-01-01T00:00:00Z"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"run", "--data-dir", filepath.Join(dir, "data"), "--metrics-addr", "", "--admin-addr", ""},
		{"produce", "--count", "1"},
		{"produce", "--file", in},
		{"tail", "events"},
		{"topics", "create", "events"},
		{"topics", "list"},
		{"topics", "describe", "events"},
		{"reset", "--group", "g", "--to-earliest"},
		{"savepoints", "list"},
		{"log"},
		{"move", "--from", "a", "--to", "b"},
		{"deliver", "--queue", "q", "--url", "http://127.0.0.1:1/", "--metrics-addr", ""},
		{"config", "apply", rules},
	} {
		t.Run(strings.Join(args[:min(2, len(args))], " "), func(t *testing.T) {
			start := time.Now()
			code, _, stderr := runCLI(t, "", append(args, "--brokers", dead)...)
			if code != exitFailure {
				t.Errorf("exit %d, want %d: %s", code, exitFailure, stderr)
			}
			if want := "cannot reach Kafka at " + dead; !strings.Contains(stderr, want) || !strings.Contains(stderr, "check --brokers or DWELL_BROKERS") {
				t.Errorf("stderr %q lacks %q and what to check", stderr, want)
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("took %s", took)
			}
		})
	}
}

// TestKafkaCommandsMissingTopic: a topic that does not exist is an error naming it and the way
// to create it, exit 1, for the commands that read or write a named topic.
func TestKafkaCommandsMissingTopic(t *testing.T) {
	conn, _ := fakeKafka(t, 1, "present")
	brokers := strings.Join(conn.Brokers, ",")
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tail", "nosuch"}, `topic "nosuch" not found; create it with dwell topics create nosuch`},
		{[]string{"produce", "--topic", "nosuch", "--count", "1"}, `topic "nosuch" not found; create it with dwell topics create nosuch`},
		{[]string{"topics", "describe", "nosuch"}, `"nosuch"`},
		{[]string{"tail", "present", "--offset", "99"}, `--offset 99 is past the end of present partition 0 (next offset 0); use --offset end`},
		{[]string{"run", "--inputs", "nosuch", "--data-dir", filepath.Join(dir, "data"), "--metrics-addr", "", "--admin-addr", ""},
			`"nosuch" not found`},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			code, _, stderr := runCLI(t, "", append(tc.args, "--brokers", brokers)...)
			if code != exitFailure || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 1 and %q", code, stderr, tc.want)
			}
		})
	}
}

// TestTopicsCreateAllWithRules: dwell topics create --all --rules creates what a dwell run
// with those rules needs beyond the outputs: the queues the rules write to and the event log,
// so that the run needs no --create-topics (a new user found the event log missing).
func TestTopicsCreateAllWithRules(t *testing.T) {
	conn, _ := fakeKafka(t, 1)
	brokers := strings.Join(conn.Brokers, ",")
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("rules:\n  - name: x\n    on: purchase\n    actions: [{route: orders}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "", "topics", "create", "--all", "--inputs", "events", "--partitions", "3", "--rules", rules, "--brokers", brokers)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"created topic events: 3 partitions", "created topic dwell.queue.orders: 3 partitions", "created topic dwell.event-log: 3 partitions", "created topic dwell.changelog: 3 partitions"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
