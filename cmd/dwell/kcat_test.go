package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// TestKcatInterop has an independent client, kcat (librdkafka), on both ends of dwell run:
// kcat produces a file of events keyed by profile (partitioned with Kafka's murmur2, as a
// Java producer would), dwell processes it, and kcat reads the system events back with
// read_committed. They must be, per key and in order, what dwell process makes of the same file.
// It runs on kfake, or on the real broker under make test-kafka; without kcat it is skipped
// (.ci/run installs it).
func TestKcatInterop(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (Debian package kcat)")
	}
	const parts = 3
	k := pipelinetest.New(t, parts, []string{"events"})
	brokers := strings.Join(k.Brokers, ",")
	d := pipeline.DefaultTopics()
	topics := pipeline.Topics{System: k.Name(d.System), Events: k.Name(d.Events), Late: k.Name(d.Late),
		Dead: k.Name(d.Dead), Changelog: k.Name(d.Changelog)}
	s := newStream(t, bench.WebConfig{Profiles: 400, Rate: 20, MalformedShare: 0.01, LateShare: 0.005, Jitter: time.Second}, 6000, parts)

	dir := t.TempDir()
	var kv bytes.Buffer
	for _, r := range s.recs {
		kv.Write(r.Key)
		kv.WriteByte('\t')
		kv.Write(r.Value)
		kv.WriteByte('\n')
	}
	in := filepath.Join(dir, "in.tsv")
	if err := os.WriteFile(in, kv.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(values, s.values(), 0o644); err != nil {
		t.Fatal(err)
	}
	kcatRun := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(kcat, append([]string{"-b", brokers}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kcat %v: %v\n%s", args, err, stderr.String())
		}
		return out
	}
	kcatRun("-P", "-t", k.Name("events"), "-K", "\t", "-X", "partitioner=murmur2_random", "-z", "lz4", "-l", in)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errb syncBuffer
	go func() {
		done <- run(ctx, []string{"run", "--brokers", brokers, "--inputs", k.Name("events"), "--group", k.Name("dwell"),
			"--system-topic", topics.System, "--events-topic", topics.Events, "--late-topic", topics.Late,
			"--dlq-topic", topics.Dead, "--changelog-topic", topics.Changelog, "--create-topics",
			"--data-dir", filepath.Join(dir, "data"), "--metrics-addr", "", "--admin-addr", "", "--idle-timeout=-1s"},
			strings.NewReader(""), &bytes.Buffer{}, &errb)
	}()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if p, err := progress(ctx, adm, k.Name("dwell"), k.Name("events")); err == nil && p == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dwell did not consume kcat's records in 2 minutes:\n%s", errb.String())
		}
		select {
		case code := <-done:
			t.Fatalf("dwell run stopped on its own: exit %d\n%s", code, errb.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("dwell run: exit %d\n%s", code, errb.String())
	}

	// Read back with kcat, read_committed, to the end of every partition.
	got := kcatRun("-C", "-t", topics.System, "-X", "isolation.level=read_committed", "-o", "beginning", "-e", "-q", "-f", "%s\n")
	var lines [][]byte
	for _, l := range bytes.Split(bytes.TrimSpace(got), []byte("\n")) {
		if len(l) > 0 {
			lines = append(lines, l)
		}
	}

	// The same file through dwell process.
	out := filepath.Join(dir, "out")
	if code, _, stderr := runCLI(t, "", "process", "--in", values, "--out", out, "--key-partitions", "3"); code != exitOK {
		t.Fatalf("dwell process: exit %d: %s", code, stderr)
	}
	file, err := os.ReadFile(filepath.Join(out, "system-events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(file)), "\n") {
		if key := eventKey(t, []byte(l)); !s.sentinels[key] {
			want[key] = append(want[key], l)
			n++
		}
	}
	fileMode := &stream{sentinels: s.sentinels, want: want, wantCount: n}
	v := fileMode.check(t, lines, false)
	if v.missing > 0 || v.duplicated > 0 || v.extra > 0 || len(v.problems) > 0 || v.got != n {
		t.Fatalf("kcat read %d system events, dwell process wrote %d: %d missing, %d duplicated, %d unexpected:\n%s",
			v.got, n, v.missing, v.duplicated, v.extra, strings.Join(v.problems, "\n"))
	}
	t.Logf("%d system events read by kcat match dwell process on the file kcat produced", v.got)
}
