package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// syncBuffer is a bytes.Buffer safe for the logger's writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunAgainstKafka runs dwell run on kfake, or on the real broker in DWELL_TEST_BROKERS.
func TestRunAgainstKafka(t *testing.T) {
	k := pipelinetest.New(t, 3, []string{"events"})
	brokers := strings.Join(k.Brokers, ",")
	dir := t.TempDir()
	d := pipeline.DefaultTopics()
	names := []string{"--inputs", k.Name("events"), "--group", k.Name("dwell"), "--system-topic", k.Name(d.System),
		"--events-topic", k.Name(d.Events), "--late-topic", k.Name(d.Late), "--dlq-topic", k.Name(d.Dead),
		"--changelog-topic", k.Name(d.Changelog)}

	// Without --create-topics, missing outputs are an error that says what to do.
	code, _, stderr := runCLI(t, "", append([]string{"run", "--brokers", brokers, "--data-dir", filepath.Join(dir, "x")}, names...)...)
	if code != exitFailure || !strings.Contains(stderr, "--create-topics") || !strings.Contains(stderr, "dwell.changelog") {
		t.Fatalf("missing topics: exit %d, %q", code, stderr)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.DefaultProduceTopic(k.Name("events")))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	g, _ := bench.NewWeb(bench.WebConfig{Profiles: 50, Rate: 5})
	for range 500 {
		r := g.Next(nil)
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"run", "--brokers", brokers, "--create-topics",
			"--data-dir", filepath.Join(dir, "data"), "--metrics-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, names...), strings.NewReader(""), &bytes.Buffer{}, &errb)
	}()
	out, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ConsumeTopics(k.Name(d.System)),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	pollCtx, pollCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer pollCancel()
	var first *kgo.Record
	for first == nil && pollCtx.Err() == nil {
		out.PollFetches(pollCtx).EachRecord(func(r *kgo.Record) {
			if first == nil {
				first = r
			}
		})
	}
	if first == nil {
		t.Fatalf("no system event within 30s; stderr:\n%s", errb.String())
	}
	if !bytes.Contains(first.Value, []byte(`"type":"profile-created"`)) {
		t.Fatalf("first system event is not profile-created: %s", first.Value)
	}
	// Scrape the real endpoint.
	m := regexp.MustCompile(`serving metrics" addr=(\S+)`).FindStringSubmatch(errb.String())
	if m == nil {
		t.Fatalf("no metrics address logged:\n%s", errb.String())
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + m[1] + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	waitReady := time.Now().Add(20 * time.Second)
	for code, _ := get("/readyz"); code != http.StatusOK; code, _ = get("/readyz") {
		if time.Now().After(waitReady) {
			t.Fatalf("/readyz stayed %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A new data dir writes a savepoint of every partition at once; dwell savepoints list
	// shows them (the application id is the group).
	waitSavepoints := time.Now().Add(30 * time.Second)
	for strings.Count(errb.String(), `msg="savepoint completed"`) < 3 {
		if time.Now().After(waitSavepoints) {
			t.Fatalf("no savepoint of every partition within 30s:\n%s", errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, list, stderr := runCLI(t, "", "savepoints", "list", "--brokers", brokers, "--group", k.Name("dwell"))
	if rows := strings.Split(strings.TrimSpace(list), "\n"); code != exitOK || len(rows) < 4 {
		t.Fatalf("savepoints list: exit %d, want a savepoint per partition:\n%s%s", code, list, stderr)
	}
	_, body := get("/metrics")
	for _, series := range []string{`dwell_records_in_total{topic="` + k.Name("events") + `"}`, `dwell_system_events_total{type="profile-created"}`,
		`dwell_transactions_total{result="committed"}`, "dwell_cycle_duration_seconds_bucket", "dwell_open_visits",
		"dwell_pebble_l0_files", "dwell_kafka_", "go_goroutines", `dwell_savepoints_total{result="completed"}`, `dwell_savepoint_age_seconds{partition="0"}`} {
		if !strings.Contains(body, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK || !strings.Contains(errb.String(), "stopped cleanly") {
			t.Fatalf("after cancel: exit %d, stderr:\n%s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop within 30s of cancellation")
	}
}

// TestDemoLive runs the demo briefly: the banner says the broker is an embedded test broker,
// records flow through the live pipeline, the shop's URL is printed, and it stops cleanly
// (TestDemoShopInBrowser drives the shop).
func TestDemoLive(t *testing.T) {
	code, stdout, stderr := runCLI(t, "", "demo", "--duration", "4s", "--metrics-addr", "127.0.0.1:0", "--shop-addr", "127.0.0.1:0")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"EMBEDDED TEST BROKER", "Prometheus metrics: http://127.0.0.1:", "Open http://127.0.0.1:",
		"dwell tail dwell.system-events --brokers 127.0.0.1:", "profile-created: {", "stopped cleanly"} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "processed 0 ") {
		t.Fatalf("the demo processed nothing:\n%s", stdout)
	}
}

// TestProduceAndTail: dwell produce writes generated records to a broker, and dwell tail reads
// them back as JSON lines with the values inline.
func TestProduceAndTail(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := strings.Join(c.ListenAddrs(), ",")
	code, _, stderr := runCLI(t, "", "produce", "--brokers", brokers, "--topic", "events", "--count", "300", "--rps", "0")
	if code != exitOK || !strings.Contains(stderr, "produced 300 records") {
		t.Fatalf("produce: exit %d, %s", code, stderr)
	}
	code, stdout, stderr := runCLI(t, "", "tail", "events", "--brokers", brokers, "--from-start", "--count", "300")
	if code != exitOK {
		t.Fatalf("tail: exit %d, %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 300 {
		t.Fatalf("tail printed %d lines, want 300", len(lines))
	}
	var rec struct {
		Topic string
		Key   string
		Value map[string]any
	}
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("tail line is not JSON: %v: %s", err, lines[0])
	}
	if rec.Topic != "events" || rec.Key == "" || rec.Value["type"] == nil {
		t.Fatalf("unexpected record %s", lines[0])
	}
	if code, _, stderr := runCLI(t, "", "tail"); code != exitUsage || !strings.Contains(stderr, "name a topic") {
		t.Fatalf("tail without a topic: exit %d, %s", code, stderr)
	}
}

func TestSASL(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "admin", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := strings.Join(c.ListenAddrs(), ",")
	t.Setenv("DWELL_SASL_PASSWORD", "secret")
	code, _, stderr := runCLI(t, "", "produce", "--brokers", brokers, "--count", "20", "--rps", "0",
		"--sasl-mechanism", "scram-sha-256", "--sasl-user", "admin")
	if code != exitOK {
		t.Fatalf("produce with SCRAM: exit %d, %s", code, stderr)
	}
	code, stdout, stderr := runCLI(t, "", "tail", "events", "--brokers", brokers, "--from-start", "--count", "20",
		"--sasl-mechanism", "scram-sha-256", "--sasl-user", "admin")
	if code != exitOK || strings.Count(stdout, "\n") != 20 {
		t.Fatalf("tail with SCRAM: exit %d, %d lines, %s", code, strings.Count(stdout, "\n"), stderr)
	}
	t.Setenv("DWELL_SASL_PASSWORD", "wrong")
	// The client retries authentication until its context ends; the run must then fail.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errb bytes.Buffer
	code = run(ctx, []string{"produce", "--brokers", brokers, "--count", "1", "--rps", "0",
		"--sasl-mechanism", "scram-sha-256", "--sasl-user", "admin"}, strings.NewReader(""), &bytes.Buffer{}, &errb)
	if code != exitFailure {
		t.Fatalf("wrong password: exit %d, %s", code, errb.String())
	}
	for _, tc := range [][]string{
		{"produce", "--sasl-user", "x"},
		{"produce", "--sasl-mechanism", "gssapi"},
		{"tail", "events", "--tls-cert", "c.pem"},
	} {
		if code, _, stderr := runCLI(t, "", tc...); code != exitUsage {
			t.Errorf("%v: exit %d, %s; want a usage error", tc, code, stderr)
		}
	}
}
