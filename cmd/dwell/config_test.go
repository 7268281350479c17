package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
	"github.com/dwellhq/dwell/pipeline/rulesrc"
)

// configRules is a valid rules file of version v that writes to no topic.
func configRules(v string) string {
	return fmt.Sprintf("version: %s\nrules:\n  - name: welcome\n    on: signup\n    actions:\n      - tag: new\n", v)
}

// configBadRules fails to load at line 5, column 17.
const configBadRules = `version: bad
rules:
  - name: typo
    on: signup
    when: event.tpye == "x"
    actions:
      - tag: x
`

// replaceFile writes path atomically (a temporary file renamed), as editors do.
func replaceFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	good, bad, reg := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml"), filepath.Join(dir, "registry.yaml")
	replaceFile(t, good, configRules("v1")+"  - name: order\n    on: purchase\n    actions:\n      - route: orders\n")
	replaceFile(t, bad, configBadRules)
	replaceFile(t, reg, "version: r1\ntypes:\n  signup: {queue: signups}\n")

	code, out, errs := runCLI(t, "", "config", "validate", good, "--registry", reg)
	if code != exitOK || !strings.Contains(out, "ok: version v1/r1, 2 rules, registry: 1 types, writes to dwell.queue.orders, dwell.queue.signups") {
		t.Fatalf("validate: exit %d: %s %s", code, out, errs)
	}
	code, out, errs = runCLI(t, "", "config", "validate", "--registry", reg)
	if code != exitOK || !strings.Contains(out, reg+": ok: version r1, 0 rules") {
		t.Fatalf("validate --registry alone: exit %d: %s %s", code, out, errs)
	}
	code, _, errs = runCLI(t, "", "config", "validate", bad)
	if code != exitFailure || !strings.Contains(errs, bad+`: rules: line 5, column 17: rule "typo": when: event has no field tpye`) {
		t.Fatalf("validate of a bad file: exit %d: %s", code, errs)
	}
	code, _, errs = runCLI(t, "", "config", "validate", good, "--registry", bad)
	if code != exitFailure || !strings.Contains(errs, bad+`: registry: line 2, column 1: unknown key "rules"`) {
		t.Fatalf("validate with a bad registry: exit %d: %s; want the registry file named", code, errs)
	}
	for _, tc := range [][]string{{"config"}, {"config", "show"}, {"config", "validate"}, {"config", "apply", good, "--bogus"}} {
		if code, _, errs := runCLI(t, "", tc...); code != exitUsage {
			t.Errorf("%v: exit %d, %s; want a usage error", tc, code, errs)
		}
	}
}

// TestConfigValidateBudgets: a rule set whose templates always go over their budget (issue
// 12) is refused by validate and apply, naming the rule, the field and what to do.
func TestConfigValidateBudgets(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ template, want string }{
		{"{{range 1000000000}}{{end}}", `rule "spin": action 1 (set_trait): value: value:1:8: range over 1000000000 always takes at least 1000000000 steps, over the template budget of 100000 (limits: max_template_steps): range over a list, or fewer times`},
		{"{{range 10000}}{{range 10000}}{{end}}{{end}}", "range over 10000 always takes at least 100020000 steps"},
		{`{{define \"x\"}}{{template \"x\" .}}{{end}}{{template \"x\" .}}`, `template "x" calls itself (x -> x): templates must not recurse`},
		{`{{printf \"%999999999d\" 1}}`, "printf width or precision 999999999 is over the template budget of 65536 bytes"},
	} {
		file := filepath.Join(dir, "spin.yaml")
		replaceFile(t, file, "version: spin\nrules:\n  - name: spin\n    on: signup\n    actions:\n      - set_trait: {name: x, value: \""+c.template+"\"}\n")
		code, out, errs := runCLI(t, "", "config", "validate", file)
		if code != exitFailure || !strings.Contains(errs, file+": rules: line 6, column 37: ") || !strings.Contains(errs, c.want) || out != "" {
			t.Errorf("validate %s: exit %d: %s %s; want exit %d and %q", c.template, code, out, errs, exitFailure, c.want)
		}
	}
}

