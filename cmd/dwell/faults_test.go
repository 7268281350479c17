package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/deploy/kafka"
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/deadletter"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// The fault suite: dwell on a real Apache Kafka (deploy/kafka) under the faults Kafka Streams'
// own system tests inject. Each scenario processes a generated stream while dwell processes are
// killed, brokers stop or die, or instances come and go, and then checks the committed
// system events against dwell process on the same input: the same events per key and in order,
// no duplicate ids (at-least-once: repeats only as identical copies), nothing missing.
//
// It runs under `make test-kafka` (DWELL_FAULT_SUITE=1). dwell runs as a child process (this
// test binary re-executed as dwell), so SIGKILL is a real kill.
//
//	DWELL_FAULT_SUITE=1 go test ./cmd/dwell -run TestFaults -v -timeout 20m
//
// DWELL_FAULT_ONLY=poison runs only the scenarios whose name contains the word.

const (
	faultSuiteEnv = "DWELL_FAULT_SUITE"
	asDwellEnv    = "DWELL_TEST_AS_DWELL" // set in a child: run dwell's main instead of tests
	faultParts    = 6
	// progressTimeout bounds each wait for the group to move on.
	progressTimeout = 2 * time.Minute
)

type faultRow struct {
	scenario          string
	inputs, want, got int
	missing, dup      int
	elapsed           time.Duration
	faults            string
	failed            bool
}

