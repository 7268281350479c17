package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeRulesExamples runs every rules file of the README (its ```yaml blocks with
// rules), as written, with dwell process on dwell gen traffic: none may make a rule error, and
// each must notify or route something (issue 13).
func TestReadmeRulesExamples(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(readme, -1)
	dir := t.TempDir()
	in := filepath.Join(dir, "events.jsonl")
	if code, _, stderr := runCLI(t, "", "gen", "--events", "30000", "--rate", "2", "--out", in); code != exitOK {
		t.Fatalf("gen: exit %d: %s", code, stderr)
	}
	n := 0
	for i, b := range blocks {
		if !bytes.Contains(b[1], []byte("\nrules:")) {
			continue
		}
		n++
		file := filepath.Join(dir, "rules.yaml")
		if err := os.WriteFile(file, b[1], 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out", string(rune('a'+i)))
		code, _, stderr := runCLI(t, "", "process", "--in", in, "--rules", file, "--out", out)
		if code != exitOK {
			t.Fatalf("example %d: exit %d: %s", n, code, stderr)
		}
		if !strings.Contains(stderr, "rule errors=0;") {
			log, _ := os.ReadFile(filepath.Join(out, "event-log.jsonl"))
			var errs []string
			for _, l := range strings.Split(string(log), "\n") {
				if strings.Contains(l, `"state":"error"`) && len(errs) < 3 {
					errs = append(errs, l)
				}
			}
			t.Fatalf("example %d made rule errors: %s\n%s", n, stderr, strings.Join(errs, "\n"))
		}
		rules, err := os.ReadFile(filepath.Join(out, "rules.jsonl"))
		if err != nil || len(rules) == 0 {
			t.Fatalf("example %d wrote no rule outputs (%v): %s", n, err, stderr)
		}
		t.Logf("example %d: %d rule outputs; %s", n, bytes.Count(rules, []byte("\n")), stderr)
	}
	if n < 2 {
		t.Fatalf("%d rules examples found in the README, want at least 2", n)
	}
}
