package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// The collector under SIGKILL (issue: "every request that got 200 is in Kafka exactly once,
// the rest got errors or no answer"). dwell collect runs as a child process (this test binary
// re-executed as dwell); clients post requests whose events carry ids unique to the request;
// the collector is SIGKILLed mid-load, restarted on the same port, loaded again and stopped;
// then the input topic is read in full. Every request answered 200 must be there exactly once,
// none twice; one answered otherwise, or not at all, may be there once or not at all.
//
// TestCollectSigkill runs it on kfake under make test (and on the real broker in
// DWELL_TEST_BROKERS); the fault suite has it as a row on Apache Kafka.

const collectKillScenario = "collect sigkill under load"

// collectKillCounts is what a run saw: requests by answer, and which of them landed.
type collectKillCounts struct {
	requests, acked, errored, unanswered int
	ackedLanded, erroredLanded           int
	unansweredLanded, notSent            int // notSent: refused connections (the collector was down)
	records, missing, dup, foreign       int
	elapsed                              time.Duration
}

func (c collectKillCounts) String() string {
	return fmt.Sprintf("1 SIGKILL; %d requests: %d acked (%d landed), %d errored (%d landed), %d unanswered (%d landed), %d refused while down",
		c.requests, c.acked, c.ackedLanded, c.errored, c.erroredLanded, c.unanswered, c.unansweredLanded, c.notSent)
}

func (c collectKillCounts) problems() []string {
	var p []string
	if c.missing > 0 {
		p = append(p, fmt.Sprintf("%d requests answered 200 are not in the topic", c.missing))
	}
	if c.dup > 0 {
		p = append(p, fmt.Sprintf("%d requests are in the topic more than once", c.dup))
	}
	if c.foreign > 0 {
		p = append(p, fmt.Sprintf("%d records are of no request sent, or not whole", c.foreign))
	}
	if c.acked == 0 || c.unanswered+c.errored == 0 {
		p = append(p, fmt.Sprintf("the kill hit nothing: %d acked, %d errored, %d unanswered", c.acked, c.errored, c.unanswered))
	}
	return p
}