func TestFaults(t *testing.T) {
	if os.Getenv(faultSuiteEnv) == "" {
		t.Skip("the fault suite needs a real Kafka: run make test-kafka (or set " + faultSuiteEnv + "=1)")
	}
	if err := kafka.Available(); err != nil {
		t.Fatalf("%s is set but %v", faultSuiteEnv, err)
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("DWELL_FAULT_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("random seed %d (DWELL_FAULT_SEED=%d repeats the kill moments)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	var rows []faultRow
	t.Cleanup(func() { printFaultTable(rows) })

	single := startCluster(t, 1)
	scenarios := []struct {
		name      string
		cluster   func() *kafka.Cluster
		guarantee string
		events    int
		inject    func(f *faultRun) string
		big       []int                      // sizes of valid large events put among the generated ones
		check     func(f *faultRun) []string // problems besides the system events' comparison
	}{
		{"sigkill x10 + empty dir, exactly-once", func() *kafka.Cluster { return single }, pipeline.ExactlyOnce, 500_000,
			func(f *faultRun) string { return f.killRestarts(rng, 10, true) }, nil, nil},
		{"sigkill x10 + empty dir, at-least-once", func() *kafka.Cluster { return single }, pipeline.AtLeastOnce, 200_000,
			func(f *faultRun) string { return f.killRestarts(rng, 10, true) }, nil, nil},
		{"scale 1 -> 3 -> 1 instances", func() *kafka.Cluster { return single }, pipeline.ExactlyOnce, 200_000,
			func(f *faultRun) string { return f.scale() }, nil, nil},
		{"broker stop + start (1 node), health", func() *kafka.Cluster { return single }, pipeline.ExactlyOnce, 200_000,
			func(f *faultRun) string { return f.brokerRestart() }, nil, nil},
		{"3 brokers RF 3, one killed", func() *kafka.Cluster { return startCluster(t, 3) }, pipeline.ExactlyOnce, 200_000,
			func(f *faultRun) string { return f.brokerKill() }, nil, nil},
		// Issue 12: a valid event just under --max-event-bytes whose enriched copy is over the
		// broker's limit used to abort every cycle forever. The other large event, the size a
		// user measured (1,040,186 bytes), fits once the producer follows max.message.bytes.
		{"poison record", func() *kafka.Cluster { return single }, pipeline.ExactlyOnce, 30_000,
			func(f *faultRun) string { f.start(f.newDataDir()); return "events of 1,040,000 and 1,048,560 bytes" },
			[]int{1_040_000, 1_048_560}, (*faultRun).checkPoison},
		// About a million keys, a cap of 1,000: the sentinels' watermark jump makes every key's
		// timers due at once (faults_storm_test.go).
		{stormScenario, func() *kafka.Cluster { return single }, pipeline.ExactlyOnce, stormEvents,
			func(f *faultRun) string { return f.timerStorm() }, nil, nil},
		// One event far ahead mid-stream: without the guard every visit of its partition ends,
		// every profile is forgotten (faults_storm_test.go).
		{absurdScenario, func() *kafka.Cluster { return single }, pipeline.ExactlyOnce, 100_000,
			func(f *faultRun) string { return f.absurdTime() }, nil, nil},
		// dwell run refuses offsets rewound without state; dwell reset, killed once, rewinds
		// both; the replay, killed once, equals the offline run (faults_reset_test.go).
		{rewindScenario, func() *kafka.Cluster { return single }, pipeline.ExactlyOnce, 200_000,
			func(f *faultRun) string { return f.rewind(rng) }, nil, nil},
		// A rule whose template ranges over a number from the event, published to the config
		// topic, meets n = 1e9; then a good version replaces it (faults_storm_test.go).
		{hostileScenario, func() *kafka.Cluster { return single }, pipeline.ExactlyOnce, 100_000,
			func(f *faultRun) string { return f.hostileRule() }, nil, nil},
		// Scheduled jobs on the wall clock (issue 15): a job every second and a for_each over
		// about 200k profiles, through SIGKILLs and a scale 1 -> 3 -> 1 (faults_jobs_test.go).
		{jobsScenario, func() *kafka.Cluster { return single }, pipeline.ExactlyOnce, jobsEvents,
			func(f *faultRun) string { return f.jobs() }, nil, nil},
	}
	// DWELL_FAULT_SCALE=0.1 runs the suite on a tenth of the events, for a quick look.
	scale := 1.0
	if v, err := strconv.ParseFloat(os.Getenv("DWELL_FAULT_SCALE"), 64); err == nil && v > 0 {
		scale = v
	}
	only := strings.ToLower(os.Getenv("DWELL_FAULT_ONLY")) // a substring of the scenarios to run
	for _, sc := range scenarios {
		if !strings.Contains(strings.ToLower(sc.name), only) {
			continue
		}
		sc.events = int(float64(sc.events) * scale)
		t.Run(strings.NewReplacer(" ", "_", ">", "", ",", "").Replace(sc.name), func(t *testing.T) {
			f := newFaultRun(t, sc.cluster(), sc.guarantee, sc.events, webFor(sc.name, sc.events), injectFor(sc.name), sc.big...)
			row := faultRow{scenario: sc.name, inputs: sc.events + len(sc.big), want: f.stream.wantCount}
			started := time.Now()
			row.faults = sc.inject(f)
			v := f.finish()
			row.elapsed = time.Since(started)
			row.got, row.missing, row.dup = v.got, v.missing, v.duplicated
			if jc := f.jobCounts; jc != nil {
				// The row counts the job fires; the system events must still equal offline's.
				if v.missing > 0 || v.duplicated > 0 {
					v.problems = append(v.problems, fmt.Sprintf("system events: %d missing, %d duplicated", v.missing, v.duplicated))
				}
				row.want, row.got, row.missing, row.dup = jc.want, jc.got, jc.missing, jc.dup
				v.missing, v.duplicated = jc.missing, jc.dup
				v.problems = append(v.problems, jc.problems...)
			}
			if sc.check != nil {
				v.problems = append(v.problems, sc.check(f)...)
			}
			row.failed = len(v.problems) > 0 || v.missing > 0 || v.extra > 0 ||
				(sc.guarantee == pipeline.ExactlyOnce && v.duplicated > 0)
			rows = append(rows, row)
			if row.failed {
				t.Errorf("%s: %d expected, %d read, %d missing, %d duplicated, %d unexpected:\n%s",
					sc.name, row.want, v.got, v.missing, v.duplicated, v.extra, strings.Join(v.problems, "\n"))
			}
		})
	}
	// dwell collect SIGKILLed under load (faults_collect_test.go): inputs are requests, expected
	// those answered 200, got those of them in the topic.
	if strings.Contains(collectKillScenario, only) {
		t.Run(strings.ReplaceAll(collectKillScenario, " ", "_"), func(t *testing.T) {
			topic := fmt.Sprintf("f%d-collect", time.Now().UnixNano()%1e9)
			createTopic(t, single.Bootstrap(), faultParts, topic)
			c := runCollectKill(t, single.Bootstrap(), topic, 5*time.Second)
			problems := c.problems()
			rows = append(rows, faultRow{scenario: collectKillScenario, inputs: c.requests, want: c.acked, got: c.ackedLanded,
				missing: c.missing, dup: c.dup, elapsed: c.elapsed, faults: c.String(), failed: len(problems) > 0})
			if len(problems) > 0 {
				t.Errorf("%s: %s:\n%s", collectKillScenario, c, strings.Join(problems, "\n"))
			}
		})
	}
}

func printFaultTable(rows []faultRow) {
	if len(rows) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nfault suite on Apache Kafka %s\n", kafka.DefaultVersion)
	fmt.Fprintf(&b, "%-40s %8s %9s %9s %8s %8s %8s  %s\n", "scenario", "inputs", "expected", "got", "missing", "dup", "time", "faults")
	for _, r := range rows {
		mark := ""
		if r.failed {
			mark = "  FAILED"
		}
		fmt.Fprintf(&b, "%-40s %8d %9d %9d %8d %8d %7.0fs  %s%s\n", r.scenario, r.inputs, r.want, r.got, r.missing, r.dup,
			r.elapsed.Seconds(), r.faults, mark)
	}
	fmt.Print(b.String())
}

func startCluster(t *testing.T, nodes int) *kafka.Cluster {
	t.Helper()
	c, err := kafka.Start(context.Background(), kafka.Config{Nodes: nodes, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Log(err)
		}
	})
	return c
}

// faultRun is one scenario: a cluster, topics named for it, the stream, and dwell processes.
type faultRun struct {
	t         *testing.T
	cluster   *kafka.Cluster
	brokers   []string
	input     string
	group     string
	topics    pipeline.Topics
	guarantee string
	stream    *stream
	adm       *kadm.Client
	dir       string
	procs     []*dwellProc
	n         int      // data dirs made
	extraArgs []string // more dwell run flags
	// replayFrom, set by a rewind, is the system topic's end offsets at the reset: finish
	// checks what follows them (faults_reset_test.go).
	replayFrom map[int32]int64
	// jobCounts, set by the jobs row, are the job fires it read (faults_jobs_test.go).
	jobCounts *jobCounts
}

// webFor is the generated stream of a scenario: visits end mid-stream (an hour of event time
// in 200k events), so timers fire between kills; the storm's is a key per visit or so.
func webFor(scenario string, events int) bench.WebConfig {
	switch scenario {
	case stormScenario:
		return stormWeb(events)
	case jobsScenario:
		return jobsWeb(events)
	}
	return bench.WebConfig{Profiles: 20_000, Rate: float64(events) / 7200, MalformedShare: 0.002,
		LateShare: 0.002, Jitter: time.Second}
}

func newFaultRun(t *testing.T, c *kafka.Cluster, guarantee string, events int, web bench.WebConfig,
	inject func([]*kgo.Record) []*kgo.Record, big ...int) *faultRun {
	prefix := fmt.Sprintf("f%d-", time.Now().UnixNano()%1e9)
	f := &faultRun{
		t: t, cluster: c, brokers: c.Bootstrap(), input: prefix + "events", group: prefix + "dwell",
		topics: pipeline.Topics{System: prefix + "system", Events: prefix + "events-out", Late: prefix + "late",
			Dead: prefix + "dlq", Changelog: prefix + "changelog"},
		guarantee: guarantee, dir: t.TempDir(),
	}
	_, f.topics.Savepoints, f.topics.SavepointData = pipeline.InternalTopics(f.group)
	createTopics(t, f.brokers, faultParts, int16(min(c.Nodes(), 3)), f.input, f.topics)
	f.stream = newStreamWith(t, web, events, faultParts, inject, big...)
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	f.adm = kadm.NewClient(cl)
	var produceOpts []kgo.Opt
	if len(big) > 0 {
		// A collector's topic sized for large events: the input takes what dwell's outputs
		// (the broker's default max.message.bytes) may not.
		limit := strconv.Itoa(bigInputLimit)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		resp, err := f.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: &limit}}, f.input)
		cancel()
		if err == nil {
			err = resp[0].Err
		}
		if err != nil {
			t.Fatalf("raising %s's max.message.bytes: %v", f.input, err)
		}
		produceOpts = append(produceOpts, kgo.ProducerBatchMaxBytes(bigInputLimit))
	}
	produceAll(t, f.brokers, f.input, f.stream.recs, produceOpts...)
	t.Cleanup(func() {
		for _, p := range f.procs {
			p.kill()
		}
	})
	return f
}

