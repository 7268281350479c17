package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestProcessAbsurdTime runs dwell process on a generated file (the README's example, smaller)
// with one line at 9999-12-31T23:59:59Z in the middle, of a profile seen before and after it: the
// line is dead-lettered time-too-far with its original bytes, and every other output file is
// byte for byte what the same file gives without it (a blank line in its place keeps the line
// numbers, which stand in for offsets). No output has a year after 9999.
func TestProcessAbsurdTime(t *testing.T) {
	dir := t.TempDir()
	gen := filepath.Join(dir, "events.jsonl")
	if code, _, stderr := runCLI(t, "", "gen", "--events", "6000", "--profiles", "300", "--rate", "20",
		"--idle-every", "2000", "--out", gen); code != 0 {
		t.Fatalf("gen exited %d: %s", code, stderr)
	}
	b, err := os.ReadFile(gen)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	const at = 3000
	// The profile of the line before: it has events on both sides of the absurd one.
	profile := regexp.MustCompile(`"profile":\{"id":"[^"]+"\}`).FindString(lines[at-1])
	if profile == "" {
		t.Fatalf("line %d has no profile: %s", at-1, lines[at-1])
	}
	absurd := `{"id":"evt-absurd","type":"page-view","time":"9999-12-31T23:59:59Z",` + profile + `}`
	write := func(name, middle string) string {
		p := filepath.Join(dir, name)
		body := strings.Join(lines[:at], "\n") + "\n" + middle + "\n" + strings.Join(lines[at:], "\n") + "\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	process := func(in string) (map[string][]byte, string) {
		out := filepath.Join(dir, "out-"+filepath.Base(in))
		code, _, stderr := runCLI(t, "", "process", "--in", in, "--out", out)
		if code != 0 {
			t.Fatalf("process %s exited %d: %s", in, code, stderr)
		}
		files := map[string][]byte{}
		for _, name := range outputFiles {
			if files[name], err = os.ReadFile(filepath.Join(out, name)); err != nil {
				t.Fatal(err)
			}
		}
		return files, stderr
	}
	want, wantSum := process(write("plain.jsonl", ""))
	got, gotSum := process(write("absurd.jsonl", absurd))

	for _, name := range outputFiles {
		if name == "dlq.jsonl" {
			continue
		}
		if !bytes.Equal(got[name], want[name]) {
			t.Errorf("%s differs with the absurd line", name)
		}
		if regexp.MustCompile(`"[0-9]{5,}-[0-9]{2}-[0-9]{2}T`).Match(got[name]) {
			t.Errorf("%s has a five-digit year", name)
		}
	}
	extra, ok := bytes.CutPrefix(got["dlq.jsonl"], want["dlq.jsonl"])
	if !ok {
		// Dead letters come in input order: the new one is among the others.
		extra = got["dlq.jsonl"]
	}
	dead := string(extra)
	for _, w := range []string{`"reason":"time-too-far"`, `"detail":"event time 9999-12-31T23:59:59.000Z is after 9999-12-31T11:59:59.999Z`, `"offset":3000`, `evt-absurd`} {
		if !strings.Contains(dead, w) {
			t.Errorf("dead letters lack %s:\n%s", w, dead)
		}
	}
	if n := bytes.Count(got["dlq.jsonl"], []byte("\n")) - bytes.Count(want["dlq.jsonl"], []byte("\n")); n != 1 {
		t.Errorf("%d more dead letters, want 1", n)
	}
	if !strings.Contains(gotSum, "time-too-far=1") || strings.Contains(wantSum, "time-too-far") {
		t.Errorf("summaries:\n%s\n%s", wantSum, gotSum)
	}
	created := func(files map[string][]byte) int {
		return bytes.Count(files["system-events.jsonl"], []byte(`"type":"profile-created"`))
	}
	if created(got) != created(want) {
		t.Errorf("%d profile-created with the absurd line, %d without", created(got), created(want))
	}
	if !strings.Contains(gotSum, "--max-time-jump") {
		t.Errorf("no hint about --max-time-jump:\n%s", gotSum)
	}
}

// TestProcessMaxTimeJump: a pause longer than --max-time-jump dead-letters what follows it, with
// a hint on stderr; a larger limit, or -1s, takes it.
func TestProcessMaxTimeJump(t *testing.T) {
	input := `{"type":"page-view","profile":"p1","time":"2026-01-01T00:00:00Z","id":"a"}
{"type":"page-view","profile":"p1","time":"2026-01-03T00:00:00Z","id":"b"}
`
	code, _, stderr := runCLI(t, input, "process", "--in", "-")
	if code != 0 || !strings.Contains(stderr, "dead letters=1 (time-too-far=1)") || !strings.Contains(stderr, "raise --max-time-jump") {
		t.Fatalf("default limit: exit %d, %s", code, stderr)
	}
	for _, jump := range []string{"72h", "-1s"} {
		code, stdout, stderr := runCLI(t, input, "process", "--in", "-", "--max-time-jump", jump)
		if code != 0 || !strings.Contains(stderr, "dead letters=0") || strings.Count(stdout, `"type":"visit-started"`) != 2 {
			t.Fatalf("--max-time-jump %s: exit %d, %s\n%s", jump, code, stderr, stdout)
		}
	}
	code, _, stderr = runCLI(t, input, "process", "--in", "-", "--max-time-jump", "0")
	if code != exitUsage || !strings.Contains(stderr, "max_time_jump must be") {
		t.Fatalf("--max-time-jump 0: exit %d, %s", code, stderr)
	}
}