// collectProc is a dwell collect child.
type collectProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startCollect(t *testing.T, brokers []string, topic, sources, listen, log string) *collectProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "collect", "--brokers", strings.Join(brokers, ","), "--topic", topic, "--sources", sources,
		"--listen", listen, "--metrics-addr", "", "--timeout", "5s", "--drain-timeout", "10s")
	cmd.Env = append(os.Environ(), asDwellEnv+"=1")
	lf, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives the test
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &collectProc{cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = cmd.Wait()
		lf.Close()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// waitReady polls /readyz until the collector answers 200.
func (p *collectProc) waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("dwell collect exited (%v):\n%s", p.err, tailFile(p.log))
		default:
		}
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("dwell collect not ready within 30s:\n%s", tailFile(p.log))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runCollectKill is the scenario on topic (which exists) at brokers.
func runCollectKill(t *testing.T, brokers []string, topic string, load time.Duration) collectKillCounts {
	t.Helper()
	started := time.Now()
	dir := t.TempDir()
	sources := filepath.Join(dir, "sources.yaml")
	if err := os.WriteFile(sources, []byte("sources:\n  - id: web\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port, for both lives of the collector
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	url := "http://" + listen
	log := filepath.Join(dir, "collect.log")
	p := startCollect(t, brokers, topic, sources, listen, log)
	p.waitReady(t, url)

	// Clients: each request's events carry ids r<client>-<n>-<i>; the answer is noted per request.
	const clients = 8
	type outcome int
	const (
		acked outcome = iota + 1
		errored
		unanswered
		notSent
	)
	var (
		mu       sync.Mutex
		outcomes = map[string]outcome{}
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer hc.CloseIdleConnections()
			for n := 0; !stop.Load(); n++ {
				id := fmt.Sprintf("r%d-%d", c, n)
				var b bytes.Buffer
				fmt.Fprintf(&b, `{"source":{"id":"web"},"session":{"id":"s-%d-%d"}`, c, n%50)
				if n%4 != 0 {
					fmt.Fprintf(&b, `,"profile":{"id":"p-%d-%d"}`, c, n%50)
				}
				b.WriteString(`,"events":[`)
				for i := range 5 {
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, `{"id":"%s-%d","type":"page-view","properties":{"n":%d}}`, id, i, n)
				}
				b.WriteString(`]}`)
				var o outcome
				resp, err := hc.Post(url+"/track", "application/json", &b)
				switch {
				case err != nil && isRefused(err):
					o = notSent
					time.Sleep(5 * time.Millisecond)
				case err != nil:
					o = unanswered
				default:
					resp.Body.Close()
					o = errored
					if resp.StatusCode == http.StatusOK {
						o = acked
					}
				}
				mu.Lock()
				outcomes[id] = o
				mu.Unlock()
			}
		}()
	}
	time.Sleep(load)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	time.Sleep(200 * time.Millisecond)
	p2 := startCollect(t, brokers, topic, sources, listen, log)
	p2.waitReady(t, url)
	time.Sleep(load / 2)
	stop.Store(true)
	wg.Wait()
	_ = p2.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p2.done:
		if p2.err != nil {
			t.Errorf("dwell collect exited with %v after SIGTERM:\n%s", p2.err, tailFile(log))
		}
	case <-time.After(30 * time.Second):
		t.Errorf("dwell collect did not stop within 30s of SIGTERM:\n%s", tailFile(log))
	}

	// Read the topic in full: its end offsets now, every record up to them (the collector is
	// not transactional: its last stable offsets are its end offsets).
	landed := map[string]int{}
	var cnt collectKillCounts
	eventID := regexp.MustCompile(`"id":"(r\d+-\d+)-(\d)"`)
	for _, r := range pipelinetest.ReadCommitted(t, brokers, topic) {
		cnt.records++
		var v struct {
			Events []struct{ ID string }
		}
		if err := json.Unmarshal(r.Value, &v); err != nil || len(v.Events) != 5 {
			cnt.foreign++
			continue
		}
		m := eventID.FindStringSubmatch(`"id":"` + v.Events[0].ID + `"`)
		if m == nil || v.Events[4].ID != m[1]+"-4" {
			cnt.foreign++
			continue
		}
		landed[m[1]]++
	}
	for id, o := range outcomes {
		cnt.requests++
		n := landed[id]
		if n > 1 {
			cnt.dup++
		}
		switch o {
		case acked:
			cnt.acked++
			if n == 0 {
				cnt.missing++
			} else {
				cnt.ackedLanded++
			}
		case errored:
			cnt.errored++
			cnt.erroredLanded += min(n, 1)
		case unanswered:
			cnt.unanswered++
			cnt.unansweredLanded += min(n, 1)
		case notSent:
			cnt.notSent++
			if n > 0 {
				cnt.foreign++ // a refused connection cannot have sent anything
			}
		}
	}
	for id := range landed {
		if _, ok := outcomes[id]; !ok {
			cnt.foreign++
		}
	}
	cnt.elapsed = time.Since(started)
	return cnt
}

// isRefused: the connection was refused, so the request was never sent.
func isRefused(err error) bool {
	return strings.Contains(err.Error(), "connection refused")
}

// createTopic creates topic with partitions (replication factor 1).
func createTopic(t *testing.T, brokers []string, partitions int, topic string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, int32(partitions), 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("creating %s: %v", topic, err)
	}
}

// TestCollectSigkill is the scenario on kfake (make test) or the real broker in
// DWELL_TEST_BROKERS.
func TestCollectSigkill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts dwell collect twice")
	}
	k := pipelinetest.New(t, 4, []string{"events"})
	c := runCollectKill(t, k.Brokers, k.Name("events"), 1500*time.Millisecond)
	t.Logf("%s; %d records read in %s", c, c.records, c.elapsed.Round(time.Millisecond))
	for _, p := range c.problems() {
		t.Error(p)
	}
}
