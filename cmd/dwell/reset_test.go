package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// TestResetCLI follows the README's Reprocessing section with the CLI: dwell run, the plans of
// every target, a refusal while an instance runs, bad flags, then --execute and a second run
// that replays the input.
func TestResetCLI(t *testing.T) {
	k := pipelinetest.New(t, 2, []string{"events"})
	brokers := strings.Join(k.Brokers, ",")
	dir := t.TempDir()
	d := pipeline.DefaultTopics()
	group := k.Name("dwell")
	runArgs := []string{"run", "--brokers", brokers, "--create-topics", "--data-dir", filepath.Join(dir, "data"), "--metrics-addr", "", "--admin-addr", "",
		"--inputs", k.Name("events"), "--group", group, "--system-topic", k.Name(d.System), "--events-topic", k.Name(d.Events),
		"--late-topic", k.Name(d.Late), "--dlq-topic", k.Name(d.Dead)}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.DefaultProduceTopic(k.Name("events")))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	g, _ := bench.NewWeb(bench.WebConfig{Profiles: 50, Rate: 5})
	for range 1000 {
		r := g.Next(nil)
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// start runs dwell run until the returned stop is called, once the input is consumed.
	start := func() (stop func() string) {
		ctx, cancel := context.WithCancel(context.Background())
		var errb syncBuffer
		done := make(chan int, 1)
		go func() { done <- run(ctx, runArgs, strings.NewReader(""), &bytes.Buffer{}, &errb) }()
		pipelinetest.WaitFor(t, "dwell run to consume the input", time.Minute, func() bool {
			return strings.Contains(errb.String(), "dwell running") && pipelinetest.CaughtUp(t, k.Brokers, group, k.Name("events"))
		})
		return func() string {
			cancel()
			if code := <-done; code != exitOK {
				t.Fatalf("dwell run exited %d:\n%s", code, errb.String())
			}
			return errb.String()
		}
	}
	stop := start()
	reset := func(args ...string) (int, string, string) {
		return runCLI(t, "", append([]string{"reset", "--brokers", brokers, "--group", group}, args...)...)
	}
	// A running member: refused, named.
	code, _, stderr := reset("--to-earliest", "--execute")
	if code != exitFailure || !strings.Contains(stderr, "has 1") || !strings.Contains(stderr, "stop every dwell run") {
		t.Fatalf("reset while running: exit %d, %q", code, stderr)
	}
	stop()

	offsets := filepath.Join(dir, "offsets.csv")
	if err := os.WriteFile(offsets, fmt.Appendf(nil, "# topic,partition,offset\n%s,0,10\n", k.Name("events")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, plan := range []struct {
		args []string
		want []string
	}{
		{[]string{"--to-earliest"}, []string{"partition 0: " + k.Name("events"), "-> 0; state emptied", "partition 1:", "dry run"}},
		{[]string{"--to-datetime", "2026-12-07T09:00:00Z"}, []string{"no savepoint at or before the target", "dry run"}},
		{[]string{"--by-duration", "6h", "--dry-run"}, []string{"partition 1:", "dry run"}},
		{[]string{"--to-offsets", offsets}, []string{"partition 0:", "(target 10)", "dry run"}},
	} {
		code, stdout, stderr := reset(plan.args...)
		for _, w := range plan.want {
			if code != exitOK || !strings.Contains(stdout, w) {
				t.Fatalf("reset %v: exit %d, want %q in:\n%s%s", plan.args, code, w, stdout, stderr)
			}
		}
		if plan.args[0] == "--to-offsets" && strings.Contains(stdout, "partition 1:") {
			t.Fatalf("reset --to-offsets planned a partition the file leaves out:\n%s", stdout)
		}
	}
	for _, bad := range [][]string{{}, {"--to-earliest", "--by-duration", "1h"}, {"--to-datetime", "yesterday"},
		{"--to-earliest", "--execute", "--dry-run"}, {"--by-duration", "-1h"}} {
		if code, _, stderr := reset(bad...); code != exitUsage {
			t.Fatalf("reset %v: exit %d, want %d: %s", bad, code, exitUsage, stderr)
		}
	}
	if code, _, stderr := reset("--to-earliest", "--inputs", "nosuch"); code != exitFailure || !strings.Contains(stderr, `"nosuch" not found`) {
		t.Fatalf("reset of a missing topic: exit %d, %q", code, stderr)
	}

	code, stdout, stderr := reset("--to-earliest", "--execute")
	if code != exitOK || !strings.Contains(stdout, "done") {
		t.Fatalf("reset --execute: exit %d:\n%s%s", code, stdout, stderr)
	}
	if pipelinetest.CaughtUp(t, k.Brokers, group, k.Name("events")) {
		t.Fatal("after the reset the group's offsets are still at the end")
	}
	logs := start()()
	if !strings.Contains(logs, "partition restored") {
		t.Fatalf("second run:\n%s", logs)
	}
}