// bigInputLimit is the max.message.bytes of the input of a run with large events.
const bigInputLimit = 2 << 20

// checkPoison checks the poison-record run: the event whose enriched copy is over the events
// topic's limit (the broker's default) is dead-lettered once as output-too-large, cut to fit
// the dead-letter topic and marked; the one of the size a user measured is written to the
// events topic; nothing was refused.
func (f *faultRun) checkPoison() []string {
	var problems []string
	fits, over := f.stream.big[0], f.stream.big[1]
	id := func(v []byte) string {
		var e struct{ ID string }
		_ = json.Unmarshal(v, &e)
		return e.ID
	}
	var written []string
	for _, v := range readCommitted(f.t, f.brokers, f.topics.Events) {
		if bytes.HasPrefix(v, []byte(`{"id":"evt-big-`)) {
			written = append(written, id(v))
		}
	}
	if !slices.Equal(written, []string{"evt-big-0"}) {
		problems = append(problems, fmt.Sprintf("large events on the events output: %v, want evt-big-0 (%d bytes) alone", written, len(fits.Value)))
	}
	var dead []string
	for _, r := range pipelinetest.ReadCommitted(f.t, f.brokers, f.topics.Dead) {
		src, _ := deadletter.Read(r.Headers)
		if src.Reason != string(operators.ReasonOutputTooLarge) && src.Reason != string(operators.ReasonProduceFailed) {
			continue
		}
		dead = append(dead, src.Reason+" "+src.EventID)
		var trunc string
		for _, h := range r.Headers {
			if h.Key == deadletter.Truncated {
				trunc = string(h.Value)
			}
		}
		if src.EventID == "evt-big-1" && (trunc != strconv.Itoa(len(over.Value)) || !bytes.HasPrefix(over.Value, r.Value) ||
			deadletter.RecordBatchSize(r.Key, r.Value, r.Headers) > pipeline.KafkaDefaultMaxMessageBytes || src.Topic != f.input) {
			problems = append(problems, fmt.Sprintf("dead letter of evt-big-1: %d bytes, %s %q, from %s: want the event cut to fit %d bytes and marked with its size",
				len(r.Value), deadletter.Truncated, trunc, src.Topic, pipeline.KafkaDefaultMaxMessageBytes))
		}
	}
	if !slices.Equal(dead, []string{"output-too-large evt-big-1"}) {
		problems = append(problems, fmt.Sprintf("producer dead letters %v, want output-too-large of evt-big-1 alone", dead))
	}
	return problems
}