func TestConfigApply(t *testing.T) {
	k := pipelinetest.New(t, 1, []string{"dwell.queue.orders"})
	brokers := strings.Join(k.Brokers, ",")
	topic := k.Name("dwell.config")
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	t.Cleanup(func() {
		if k.Real {
			_, _ = kadm.NewClient(cl).DeleteTopics(context.Background(), topic)
		}
	})
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	replaceFile(t, good, configRules("v1")+"  - name: order\n    on: purchase\n    actions:\n      - route: slow\n")
	replaceFile(t, bad, configBadRules)
	apply := func(args ...string) (int, string, string) {
		return runCLI(t, "", append([]string{"config", "apply"}, append(args, "--brokers", brokers, "--topic", topic, "--queue-topic-prefix", k.Name("dwell.queue."))...)...)
	}

	code, _, errs := apply(good)
	if code != exitFailure || !strings.Contains(errs, "--create-topic") || !strings.Contains(errs, topic) {
		t.Fatalf("apply to a missing topic: exit %d: %s", code, errs)
	}
	code, out, errs := apply(good, "--create-topic", "--by", "alice")
	if code != exitOK || !strings.Contains(out, "published version v1 to "+topic) {
		t.Fatalf("apply: exit %d: %s %s", code, out, errs)
	}
	if !strings.Contains(errs, "warning") || !strings.Contains(errs, k.Name("dwell.queue.slow")) {
		t.Fatalf("apply of rules writing to a missing topic: no warning naming it: %s", errs)
	}
	code, _, errs = apply(bad)
	if code != exitFailure || !strings.Contains(errs, bad+": rules: line 5, column 17") {
		t.Fatalf("apply of a bad file: exit %d: %s", code, errs)
	}
	recs := pipelinetest.ReadCommitted(t, k.Brokers, topic)
	if len(recs) != 1 || string(recs[0].Key) != rulesrc.RecordKey || !bytes.Contains(recs[0].Value, []byte(`"by":"alice"`)) {
		t.Fatalf("config topic holds %d records, want the good one only", len(recs))
	}
}

// dwellRun is dwell run running in-process until the test ends.
type dwellRun struct {
	t       *testing.T
	stderr  *syncBuffer
	done    chan int
	cancel  context.CancelFunc
	metrics string // host:port
}

