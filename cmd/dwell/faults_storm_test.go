package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline/deadletter"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// The timer-storm row: about a million keys on six partitions, a key cap of 1,000. While the
// stream is consumed the cap holds; then the sentinels (48 hours of event time later) make every
// key's timers due at once, each key evicted. dwell must work through it in bounded cycles
// (pipeline: --max-cycle-work, --max-cycle-loads), stop within the transaction timeout on the
// first SIGTERM while partitions are behind, go on after a restart on the same data dir, keep
// its peak RSS under the README's formula, and emit exactly the offline run's system events.

const (
	stormScenario = "timer storm: cap 1000, SIGTERM"
	// 500k events make about 420k keys; DWELL_FAULT_ONLY=storm DWELL_FAULT_SCALE=2.4 runs the
	// issue's million (its harness needs about 17 GB for the offline comparison).
	stormEvents = 500_000
	stormCap    = 1000
)

// stormWeb makes most visits a new profile's single event or two.
func stormWeb(events int) bench.WebConfig {
	return bench.WebConfig{Profiles: events, Rate: float64(events) / 7200, VisitEvents: 1.2, NewProfileShare: 1,
		MalformedShare: 0.001, Jitter: time.Second}
}

// stormRSSBound is the README's memory formula for this run (Semantics, memory): keys per
// partition within max-cached-keys + 2 x max-poll-records + max-cycle-loads at about 4 KB each,
// twice that for the garbage collector's headroom (GOGC=100), plus Pebble's cache and memtables,
// the Kafka client's buffers and the runtime.
func stormRSSBound() int64 {
	const keyBytes, fixed = 4 << 10, 512 << 20
	keys := int64(faultParts * (stormCap + 2*5000 + 10_000))
	return 2*keys*keyBytes + fixed
}

func (f *faultRun) timerStorm() string {
	f.t.Helper()
	f.extraArgs = []string{"--max-cached-keys", strconv.Itoa(stormCap)}
	dir := f.newDataDir()
	p := f.start(dir)
	f.waitLog(p, "partition behind", 2*progressTimeout)
	peak := peakRSS(f, p)
	began := time.Now()
	f.stop(p)
	stopped := time.Since(began)
	if stopped > 20*time.Second {
		f.t.Errorf("the first SIGTERM took %s to end dwell while partitions were behind; the transaction timeout is 20s", stopped)
	}
	p = f.start(dir)
	f.waitProgress(1, p)
	f.waitCaughtUp(p, 2*progressTimeout)
	peak = max(peak, peakRSS(f, p))
	if bound := stormRSSBound(); peak > bound {
		f.t.Errorf("peak RSS %d MiB, over the README's bound of %d MiB for a cap of %d", peak>>20, bound>>20, stormCap)
	}
	return fmt.Sprintf("storm; SIGTERM while behind: stopped in %.1fs; peak RSS %d MiB (bound %d)",
		stopped.Seconds(), peak>>20, stormRSSBound()>>20)
}

// peakRSS is the process's peak resident set (VmHWM), in bytes.
func peakRSS(f *faultRun, p *dwellProc) int64 {
	f.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		f.t.Fatalf("reading the peak RSS: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(sc.Text(), "VmHWM: %d kB", &kb); err == nil {
			return kb << 10
		}
	}
	f.t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// waitLog waits until p's log holds text, while p runs.