// dwellProc is one dwell run child process.
type dwellProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
	once sync.Once
}

// start runs `dwell run` on the data dir dataDir (made under the run's directory).
func (f *faultRun) start(dataDir string) *dwellProc {
	f.t.Helper()
	args := []string{"run", "--brokers", strings.Join(f.brokers, ","), "--inputs", f.input, "--group", f.group,
		"--system-topic", f.topics.System, "--events-topic", f.topics.Events, "--late-topic", f.topics.Late,
		"--dlq-topic", f.topics.Dead, "--changelog-topic", f.topics.Changelog, "--data-dir", dataDir,
		"--guarantee", f.guarantee, "--metrics-addr", "", "--admin-addr", "127.0.0.1:0", "--max-poll-records", "5000", "-v", "--kafka-log-level", cmp.Or(os.Getenv("DWELL_FAULT_KAFKA_LOG"), "info"),
		// Event time, not the wall clock, ends visits: the stream is in the past.
		"--idle-timeout=-1s",
		"--group-session-timeout", "3s", "--transaction-timeout", "20s"}
	args = append(args, f.extraArgs...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asDwellEnv+"=1")
	logPath := fmt.Sprintf("%s.%d.log", dataDir, len(f.procs)+1)
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	// A child never outlives the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	p := &dwellProc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = cmd.Wait()
		lf.Close()
	}()
	f.procs = append(f.procs, p)
	return p
}

func (f *faultRun) newDataDir() string {
	f.n++
	return filepath.Join(f.dir, "data"+strconv.Itoa(f.n))
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *dwellProc) kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	})
}

