package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// opsFreeAddr returns a localhost address nothing listens on (for --metrics-addr).
func opsFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func opsProduce(t *testing.T, brokers []string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestDeliverCommand runs dwell deliver with an endpoints file (a default URL and a channel
// whose receiver rejects), scrapes its metrics endpoint, and stops it as SIGTERM would.
func TestDeliverCommand(t *testing.T) {
	env := pipelinetest.New(t, 2, []string{"dwell.queue.alerts", "dwell.dlq"})
	queue, dlq := env.Name("dwell.queue.alerts"), env.Name("dwell.dlq")
	var mu sync.Mutex
	got := map[string]string{} // idempotency key -> authorization
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reject" {
			http.Error(w, "unknown recipient", http.StatusUnprocessableEntity)
			return
		}
		mu.Lock()
		got[r.Header.Get("Idempotency-Key")] = r.Header.Get("Authorization")
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	dir := t.TempDir()
	endpoints := filepath.Join(dir, "endpoints.yaml")
	t.Setenv("DWELL_TEST_HOOK_TOKEN", "tok")
	if err := os.WriteFile(endpoints, fmt.Appendf(nil, `
default: %[1]s/hook
channels:
  sms:
    url: %[1]s/reject
  email:
    url: %[1]s/mail
    headers: {Authorization: "Bearer ${DWELL_TEST_HOOK_TOKEN}"}
`, srv.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 6 {
		recs = append(recs, &kgo.Record{Topic: queue, Key: []byte("p1"),
			Value: fmt.Appendf(nil, `{"id":"n%d","channel":"email","to":["a@example.com"],"subject":"hi","body":"x"}`, i)})
	}
	recs = append(recs,
		&kgo.Record{Topic: queue, Key: []byte("p2"), Value: []byte(`{"id":"s1","channel":"sms","to":["+1"]}`)},
		&kgo.Record{Topic: queue, Key: []byte("p3"), Value: []byte(`{"id":"e1","type":"vip-visit"}`)})
	opsProduce(t, env.Brokers, recs...)

	addr := opsFreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	codec := make(chan int, 1)
	go func() {
		codec <- run(ctx, []string{"deliver", "--queue", "alerts", "--topic", queue, "--dlq-topic", dlq,
			"--group", env.Name("dwell-deliver-alerts"), "--brokers", strings.Join(env.Brokers, ","),
			"--endpoints", endpoints, "--metrics-addr", addr, "--concurrency", "3"}, nil, io.Discard, &stderr)
	}()
	scrape := func() string {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	lagZero := regexp.MustCompile(`dwell_deliver_consumer_lag_records\{partition="\d",queue="alerts"\} 0\n`)
	deadline := time.Now().Add(15 * time.Second)
	var m string
	for {
		m = scrape()
		if strings.Contains(m, `dwell_deliver_delivered_total{queue="alerts"} 7`) &&
			strings.Contains(m, `dwell_deliver_failed_total{queue="alerts",reason="webhook-rejected"} 1`) &&
			lagZero.MatchString(m) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries not seen in the metrics:\n%s\nstderr:\n%s", opsGrep(m, "dwell_deliver_"), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{`dwell_deliver_latency_seconds_count{queue="alerts"} 7`,
		`dwell_deliver_in_flight{queue="alerts"} 0`, "go_goroutines"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	cancel()
	select {
	case code := <-codec:
		if code != exitOK {
			t.Fatalf("exit %d after the stop signal, want 0:\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("dwell deliver did not stop")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 7 || got["n0"] != "Bearer tok" || got["e1"] != "" {
		t.Errorf("received %v", got)
	}
	if !strings.Contains(stderr.String(), "stopped cleanly") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

func opsGrep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestDeliverUsageErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("default: ftp://nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"deliver", "--url", "http://x"}, "name the queue"},
		{[]string{"deliver", "--queue", "q"}, "no endpoint"},
		{[]string{"deliver", "--queue", "q", "--url", "x"}, "not an http(s) URL"},
		{[]string{"deliver", "--queue", "q", "--endpoints", bad}, "not an http(s) URL"},
		{[]string{"deliver", "--queue", "q", "--endpoints", filepath.Join(dir, "missing.yaml")}, "no such file"},
		{[]string{"deliver", "--queue", "q", "--url", "http://x", "--dlq-topic", "dwell.queue.q"}, "both"},
	} {
		code, _, stderr := runCLI(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

func TestDeliverMissingTopic(t *testing.T) {
	env := pipelinetest.New(t, 1, []string{"dwell.dlq"})
	code, _, stderr := runCLI(t, "", "deliver", "--queue", "nosuch", "--url", "http://127.0.0.1:1/", "--metrics-addr", "",
		"--brokers", strings.Join(env.Brokers, ","), "--dlq-topic", env.Name("dwell.dlq"), "--topic", env.Name("dwell.queue.nosuch"))
	if code != exitFailure || !strings.Contains(stderr, "dwell.queue.nosuch") || !strings.Contains(stderr, "do not exist") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