func (f *faultRun) waitLog(p *dwellProc, text string, timeout time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f.alive(p)
		if b, _ := os.ReadFile(p.log); bytes.Contains(b, []byte(text)) {
			return
		}
		if time.Now().After(deadline) {
			f.keepLogs()
			f.t.Fatalf("no %q in the log within %s:\n%s", text, timeout, tailFile(p.log))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var behindLine = regexp.MustCompile(`msg="partition (behind|caught up)[^"]*".* partition=(\d+)`)

// waitCaughtUp waits until every partition p's log saw fall behind has caught up again.
func (f *faultRun) waitCaughtUp(p *dwellProc, timeout time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f.alive(p)
		b, _ := os.ReadFile(p.log)
		behind := map[string]bool{}
		for _, m := range behindLine.FindAllSubmatch(b, -1) {
			behind[string(m[2])] = string(m[1]) == "behind"
		}
		done := true
		for _, b := range behind {
			done = done && !b
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			f.keepLogs()
			f.t.Fatalf("partitions still behind after %s: %v\n%s", timeout, behind, tailFile(p.log))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The absurd-time row: one valid event 50 minutes ahead of the wall clock, its record
// timestamp too (the broker accepts up to an hour ahead), in the middle of a stream from the
// past. Without the guard it moves its partition's watermark months ahead: every visit ends,
// every profile is forgotten. The guard (operators/guard.go) dead-letters it as time-too-far,
// live (beyond the wall clock plus max_future_skew) and offline (beyond --max-time-jump), so
// the system events equal the offline run's; it must be on the dead-letter topic with that
// reason. (An event at year 9999 with an ordinary record timestamp is set to that timestamp
// live, time_adjusted, and dead-lettered offline: TestProcessAbsurdTime covers that.)
const absurdScenario = "one event 50m ahead of the wall clock (guard)"

const absurdID = "evt-absurd-ahead"

func injectFor(scenario string) func([]*kgo.Record) []*kgo.Record {
	if scenario == hostileScenario {
		return injectProbes
	}
	if scenario != absurdScenario {
		return nil
	}
	return func(recs []*kgo.Record) []*kgo.Record {
		mid := recs[len(recs)/2]
		ahead := time.Now().Add(50 * time.Minute).UTC()
		v := fmt.Sprintf(`{"id":%q,"type":"page-view","time":%q,"profile":{"id":%q},"session":{"id":"sess-absurd"}}`,
			absurdID, ahead.Format(time.RFC3339Nano), mid.Key)
		r := &kgo.Record{Key: mid.Key, Value: []byte(v), Timestamp: ahead}
		return slices.Insert(recs, len(recs)/2, r)
	}
}

func (f *faultRun) absurdTime() string {
	f.t.Helper()
	f.start(f.newDataDir())
	f.waitProgress(1, f.procs...)
	for _, r := range pipelinetest.ReadCommitted(f.t, f.brokers, f.topics.Dead) {
		if !bytes.Contains(r.Value, []byte(absurdID)) {
			continue
		}
		for _, h := range r.Headers {
			if h.Key == deadletter.Reason && string(h.Value) == string(operators.ReasonTimeTooFar) {
				return "dead-lettered as time-too-far"
			}
		}
		f.t.Errorf("the absurd event was dead-lettered with headers %v, want reason time-too-far", r.Headers)
		return "dead-lettered, wrong reason"
	}
	f.t.Errorf("the absurd event is not on the dead-letter topic")
	return "not dead-lettered"
}

// The hostile-rule row: the config topic carries a rule set whose template ranges over a
// number the event gives (no validation can see it); a probe event with n = 1e9 must go over
// the template's budget and be dead-lettered as a rule error, while the partition goes on (the
// system events equal the offline run's, which has no rules: rules do not change them); a good
// version published later must be applied.
const hostileScenario = "hostile rule via the config topic"

const hostileRules = `version: %s
on_error: dead-letter
rules:
  - name: probe
    on: probe
    actions:
      - set_trait: {name: x, value: %q}
`

// injectProbes puts probe events among the records: n = 3 a quarter in, n = 1e9 halfway.
func injectProbes(recs []*kgo.Record) []*kgo.Record {
	for _, at := range []struct {
		share float64
		id    string
		n     int
	}{{0.5, "evt-probe-huge", 1_000_000_000}, {0.25, "evt-probe-ok", 3}} {
		i := int(float64(len(recs)) * at.share)
		v := fmt.Sprintf(`{"id":%q,"type":"probe","time":%d,"profile":{"id":%q},"properties":{"n":%d}}`,
			at.id, recs[i].Timestamp.UnixMilli(), recs[i].Key, at.n)
		recs = slices.Insert(recs, i, &kgo.Record{Key: recs[i].Key, Value: []byte(v), Timestamp: recs[i].Timestamp})
	}
	return recs
}

func (f *faultRun) hostileRule() string {
	f.t.Helper()
	topic := f.input + "-config"
	apply := func(version, value string) {
		file := filepath.Join(f.dir, version+".yaml")
		if err := os.WriteFile(file, fmt.Appendf(nil, hostileRules, version, value), 0o644); err != nil {
			f.t.Fatal(err)
		}
		var out, errs bytes.Buffer
		if code := run(context.Background(), []string{"config", "apply", file, "--brokers", strings.Join(f.brokers, ","),
			"--topic", topic, "--create-topic"}, strings.NewReader(""), &out, &errs); code != exitOK {
			f.t.Fatalf("dwell config apply %s: exit %d\n%s", version, code, errs.String())
		}
	}
	apply("hostile-1", "{{range .event.properties.n}}x{{end}}")
	f.extraArgs = []string{"--config-topic", topic, "--event-log", "none"}
	p := f.start(f.newDataDir())
	f.waitProgress(0.6, p)
	apply("good-2", "{{.event.properties.n}}")
	f.waitLog(p, "version=good-2", progressTimeout)
	f.waitProgress(1, p)
	for _, r := range pipelinetest.ReadCommitted(f.t, f.brokers, f.topics.Dead) {
		if !bytes.Contains(r.Value, []byte("evt-probe-")) {
			continue
		}
		var reason, detail string
		for _, h := range r.Headers {
			switch h.Key {
			case deadletter.Reason:
				reason = string(h.Value)
			case deadletter.Detail:
				detail = string(h.Value)
			}
		}
		if !bytes.Contains(r.Value, []byte("evt-probe-huge")) || reason != string(operators.ReasonRuleError) || !strings.Contains(detail, "budget") {
			f.t.Errorf("dead letter %s: reason %q, detail %q; want only evt-probe-huge, rule-error over its budget", r.Value, reason, detail)
			continue
		}
		return "n=1e9: rule-error (" + detail + "); good-2 applied"
	}
	f.t.Errorf("evt-probe-huge is not on the dead-letter topic")
	return "not dead-lettered"
}

var metricsLine = regexp.MustCompile(`msg="serving metrics" addr=(\S+)`)

// metricsAddr is where p serves /metrics and /readyz (--metrics-addr 127.0.0.1:0).
func (f *faultRun) metricsAddr(p *dwellProc) string {
	f.t.Helper()
	f.waitLog(p, "serving metrics", time.Minute)
	b, _ := os.ReadFile(p.log)
	m := metricsLine.FindSubmatch(b)
	if m == nil {
		f.t.Fatalf("no metrics address in the log:\n%s", tailFile(p.log))
	}
	return string(m[1])
}

// waitHealth waits until /readyz answers 200 with no partition stalled (ready), or 503 (not
// ready: a stalled partition named, with dwell_partition_stalled 1, or none assigned), and
// says which.
func (f *faultRun) waitHealth(addr string, ready bool, timeout time.Duration) string {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		code, body := httpGet("http://" + addr + "/readyz")
		_, metrics := httpGet("http://" + addr + "/metrics")
		stalled := regexp.MustCompile(`(?m)^dwell_partition_stalled\{partition="\d+"\} 1$`).MatchString(metrics)
		switch {
		case ready && code == 200 && !stalled:
			return "ready"
		case !ready && code == 503 && strings.Contains(body, "made no progress") && stalled:
			return "partitions stalled"
		case !ready && code == 503 && strings.Contains(body, "none is assigned"):
			return "no partition assigned"
		}
		last = fmt.Sprintf("/readyz %d %q, a partition stalled: %v", code, body, stalled)
		time.Sleep(200 * time.Millisecond)
	}
	f.keepLogs()
	f.t.Fatalf("health did not turn ready=%v within %s; last: %s", ready, timeout, last)
	return ""
}

func httpGet(url string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}