// stop sends SIGTERM and requires a clean exit (status 0) within a minute.
func (f *faultRun) stop(p *dwellProc) {
	f.t.Helper()
	stopped := false
	// A signal that lands before dwell has set up its handlers kills it like any program; what
	// is tested is the stop of a running processor.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(p.log); bytes.Contains(b, []byte("dwell running")) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.once.Do(func() {
		stopped = true
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			_ = p.cmd.Process.Kill()
			<-p.done
			f.t.Errorf("dwell did not stop within a minute of SIGTERM; log %s:\n%s", p.log, tailFile(p.log))
			return
		}
		if p.err != nil {
			f.t.Errorf("dwell exited with %v after SIGTERM; log %s:\n%s", p.err, p.log, tailFile(p.log))
		}
	})
	if !stopped {
		f.t.Errorf("stopping a dwell process that had already been stopped or killed")
	}
}

// alive fails the test if p has exited on its own.
func (f *faultRun) alive(p *dwellProc) {
	f.t.Helper()
	select {
	case <-p.done:
		f.t.Fatalf("dwell exited on its own (%v); log %s:\n%s", p.err, p.log, tailFile(p.log))
	default:
	}
}

// waitProgress waits until the group has committed share of the input, while every process in
// procs keeps running.
func (f *faultRun) waitProgress(share float64, procs ...*dwellProc) {
	f.t.Helper()
	deadline := time.Now().Add(progressTimeout)
	best := -1.0
	for {
		for _, p := range procs {
			f.alive(p)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := progress(ctx, f.adm, f.group, f.input)
		cancel()
		if err == nil && got >= share {
			return
		}
		if err == nil && got > best+0.01 { // moving on: the timeout bounds a standstill
			best, deadline = got, time.Now().Add(progressTimeout)
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			f.describe(&logs)
			for _, p := range procs {
				f.dumpStacks(p)
				fmt.Fprintf(&logs, "--- %s\n%s\n", p.log, tailFile(p.log))
			}
			f.keepLogs()
			f.t.Fatalf("the group did not reach %.0f%% of the input, standing still for %s (at %.1f%%, %v); logs:\n%s",
				share*100, progressTimeout, got*100, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// finish waits for the group to commit the whole input with one process still running, stops
// every process cleanly and reads what was committed.
func (f *faultRun) finish() verdict {
	f.t.Helper()
	var running []*dwellProc
	for _, p := range f.procs {
		select {
		case <-p.done:
		default:
			running = append(running, p)
		}
	}
	f.waitProgress(1, running...)
	// Outputs are committed with the offsets (exactly-once) or before them (at-least-once).
	for _, p := range running {
		f.stop(p)
	}
	if f.replayFrom != nil {
		return f.checkReplay()
	}
	return f.stream.check(f.t, readCommitted(f.t, f.brokers, f.topics.System), f.guarantee == pipeline.AtLeastOnce)
}

// killRestarts kills the process kills times at random moments, restarting it on the same data
// dir each time, and once more (if emptyDir) with a restart on an empty data dir, where state
// comes from the changelog alone.
func (f *faultRun) killRestarts(rng *rand.Rand, kills int, emptyDir bool) string {
	total := kills
	if emptyDir {
		total++
	}
	at := make([]float64, total)
	for i := range at {
		at[i] = 0.03 + 0.9*rng.Float64()
	}
	slices.Sort(at)
	dir := f.newDataDir()
	p := f.start(dir)
	var moments []string
	for i, share := range at {
		f.waitProgress(share, p)
		// Somewhere inside a cycle, not just after a commit.
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		p.kill()
		moments = append(moments, fmt.Sprintf("%.0f%%", share*100))
		if emptyDir && i == total/2 {
			dir = f.newDataDir()
			moments[len(moments)-1] += "(empty dir)"
		}
		p = f.start(dir)
	}
	return "SIGKILL at " + strings.Join(moments, " ")
}

// scale runs one instance, adds two, then stops those two.
func (f *faultRun) scale() string {
	a := f.start(f.newDataDir())
	f.waitProgress(0.2, a)
	b, c := f.start(f.newDataDir()), f.start(f.newDataDir())
	f.waitProgress(0.55, a, b, c)
	f.stop(b)
	f.stop(c)
	return "2 joined at 20%, left at 55%"
}

// brokerRestart stops the only broker mid-run and starts it again; dwell must carry on by itself.
// brokerRestart stops the only broker for longer than dwell's --stall-timeout: while it is
// down, /readyz must answer 503 (the client drops the group's assignment once its coordinator
// is unreachable, so the answer is that no partition is assigned; with the assignment kept,
// TestLiveStallShowsInReadiness, it names the stalled partitions); once it is back, readiness
// must return with no partition stalled (health.go).
func (f *faultRun) brokerRestart() string {
	f.extraArgs = []string{"--metrics-addr", "127.0.0.1:0", "--stall-timeout", "10s"}
	p := f.start(f.newDataDir())
	addr := f.metricsAddr(p)
	f.waitProgress(0.3, p)
	if err := f.cluster.StopNode(0); err != nil {
		f.t.Fatal(err)
	}
	down := time.Now()
	why := f.waitHealth(addr, false, time.Minute)
	seen := time.Since(down)
	time.Sleep(max(0, 15*time.Second-time.Since(down)))
	f.alive(p)
	outage := time.Since(down)
	if err := f.cluster.StartNode(0); err != nil {
		f.t.Fatal(err)
	}
	if err := f.cluster.WaitReady(context.Background(), 2*time.Minute); err != nil {
		f.t.Fatal(err)
	}
	f.waitHealth(addr, true, 2*time.Minute)
	return fmt.Sprintf("broker down %.0fs at 30%%; /readyz 503 after %.1fs (%s), then 200", outage.Seconds(), seen.Seconds(), why)
}

// brokerKill kills the broker that coordinates dwell's group (and so likely leads some of its
// partitions) with SIGKILL mid-run; the cluster goes on with two.
func (f *faultRun) brokerKill() string {
	p := f.start(f.newDataDir())
	f.waitProgress(0.3, p)
	victim := 1
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if r, ok := f.adm.FindGroupCoordinators(ctx, f.group)[f.group]; ok && r.Err == nil {
		victim = int(r.NodeID) - 1
	}
	cancel()
	if err := f.cluster.KillNode(victim); err != nil {
		f.t.Fatal(err)
	}
	f.brokers = slices.Delete(f.cluster.Bootstrap(), victim, victim+1)
	return fmt.Sprintf("SIGKILL of node %d (group coordinator) at 30%%", victim+1)
}

// describe writes what Kafka says of the run: per partition, the input's end and committed
// offsets and the changelog's stable and high offsets; and the open transactions.
func (f *faultRun) describe(w io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, _ := f.adm.ListEndOffsets(ctx, f.input)
	committed, _ := f.adm.FetchOffsets(ctx, f.group)
	clEnds, _ := f.adm.ListEndOffsets(ctx, f.topics.Changelog)
	clStable, _ := f.adm.ListCommittedOffsets(ctx, f.topics.Changelog)
	for p := range int32(faultParts) {
		e, _ := ends.Lookup(f.input, p)
		c, _ := committed.Lookup(f.input, p)
		ce, _ := clEnds.Lookup(f.topics.Changelog, p)
		cs, _ := clStable.Lookup(f.topics.Changelog, p)
		fmt.Fprintf(w, "partition %d: input end %d committed %d (%v); changelog high %d stable %d\n",
			p, e.Offset, c.At, c.Err, ce.Offset, cs.Offset)
	}
	txns, err := f.adm.ListTransactions(ctx, nil, nil)
	fmt.Fprintf(w, "transactions (%v):\n", err)
	for _, t := range txns.Sorted() {
		fmt.Fprintf(w, "  %s producer %d state %s\n", t.TxnID, t.ProducerID, t.State)
	}
}

// keepLogs copies every process's log to $DWELL_FAULT_LOGS, when set.
func (f *faultRun) keepLogs() {
	dir := os.Getenv("DWELL_FAULT_LOGS")
	if dir == "" {
		return
	}
	for _, p := range f.procs {
		if b, err := os.ReadFile(p.log); err == nil && os.MkdirAll(dir, 0o755) == nil {
			_ = os.WriteFile(filepath.Join(dir, filepath.Base(p.log)), b, 0o644)
		}
	}
	for i := range f.cluster.Nodes() {
		if b, err := os.ReadFile(filepath.Join(f.cluster.LogDir(i), "server.log")); err == nil {
			_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("broker%d.log", i+1)), b, 0o644)
		}
	}
}

// dumpStacks makes a stuck process print its goroutines (SIGQUIT) into its log.
func (f *faultRun) dumpStacks(p *dwellProc) {
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

func tailFile(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
