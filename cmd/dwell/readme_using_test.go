package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// readmeBlock is a shell block of the README marked <!-- readme-test: NAME [long-running] -->.
type readmeBlock struct {
	name        string
	longRunning bool
	lines       []string
}

var readmeTestMark = regexp.MustCompile("(?s)<!-- readme-test: ([a-z0-9-]+)( long-running)? -->\n```sh\n(.*?)```")

func readmeBlocks(t *testing.T, prefix string) []readmeBlock {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeBlock
	for _, m := range readmeTestMark.FindAllSubmatch(readme, -1) {
		if !strings.HasPrefix(string(m[1]), prefix) {
			continue
		}
		b := readmeBlock{name: string(m[1]), longRunning: len(m[2]) > 0}
		for _, l := range strings.Split(strings.TrimSpace(string(m[3])), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				b.lines = append(b.lines, l)
			}
		}
		out = append(out, b)
	}
	return out
}

// The two lines of "Using it" that set up the environment rather than use dwell: the test
// provides what they provide (a dwell binary in bin/, DWELL_BROKERS of a running cluster)
// unless it runs fully verbatim (DWELL_README_VERBATIM=1, under make test-kafka).
const (
	readmeBuildLine   = "go build -o bin/dwell ./cmd/dwell"
	readmeKafkaUpLine = `eval "$(make -s kafka-up)"                # sets DWELL_BROKERS=127.0.0.1:PORT`
)

// TestReadmeUsingIt runs the README's "Using it" blocks as written, in order, in one shell
// environment, in a directory laid out as the repository (its sources linked in): Kafka up, a
// topic created, history produced from a file, dwell run in the background, live traffic,
// tails, a profile from the admin API, dwell process offline, then dwell run stopped with
// SIGINT (exit 0). On kfake the build and kafka-up lines are replaced by the test binary
// (dwell's main, the same source) and the kfake cluster's address; under make test-kafka
// (DWELL_TEST_BROKERS set) every line runs verbatim, the broker being a second one that
// make kafka-up starts, as a new user's would be.
func TestReadmeUsingIt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the README's commands (about 40s)")
	}
	blocks := readmeBlocks(t, "using-it-")
	if len(blocks) < 5 {
		t.Fatalf("%d using-it blocks in the README, want 5", len(blocks))
	}
	verbatim := os.Getenv("DWELL_TEST_BROKERS") != ""
	root := t.TempDir()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"go.mod", "go.sum", "Makefile", "cmd", "pipeline", "state", "operators", "bench", "deploy"} {
		if err := os.Symlink(filepath.Join(repo, name), filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{
		"DWELL_METRICS_ADDR=127.0.0.1:0",    // not the default :9090, which a developer's Prometheus may hold
		"DWELL_ADMIN_ADDR=" + closedPort(t), // free a moment ago
		"KAFKA_DIR=" + filepath.Join(root, "kafka"),
	}
	substitute := map[string]string{}
	if verbatim {
		t.Cleanup(func() {
			cmd := exec.Command("make", "-s", "kafka-down")
			cmd.Dir, cmd.Env = root, append(os.Environ(), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Logf("make kafka-down: %v: %s", err, out)
			}
		})
	} else {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		wrapper := fmt.Sprintf("#!/bin/sh\n%s=1 exec %q \"$@\"\n", asDwellEnv, exe)
		if err := os.WriteFile(filepath.Join(root, "bin", "dwell"), []byte(wrapper), 0o755); err != nil {
			t.Fatal(err)
		}
		substitute[readmeBuildLine] = "true"
		substitute[readmeKafkaUpLine] = "export DWELL_BROKERS=" + strings.Join(c.ListenAddrs(), ",")
	}
	seen := map[string]bool{}
	for _, b := range blocks {
		for _, l := range b.lines {
			if _, ok := substitute[l]; ok {
				seen[l] = true
			}
		}
	}
	for l := range substitute {
		if !seen[l] {
			t.Fatalf("the README's Using it no longer has the line %q this test stands in for; update the test", l)
		}
	}

	sh := &readmeShell{t: t, dir: root, env: env}
	type background struct {
		cmd  *exec.Cmd
		out  *syncBuffer
		what string // dwell run or dwell collect, as its log says
	}
	var bgs []background
	for _, b := range blocks {
		script := make([]string, len(b.lines))
		for i, l := range b.lines {
			script[i] = l
			if s, ok := substitute[l]; ok {
				script[i] = s
			}
		}
		if b.longRunning {
			if len(script) != 1 {
				t.Fatalf("block %s: a long-running block is one command", b.name)
			}
			what := "dwell"
			if strings.Contains(script[0], " collect ") {
				what = "dwell collect"
			}
			cmd, out := sh.start(script[0])
			bgs = append(bgs, background{cmd, out, what})
			waitFor(t, 60*time.Second, func() bool { return strings.Contains(out.String(), what+" running") },
				func() string { return what + " did not start: " + out.String() })
			continue
		}
		start := time.Now()
		out := sh.run(b.name, script)
		t.Logf("block %s: %s, %d lines of output", b.name, time.Since(start).Round(time.Millisecond), strings.Count(out, "\n"))
		sh.check(b.name, out)
	}
	if len(bgs) == 0 {
		t.Fatal("no long-running block: dwell run never ran")
	}
	for i := len(bgs) - 1; i >= 0; i-- { // Ctrl-C, the last started first
		bg := bgs[i]
		if err := bg.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- bg.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s after SIGINT: %v\n%s", bg.what, err, bg.out.String())
			}
		case <-time.After(60 * time.Second):
			_ = bg.cmd.Process.Kill()
			<-done
			t.Fatalf("%s did not stop within 60s of SIGINT:\n%s", bg.what, bg.out.String())
		}
		if !strings.Contains(bg.out.String(), bg.what+" stopped cleanly") {
			t.Fatalf("%s did not stop cleanly:\n%s", bg.what, bg.out.String())
		}
	}
}

