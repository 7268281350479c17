package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dwellhq/dwell/pipeline/collect"
)

// TestDashboardQueries runs dwell demo (the live pipeline on an embedded broker, with
// generated web traffic: late events, dead letters, visits that end), lets a real Prometheus
// (Debian package prometheus) scrape it every second, and evaluates every query of
// deploy/grafana/dwell.json through Prometheus' HTTP API: each must return data, so a panel
// never shows "No data" because a metric was renamed. The Collect row's series come from a
// second target, job dwell-collect: a collector on an embedded broker (startCollector) that has
// answered a few requests, good and bad. About 15 s.
func TestDashboardQueries(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("SKIPPED: prometheus is not installed (Debian: apt-get install prometheus); the dashboard's queries were not checked")
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("../../deploy/grafana/dwell.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("deploy/grafana/dwell.json: %v", err)
	}

	// dwell demo, its metrics on a free port it prints.
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	demoDone := make(chan int, 1)
	go func() {
		demoDone <- run(ctx, []string{"demo", "--metrics-addr", "127.0.0.1:0", "--shop-addr", "", "--rate", "3000"}, strings.NewReader(""), pw, io.Discard)
		pw.Close()
	}()
	addrc := make(chan string, 1)
	var drained sync.WaitGroup
	drained.Go(func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "Prometheus metrics: http://"); ok {
				addrc <- strings.TrimSuffix(strings.Fields(rest)[0], "/metrics")
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	})
	defer func() {
		cancel()
		if code := <-demoDone; code != 0 {
			t.Errorf("dwell demo exited %d", code)
		}
		drained.Wait()
	}()
	var metricsAddr string
	select {
	case metricsAddr = <-addrc:
	case <-time.After(30 * time.Second):
		t.Fatal("dwell demo did not say where its metrics are")
	}

	collectAddr := startCollector(t)

	// Prometheus scraping them.
	dir := t.TempDir()
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n"+
		"  - job_name: dwell\n    static_configs: [{targets: [%q]}]\n"+
		"  - job_name: dwell-collect\n    static_configs: [{targets: [%q]}]\n", metricsAddr, collectAddr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := freeAddr(t)
	var promLog strings.Builder
	prom := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr)
	prom.Stdout, prom.Stderr = &promLog, &promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = prom.Process.Kill()
		_ = prom.Wait()
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	query := func(expr string) (int, error) {
		resp, err := client.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(expr))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return 0, err
		}
		if r.Status != "success" {
			return 0, fmt.Errorf("%s", r.Error)
		}
		return len(r.Data.Result), nil
	}
	// Ready once a few scrapes of a demo that processes and emits system events, and of the
	// collector, are stored.
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := query(`count_over_time(dwell_records_in_total{topic="events"}[1m]) >= 8 and on() sum(dwell_records_in_total) > 0 and on() sum(dwell_system_events_total{type="visit-ended"}) > 0` +
			` and on() count_over_time(dwell_collect_ready{job="dwell-collect"}[1m]) >= 8`)
		if err == nil && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus has no scrapes of the demo after 60s (last: %d results, %v)\n%s", n, err, promLog.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	subst := strings.NewReplacer(`$__rate_interval`, `5s`, `"$job"`, `".+"`, `"$instance"`, `".+"`)
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			expr := subst.Replace(tg.Expr)
			queries++
			n, err := query(expr)
			if err != nil || n == 0 {
				t.Errorf("panel %q: %s: %d series, %v", p.Title, tg.Expr, n, err)
			}
		}
	}
	if queries < 20 {
		t.Errorf("%d queries in the dashboard", queries)
	}
}

// startCollector runs a collector (dwell collect's pipeline, as runCollect wires it: its
// metrics on newRegistry, served by serveHTTP) on an embedded broker, sends it requests that
// are accepted, refused (unknown source, rate limit, malformed) and returns its metrics
// address. Everything stops at the test's cleanup.
func startCollector(t *testing.T) string {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	ss, err := collect.ParseSources([]byte("sources:\n  - {id: web, origins: [\"*\"]}\n  - {id: slow, rate: 0.001, burst: 2}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := newRegistry()
	c, err := collect.New(collect.Config{Brokers: cluster.ListenAddrs(), Topic: "events", Sources: ss,
		PingInterval: 100 * time.Millisecond, Metrics: collect.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = c.Close(context.Background())
	})
	addr, stop, err := serveHTTP("127.0.0.1:0", reg, c.Ready, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	for deadline := time.Now().Add(10 * time.Second); c.Ready() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the collector is not ready: %v", c.Ready())
		}
	}
	h := c.Handler()
	for _, r := range []struct {
		body string
		want int
	}{
		{`{"source":{"id":"web"},"session":{"id":"s1"},"events":[{"type":"page-view"}]}`, http.StatusOK},
		{`{"source":{"id":"nope"},"session":{"id":"s1"},"events":[{"type":"page-view"}]}`, http.StatusForbidden},
		{`{"source":{"id":"slow"},"events":[{"type":"a"},{"type":"b"}]}`, http.StatusOK},              // the burst
		{`{"source":{"id":"slow"},"events":[{"type":"a"},{"type":"b"}]}`, http.StatusTooManyRequests}, // then the rate
		{`{"source":{"id":"web"},"events":[`, http.StatusBadRequest},
	} {
		body, want := r.body, r.want
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/track", strings.NewReader(body)))
		if w.Code != want {
			t.Fatalf("POST /track %s: %d %s, want %d", body, w.Code, w.Body, want)
		}
	}
	return addr
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
