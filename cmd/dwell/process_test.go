package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProcessPendingSchedules runs the rule that schedules again when its schedule fires: the
// run ends, and the summary counts the schedules left pending after the last event time.
func TestProcessPendingSchedules(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(`version: again-1
rules:
  - name: start
    on: signup
    actions: [{schedule: {name: reminder, type: reminder, after: 1h}}]
  - name: again
    on: reminder
    actions: [{schedule: {name: reminder, type: reminder, after: 1h}}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	input := `{"type":"signup","profile":"p1","time":"2026-01-01T00:00:00Z","id":"a"}
{"type":"signup","profile":"p2","time":"2026-01-01T00:00:00Z","id":"b"}
{"type":"page-view","profile":"p1","time":"2026-01-01T03:00:00Z","id":"c"}
`
	outDir := filepath.Join(dir, "out")
	code, _, stderr := runCLI(t, input, "process", "--in", "-", "--rules", rulesFile, "--out", outDir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "pending schedules=2") {
		t.Fatalf("summary does not count the 2 pending schedules: %s", stderr)
	}
	events, err := os.ReadFile(filepath.Join(outDir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	// Up to the last event time, 03:00: at 01:00, 02:00 and 03:00 for each profile.
	if n := strings.Count(string(events), `"type":"reminder"`); n != 6 {
		t.Fatalf("%d reminders fired, want 6", n)
	}
}