// readmeShell runs README lines in bash, carrying exported variables from block to block.
type readmeShell struct {
	t   *testing.T
	dir string
	env []string // KEY=VALUE, the test's own and those the blocks exported
}

func (s *readmeShell) command(ctx context.Context, script string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), s.env...)
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// run runs the lines with set -e and returns their output; a failing line fails the test. The
// environment at the end is kept for the next block.
func (s *readmeShell) run(name string, lines []string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.t.Context(), 3*time.Minute)
	defer cancel()
	envFile := filepath.Join(s.dir, ".readme-env")
	script := "set -euo pipefail\n" + strings.Join(lines, "\n") + "\nenv -0 > " + envFile + "\n"
	out, err := s.command(ctx, script).CombinedOutput()
	if err != nil {
		s.t.Fatalf("README block %s failed (%v):\n%s\noutput:\n%s", name, err, strings.Join(lines, "\n"), out)
	}
	raw, err := os.ReadFile(envFile)
	if err != nil {
		s.t.Fatal(err)
	}
	s.env = s.env[:0:0]
	for _, kv := range bytes.Split(raw, []byte{0}) {
		if k, _, ok := strings.Cut(string(kv), "="); ok && (strings.HasPrefix(k, "DWELL_") || k == "KAFKA_DIR") {
			s.env = append(s.env, string(kv))
		}
	}
	return string(out)
}

func (s *readmeShell) start(line string) (*exec.Cmd, *syncBuffer) {
	s.t.Helper()
	cmd := s.command(context.WithoutCancel(s.t.Context()), "exec "+line)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, out
}

// check asserts what each block's output must show beyond its exit code.
func (s *readmeShell) check(name, out string) {
	s.t.Helper()
	want := map[string][]string{
		"using-it-1":     {"events", "partitions"},
		"using-it-2":     {"produced 100000 records", `"key":"prof-632be59bd9b4e019"`},
		"using-it-4":     {"produced 20000 records", `"type":`, `"profile": "prof-632be59bd9b4e019"`, `"offsets"`},
		"using-it-5":     {"dwell: "},
		"using-it-track": {`"profile":{"id":"visitor-1"}`, `"reason":"unknown-source"`, `"key":"visitor-1"`, `"events":[`},
	}[name]
	for _, w := range want {
		if !strings.Contains(out, w) {
			s.t.Errorf("README block %s: output lacks %q:\n%s", name, w, out)
		}
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