func startRun(t *testing.T, args ...string) *dwellRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &dwellRun{t: t, stderr: &syncBuffer{}, done: make(chan int, 1), cancel: cancel}
	go func() {
		r.done <- run(ctx, append([]string{"run", "--metrics-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, args...), strings.NewReader(""), io.Discard, r.stderr)
	}()
	t.Cleanup(func() {
		if code := r.stop(); code != exitOK {
			t.Errorf("dwell run exited %d:\n%s", code, r.stderr.String())
		}
	})
	re := regexp.MustCompile(`serving metrics" addr=(\S+)`)
	r.waitFor("the metrics address", func() bool {
		if m := re.FindStringSubmatch(r.stderr.String()); m != nil {
			r.metrics = m[1]
			return true
		}
		return false
	})
	// Stopping while partitions restore is an interrupted run (exit 1): wait until they are.
	r.waitFor("/readyz", func() bool {
		resp, err := http.Get("http://" + r.metrics + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return r
}

// stop cancels the run and returns its exit code (once; later calls return exitOK).
func (r *dwellRun) stop() int {
	r.cancel()
	select {
	case code, ok := <-r.done:
		if !ok {
			return exitOK
		}
		close(r.done)
		return code
	case <-time.After(30 * time.Second):
		r.t.Fatal("dwell run did not stop within 30s of cancellation")
		return 0
	}
}

func (r *dwellRun) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		select {
		case code := <-r.done:
			close(r.done)
			r.t.Fatalf("dwell run exited %d while waiting for %s:\n%s", code, what, r.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s; stderr:\n%s", what, r.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *dwellRun) scrape() string {
	r.t.Helper()
	resp, err := http.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

// waitMetric waits until /metrics has the line series (name{labels} value).
func (r *dwellRun) waitMetric(series string) {
	r.t.Helper()
	r.waitFor(series, func() bool { return strings.Contains(r.scrape(), "\n"+series+"\n") })
}

// runArgs are dwell run's flags for a test broker with events and the outputs created.
func runArgs(t *testing.T, k *pipelinetest.Env) []string {
	d := pipeline.DefaultTopics()
	return []string{"--brokers", strings.Join(k.Brokers, ","), "--data-dir", filepath.Join(t.TempDir(), "data"), "--create-topics",
		"--inputs", k.Name("events"), "--group", k.Name("dwell"), "--system-topic", k.Name(d.System),
		"--events-topic", k.Name(d.Events), "--late-topic", k.Name(d.Late), "--dlq-topic", k.Name(d.Dead),
		"--changelog-topic", k.Name(d.Changelog), "--event-log-topic", k.Name(d.EventLog), "--queue-topic-prefix", k.Name(d.QueuePrefix)}
}

// TestRunReload is the reload test of issue 5: dwell run with --rules keeps running when the
// file turns bad (the rejection is logged with its position and counted, the version stays),
// and applies the next good version without a restart; SIGHUP reloads too.
func TestRunReload(t *testing.T) {
	k := pipelinetest.New(t, 2, []string{"events"})
	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "rules.yaml")

	// A bad file at start is an error, and says where.
	replaceFile(t, rulesPath, configBadRules)
	code, _, errs := runCLI(t, "", append([]string{"run", "--rules", rulesPath, "--metrics-addr", "", "--admin-addr", ""}, runArgs(t, k)...)...)
	if code != exitFailure || !strings.Contains(errs, rulesPath+": rules: line 5, column 17") {
		t.Fatalf("start with a bad rules file: exit %d: %s", code, errs)
	}
	code, _, errs = runCLI(t, "", "run", "--rules", rulesPath, "--config-topic", "dwell.config")
	if code != exitUsage {
		t.Fatalf("--rules with --config-topic: exit %d: %s; want a usage error", code, errs)
	}

	replaceFile(t, rulesPath, configRules("v1"))
	r := startRun(t, append([]string{"--rules", rulesPath, "--reload-interval", "20ms"}, runArgs(t, k)...)...)
	r.waitMetric(`dwell_rules_version_info{version="v1"} 1`)
	if !strings.Contains(r.stderr.String(), "event_log=all") {
		t.Fatalf("the event log is not on by default with rules:\n%s", r.stderr.String())
	}

	replaceFile(t, rulesPath, configBadRules)
	r.waitMetric(`dwell_rules_reloads_total{result="rejected",source="file"} 1`)
	body := r.scrape()
	if !strings.Contains(body, `dwell_rules_version_info{version="v1"} 1`) || strings.Contains(body, `version="bad"`) {
		t.Fatalf("after a bad file the version is not v1:\n%s", body)
	}
	for _, want := range []string{"rules rejected", "line=5", "column=17", "rule=typo", "running=v1"} {
		if !strings.Contains(r.stderr.String(), want) {
			t.Fatalf("the rejection log lacks %q:\n%s", want, r.stderr.String())
		}
	}

	replaceFile(t, rulesPath, configRules("v2"))
	r.waitMetric(`dwell_rules_version_info{version="v2"} 1`)
	r.waitMetric(`dwell_rules_reloads_total{result="applied",source="file"} 1`)
	if code := r.stop(); code != exitOK {
		t.Fatalf("dwell run exited %d:\n%s", code, r.stderr.String())
	}

	// Polling off: a change waits for SIGHUP.
	r = startRun(t, append([]string{"--rules", rulesPath, "--reload-interval", "0"}, runArgs(t, k)...)...)
	r.waitMetric(`dwell_rules_version_info{version="v2"} 1`)
	r.waitFor("the watcher", func() bool { return strings.Contains(r.stderr.String(), "watching rules files") })
	replaceFile(t, rulesPath, configRules("v3"))
	time.Sleep(100 * time.Millisecond)
	if strings.Contains(r.scrape(), `version="v3"`) {
		t.Fatal("v3 applied with polling off and no SIGHUP")
	}
	// dwell run has signal.Notify'd SIGHUP (before logging that it watches): the test process
	// is not killed.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r.waitMetric(`dwell_rules_version_info{version="v3"} 1`)
}

// TestRunConfigTopic: instances following the config topic apply what dwell config apply
// publishes, and skip what they cannot parse.
func TestRunConfigTopic(t *testing.T) {
	k := pipelinetest.New(t, 2, []string{"events"})
	topic := k.Name("dwell.config")
	brokers := strings.Join(k.Brokers, ",")
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	t.Cleanup(func() {
		if k.Real {
			_, _ = kadm.NewClient(cl).DeleteTopics(context.Background(), topic)
		}
	})
	rulesPath := filepath.Join(t.TempDir(), "rules.yaml")
	replaceFile(t, rulesPath, configRules("v1"))
	if code, _, errs := runCLI(t, "", "config", "apply", rulesPath, "--brokers", brokers, "--topic", topic, "--create-topic"); code != exitOK {
		t.Fatalf("apply v1: exit %d: %s", code, errs)
	}

	r := startRun(t, append([]string{"--config-topic", topic, "--event-log", "errors"}, runArgs(t, k)...)...)
	r.waitMetric(`dwell_rules_version_info{version="v1"} 1`)
	if !strings.Contains(r.stderr.String(), "event_log=errors") {
		t.Fatalf("--event-log errors not taken:\n%s", r.stderr.String())
	}
	// A record no dwell config apply would write: skipped, counted, v1 stays.
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte(rulesrc.RecordKey), Value: []byte("{")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	r.waitMetric(`dwell_rules_reloads_total{result="rejected",source="topic"} 1`)
	replaceFile(t, rulesPath, configRules("v2"))
	if code, _, errs := runCLI(t, "", "config", "apply", rulesPath, "--brokers", brokers, "--topic", topic); code != exitOK {
		t.Fatalf("apply v2: exit %d: %s", code, errs)
	}
	r.waitMetric(`dwell_rules_version_info{version="v2"} 1`)
}
