package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dwellhq/dwell/operators"
)

// runCLI runs the command in-process and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// TestProcessIsDeterministic runs dwell process twice on the same generated 100k-event file
// (with malformed, late and out-of-order records, and idle gaps so visits end mid-stream) and a
// rules file, and requires byte-identical output files, rule outputs and event log included.
func TestProcessIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	if code, _, stderr := runCLI(t, "", "gen", "--events", "100000", "--profiles", "5000", "--rate", "50",
		"--idle-every", "30000", "--malformed", "0.003", "--late", "0.002", "--out", in); code != 0 {
		t.Fatalf("gen exited %d: %s", code, stderr)
	}
	// Rules with state, schedules and every output kind, so that rules.jsonl and event-log.jsonl
	// are compared too.
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(`version: det-1
rules:
  - name: count
    on: "*"
    actions: [{increment: events}]
  - name: follow-up
    on: visit-ended
    actions:
      - schedule: {name: follow, type: follow-up, after: 30m}
      - notify: {channel: email, to: ["{{.profile.id}}@example.com"], subject: "{{.profile.counters.events}} events"}
  - name: back
    on: page-view
    when: profile.counters.events > 5
    actions: [{cancel: follow}, {route: busy}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var outputs [2]map[string][]byte
	for i := range outputs {
		outDir := filepath.Join(dir, "out", string(rune('a'+i)))
		code, _, stderr := runCLI(t, "", "process", "--in", in, "--out", outDir, "--key-partitions", "3", "--rules", rulesFile)
		if code != 0 {
			t.Fatalf("run %d exited %d: %s", i, code, stderr)
		}
		if !strings.Contains(stderr, "100000 records") {
			t.Fatalf("summary line does not count the records: %q", stderr)
		}
		outputs[i] = map[string][]byte{}
		for _, name := range outputFiles {
			b, err := os.ReadFile(filepath.Join(outDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if len(b) == 0 {
				t.Fatalf("run %d: %s is empty; the sample should produce every stream", i, name)
			}
			outputs[i][name] = b
		}
	}
	for _, name := range outputFiles {
		if !bytes.Equal(outputs[0][name], outputs[1][name]) {
			t.Errorf("%s differs between two runs on the same input", name)
		}
	}
}

// TestProcessSummaryAndStdout checks the default output (system events on stdout), the summary
// line on stderr, and that dead letters do not fail the run.
func TestProcessSummaryAndStdout(t *testing.T) {
	input := `{"type":"page-view","profile":"p1","session":"s1","time":"2026-01-01T00:00:00Z","id":"a"}
not json
{"type":"page-view","profile":"p1","session":"s1","time":"2026-01-01T00:01:00Z","id":"b"}
`
	code, stdout, stderr := runCLI(t, input, "process", "--in", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{`"type":"profile-created"`, `"type":"visit-ended"`, `"reason":"shutdown-flush"`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %s:\n%s", want, stdout)
		}
	}
	if got := strings.Count(stdout, "\n"); got != 5 {
		t.Errorf("%d system events on stdout, want 5 (created, opened, started, closed, ended)", got)
	}
	for _, want := range []string{"3 records", "2 events in", "profile-created=1", "visit-ended=1", "dead letters=1 (malformed-json=1)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("summary lacks %q: %s", want, stderr)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Usage"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"process"}, "--in is required"},
		{[]string{"process", "--in", "-", "--visit-gap", "-1m"}, "visit_gap must be"},
		{[]string{"process", "--in", "-", "--allowed-lateness", "-1m"}, "allowed_lateness must be"},
		{[]string{"process", "--in", "-", "--disable", "visit-bogus"}, `unknown system-event type "visit-bogus"`},
		{[]string{"process", "--in", "-", "--key-partitions", "0"}, "--key-partitions must be at least 1"},
		// Refused before any broker is dialled (port 1 would say "connection refused").
		{[]string{"run", "--brokers", "127.0.0.1:1", "--stall-timeout", "1s"}, "stall timeout 1s must be at least 10s"},
		{[]string{"run", "--brokers", "127.0.0.1:1", "--max-cycle-time", "40s"}, "pass --max-cycle-time"},
	} {
		code, _, stderr := runCLI(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
	code, _, stderr := runCLI(t, "", "process", "--in", "/nonexistent/file.jsonl")
	if code != exitFailure || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing input: exit %d, %q", code, stderr)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	t.Setenv("DWELL_VISIT_GAP", "bogus")
	code, _, stderr := runCLI(t, "", "process", "--in", "-")
	if code != exitUsage || !strings.Contains(stderr, "DWELL_VISIT_GAP") {
		t.Fatalf("bad DWELL_VISIT_GAP: exit %d, %q", code, stderr)
	}
	t.Setenv("DWELL_VISIT_GAP", "1m")
	t.Setenv("DWELL_SESSION_TIMEOUT", "1m")
	input := `{"type":"a","profile":"p","time":0,"id":"x"}
{"type":"a","profile":"p","time":120000,"id":"y"}
`
	code, stdout, stderr := runCLI(t, input, "process", "--in", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// With a 1m gap, two events 2m apart are two visits.
	if got := strings.Count(stdout, `"type":"visit-started"`); got != 2 {
		t.Fatalf("%d visits with DWELL_VISIT_GAP=1m, want 2:\n%s", got, stdout)
	}
}

// TestAllowedLateness: --allowed-lateness, DWELL_ALLOWED_LATENESS and allowed_lateness in a
// config file set how far behind the watermark an event may be before it is late; by default
// the visit gap, following --visit-gap.
func TestAllowedLateness(t *testing.T) {
	// The watermark reaches 2h-5s; r is 1h behind it, s 20m.
	input := `{"type":"a","profile":"p","time":0,"id":"x"}
{"type":"a","profile":"q","time":7200000,"id":"y"}
{"type":"a","profile":"r","time":3600000,"id":"z"}
{"type":"a","profile":"s","time":6000000,"id":"w"}
`
	for _, tc := range []struct {
		env  string
		args []string
		late int
	}{
		{"", nil, 1}, // the visit gap, 30m: r is late
		{"", []string{"--allowed-lateness", "2h"}, 0},    // neither
		{"", []string{"--allowed-lateness", "10m"}, 2},   // both
		{"", []string{"--visit-gap", "2h"}, 0},           // it follows the visit gap
		{"10m", nil, 2},                                  // the variable
		{"10m", []string{"--allowed-lateness", "2h"}, 0}, // the flag wins
	} {
		if tc.env != "" {
			t.Setenv("DWELL_ALLOWED_LATENESS", tc.env)
		}
		code, _, stderr := runCLI(t, input, append([]string{"process", "--in", "-"}, tc.args...)...)
		want := "late=0;"
		if tc.late > 0 {
			want = fmt.Sprintf("late=%d (beyond-allowed-lateness=%d);", tc.late, tc.late)
		}
		if code != 0 || !strings.Contains(stderr, want) {
			t.Errorf("DWELL_ALLOWED_LATENESS=%q %v: exit %d, %s; want %s", tc.env, tc.args, code, stderr, want)
		}
	}
	path := filepath.Join(t.TempDir(), "dwell.yaml")
	if err := os.WriteFile(path, []byte("allowed_lateness: 2h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DWELL_ALLOWED_LATENESS", "") // only the file: unset below
	os.Unsetenv("DWELL_ALLOWED_LATENESS")
	var c operators.Config
	fs := newFlags("run", io.Discard)
	bindOperators(fs, &c)
	fs.String("config", "", "")
	if err := parse(fs, []string{"--config", path}); err != nil || c.AllowedLateness != 2*time.Hour {
		t.Fatalf("allowed_lateness: 2h in the config file: %v, allowed lateness %s", err, c.AllowedLateness)
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "dwell.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fs := newFlags("run", io.Discard)
	gap := fs.Duration("visit-gap", 30*time.Minute, "")
	ends := fs.String("session-end-types", "logout", "")
	group := fs.String("group", "dwell", "")
	timeout := fs.Duration("session-timeout", 30*time.Minute, "")
	fs.String("config", "", "")
	t.Setenv("DWELL_SESSION_TIMEOUT", "7m")
	path := write("visit_gap: 10m\nsession-end-types: [logout, sign-out]\ngroup: from-file\nsession_timeout: 1h\n")
	if err := parse(fs, []string{"--config", path, "--group", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	if *gap != 10*time.Minute || *ends != "logout,sign-out" || *group != "from-flag" || *timeout != 7*time.Minute {
		t.Fatalf("gap %s ends %q group %q timeout %s: want the file's gap and ends, the flag's group, the variable's timeout", *gap, *ends, *group, *timeout)
	}
	fs2 := newFlags("run", io.Discard)
	fs2.Duration("visit-gap", 0, "")
	fs2.String("config", "", "")
	err := parse(fs2, []string{"--config", write("visit_gapp: 10m\n")})
	if err == nil || !strings.Contains(err.Error(), `unknown key "visit_gapp"`) || !strings.Contains(err.Error(), "visit-gap") {
		t.Fatalf("typo in the file: %v", err)
	}
	// The example file in deploy/ is valid for dwell run.
	code, _, stderr := runCLI(t, "", "run", "--config", "../../deploy/dwell.example.yaml", "--brokers", "127.0.0.1:1", "--metrics-addr", "", "--admin-addr", "")
	if strings.Contains(stderr, "unknown key") || strings.Contains(stderr, "config ") {
		t.Fatalf("deploy/dwell.example.yaml is not a valid config: exit %d, %s", code, stderr)
	}
}
