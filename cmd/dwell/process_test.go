package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProcessKeyCap runs dwell process on a generated file with --max-cached-keys far below
// its profiles and without, and requires byte-identical output files, a summary that counts
// the evicted keys, and nothing left in --temp-dir.
func TestProcessKeyCap(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	if code, _, stderr := runCLI(t, "", "gen", "--events", "20000", "--profiles", "3000", "--rate", "20",
		"--idle-every", "5000", "--malformed", "0.003", "--late", "0.002", "--out", in); code != 0 {
		t.Fatalf("gen exited %d: %s", code, stderr)
	}
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	var outputs [2]map[string][]byte
	for i, extra := range [][]string{{"--max-cached-keys", "100", "--temp-dir", tmp}, nil} {
		outDir := filepath.Join(dir, "out", string(rune('a'+i)))
		code, _, stderr := runCLI(t, "", append([]string{"process", "--in", in, "--out", outDir, "--key-partitions", "2"}, extra...)...)
		if code != 0 {
			t.Fatalf("run %d exited %d: %s", i, code, stderr)
		}
		if capped := strings.Contains(stderr, "keys over --max-cached-keys: evicted="); capped != (i == 0) {
			t.Fatalf("run %d: summary %q", i, stderr)
		}
		outputs[i] = map[string][]byte{}
		for _, name := range outputFiles[:4] {
			b, err := os.ReadFile(filepath.Join(outDir, name))
			if err != nil {
				t.Fatal(err)
			}
			outputs[i][name] = b
		}
	}
	for _, name := range outputFiles[:4] {
		if !bytes.Equal(outputs[0][name], outputs[1][name]) {
			t.Errorf("%s differs with --max-cached-keys 100", name)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in --temp-dir: %v", left)
	}
	code, _, stderr := runCLI(t, "", "process", "--in", in, "--max-cached-keys", "0")
	if code != exitUsage || !strings.Contains(stderr, "--max-cached-keys must be at least 1") {
		t.Errorf("--max-cached-keys 0: exit %d, %q", code, stderr)
	}
}

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

// TestProcessSummaryCounts: the summary's dead letters are the lines of dlq.jsonl, from every
// source (decoder, registry, rules), and it counts rule outputs by kind (issue 13).
func TestProcessSummaryCounts(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(`on_error: dead-letter
registry:
  types:
    add-to-cart: {schema: {type: object, required: [sku]}}
rules:
  - name: total
    on: purchase
    when: event.properties.total > 10
    actions: [{notify: {channel: log, to: [ops]}}, {route: orders}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	input := `not json
{"type":"purchase","profile":"p1","time":"2026-01-01T00:00:00Z","id":"a","properties":{"total":"x"}}
{"type":"purchase","profile":"p1","time":"2026-01-01T00:01:00Z","id":"b","properties":{"total":20}}
{"type":"add-to-cart","profile":"p1","time":"2026-01-01T00:02:00Z","id":"c","properties":{}}
`
	outDir := filepath.Join(dir, "out")
	code, _, stderr := runCLI(t, input, "process", "--in", "-", "--rules", rulesFile, "--out", outDir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	dlq, err := os.ReadFile(filepath.Join(outDir, "dlq.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(dlq), "\n"); n != 3 || strings.Count(string(dlq), `{"reason":`) != 3 {
		t.Fatalf("dlq.jsonl: %d lines, want 3 in one layout:\n%s", n, dlq)
	}
	for _, want := range []string{"dead letters=3 (malformed-json=1 rule-error=1 schema-violation=1)",
		"rule outputs: emit=0 notify=1 route=1", "rule errors=1", "dead-lettered=3"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("summary lacks %q: %s", want, stderr)
		}
	}
}

// blockingStdin serves its lines, calls onBlock, and then blocks until ctx is done, as an idle
// producer on a pipe does (and then ends).
type blockingStdin struct {
	r       io.Reader
	ctx     context.Context
	onBlock func()
}

func (b *blockingStdin) Read(p []byte) (int, error) {
	if n, err := b.r.Read(p); !errors.Is(err, io.EOF) {
		return n, err
	}
	if b.onBlock != nil {
		b.onBlock()
		b.onBlock = nil
	}
	<-b.ctx.Done()
	return 0, io.EOF
}

// TestProcessInterruptedInProcess cancels dwell process (its context, as SIGINT does) while it
// waits for more standard input: it exits 1, says it was interrupted and what the outputs hold,
// and those hold whole lines.
func TestProcessInterruptedInProcess(t *testing.T) {
	var in strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&in, `{"id":"e%d","type":"page-view","profile":"p%d","session":"s%d","time":%d}`+"\n", i, i%300, i%300, 1_767_225_600_000+int64(i)*1000)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outDir := filepath.Join(t.TempDir(), "out")
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"process", "--in", "-", "--out", outDir},
		&blockingStdin{r: strings.NewReader(in.String()), ctx: ctx, onBlock: cancel}, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "dwell: interrupted") ||
		!strings.Contains(stderr.String(), "process interrupted after 2000 input lines; "+outDir+" holds the whole lines written until then (system-events.jsonl ") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(outDir, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), fmt.Sprintf("events.jsonl %d,", bytes.Count(b, []byte("\n")))) || !bytes.HasSuffix(b, []byte("\n")) {
		t.Fatalf("events.jsonl holds %d lines (whole: %v); stderr %q", bytes.Count(b, []byte("\n")), bytes.HasSuffix(b, []byte("\n")), stderr.String())
	}
}

// TestProcessSIGINT runs dwell process as a child process reading a pipe that stays open, and
// sends it a real SIGINT while it waits for input: it must exit within a few seconds (exit
// status 1, as for every interrupted command), say what it wrote, and leave nothing in
// --temp-dir although its keys had passed --max-cached-keys.
func TestProcessSIGINT(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(dir, "out")
	cmd := exec.Command(os.Args[0], "process", "--in", "-", "--out", outDir, "--max-cached-keys", "10", "--temp-dir", tmp)
	cmd.Env = append(os.Environ(), asDwellEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	// Writing 4 MiB through the pipe (64 KiB of buffer) completes only once the child has read
	// most of it: by then it runs dwell's main, whose signal handler is in place.
	var in bytes.Buffer
	for i := 0; in.Len() < 4<<20; i++ {
		fmt.Fprintf(&in, `{"id":"e%d","type":"page-view","profile":"p%d","session":"s%d","time":%d}`+"\n", i, i%5000, i%5000, 1_767_225_600_000+int64(i)*100)
	}
	if _, err := stdin.Write(in.Bytes()); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20 s after SIGINT; stderr %q", stderr.String())
	}
	took := time.Since(sent)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitFailure {
		t.Fatalf("exit: %v, want status %d; stderr %q", err, exitFailure, stderr.String())
	}
	if !strings.Contains(stderr.String(), "process interrupted after") || !strings.Contains(stderr.String(), "dwell: interrupted") {
		t.Fatalf("stderr %q", stderr.String())
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("left in --temp-dir: %v", left)
	}
	t.Logf("exited %v after SIGINT: %s", took, strings.TrimSpace(stderr.String()))
	stdin.Close()
}
