package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// TestCollectCommandErrors: each mistake a new user makes with dwell collect ends at once with
// an exit code and a message that says what to do.
func TestCollectCommandErrors(t *testing.T) {
	k := pipelinetest.New(t, 1, []string{"events"})
	dir := t.TempDir()
	good := filepath.Join(dir, "sources.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("sources:\n  - id: web\n    origins: [\"*\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("sources:\n  - id: web\n    origins: [\"shop.example.com\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	brokers := strings.Join(k.Brokers, ",")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no sources", []string{"collect", "--brokers", brokers}, exitUsage, "pass --sources FILE"},
		{"both sources", []string{"collect", "--sources", good, "--config-topic", "dwell.config"}, exitUsage, "not both"},
		{"missing file", []string{"collect", "--sources", filepath.Join(dir, "nope.yaml"), "--brokers", brokers}, exitFailure, "no such file"},
		{"bad file", []string{"collect", "--sources", bad, "--brokers", brokers}, exitFailure, bad + `: sources: sources[0] (id "web"): origin "shop.example.com": want scheme://host`},
		{"dead broker", []string{"collect", "--sources", good, "--brokers", closedPort(t)}, exitFailure, "cannot reach Kafka at"},
		{"missing topic", []string{"collect", "--sources", good, "--brokers", brokers, "--topic", k.Name("nosuch")}, exitFailure, "not found; create it with dwell topics create"},
		{"port in use", []string{"collect", "--sources", good, "--brokers", brokers, "--topic", k.Name("events"), "--listen", busy.Addr().String(), "--metrics-addr", ""}, exitFailure, "pass another --listen"},
		{"bad limit", []string{"collect", "--sources", good, "--max-events", "0"}, exitUsage, "--max-events must be positive"},
		{"bad timeout", []string{"collect", "--sources", good, "--timeout", "0s"}, exitUsage, "--timeout must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, "", tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want %d with %q:\n%s", code, tc.code, tc.want, stderr)
			}
		})
	}
}

// TestCollectConfigTopic: sources published with dwell config apply --sources reach a running
// dwell collect --config-topic, which applies a new version at once; the collector drains and
// exits 0 when stopped.
func TestCollectConfigTopic(t *testing.T) {
	k := pipelinetest.New(t, 1, []string{"events"})
	brokers := strings.Join(k.Brokers, ",")
	dir := t.TempDir()
	src := filepath.Join(dir, "sources.yaml")
	write := func(enabled bool) {
		t.Helper()
		y := "sources:\n  - id: web\n    origins: [\"*\"]\n    enabled: " + map[bool]string{true: "true", false: "false"}[enabled] + "\n"
		if err := os.WriteFile(src, []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(true)
	topic := k.Name("dwell.config")
	if code, out, stderr := runCLI(t, "", "config", "validate", "--sources", src); code != exitOK || !strings.Contains(out, "1 event sources: web") {
		t.Fatalf("config validate --sources: exit %d: %s%s", code, out, stderr)
	}
	if code, out, stderr := runCLI(t, "", "config", "apply", "--sources", src, "--brokers", brokers, "--topic", topic, "--create-topic"); code != exitOK ||
		!strings.Contains(out, "published 1 event sources to "+topic) {
		t.Fatalf("config apply --sources: exit %d: %s%s", code, out, stderr)
	}

	ctx, cancel := context.WithCancel(context.Background())
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"collect", "--brokers", brokers, "--topic", k.Name("events"), "--config-topic", topic,
			"--listen", "127.0.0.1:0", "--metrics-addr", ""}, strings.NewReader(""), io.Discard, stderr)
	}()
	defer func() {
		cancel()
		if code := <-done; code != exitOK || !strings.Contains(stderr.String(), "stopped cleanly") {
			t.Errorf("dwell collect exited %d:\n%s", code, stderr.String())
		}
	}()
	re := regexp.MustCompile(`POST (http://\S+/track)`)
	var url string
	waitFor(t, 20*time.Second, func() bool {
		m := re.FindStringSubmatch(stderr.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	}, func() string { return "dwell collect did not start:\n" + stderr.String() })
	post := func() int {
		resp, err := http.Post(url, "application/json", strings.NewReader(`{"source":"web","events":[{"type":"page-view"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, 20*time.Second, func() bool { return post() == http.StatusOK }, func() string { return "never accepted:\n" + stderr.String() })

	write(false)
	if code, _, errs := runCLI(t, "", "config", "apply", "--sources", src, "--brokers", brokers, "--topic", topic); code != exitOK {
		t.Fatalf("config apply: exit %d: %s", code, errs)
	}
	waitFor(t, 20*time.Second, func() bool { return post() == http.StatusForbidden }, func() string { return "the disabled source is still accepted:\n" + stderr.String() })
}
