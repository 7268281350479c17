package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/deadletter"
)

// demoFlags are dwell demo's flags, live and --offline.
type demoFlags struct {
	offline     bool
	rate        float64
	speed       float64
	duration    time.Duration
	profiles    int
	metricsAddr string
	shopAddr    string
	log         *logFlags // live: warn by default, the summary is the demo's output
	ops         operators.Config
	// --offline
	events     int
	dir        string
	partitions int
	web        bench.WebConfig
}

// newDemoCmd is dwell demo: the whole live pipeline on an embedded Kafka-protocol test broker
// (runDemoLive), or with --offline the offline pipeline on a generated file (runDemoOffline).
// It needs no flags; --duration or Ctrl-C ends it cleanly, exit 0.
func newDemoCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo [--offline] [--duration D] [flags]",
		Short: "the live pipeline on an embedded test broker (--offline: a generated file)",
		Long: `dwell demo runs the live pipeline on an embedded test broker: a generator produces web
tracking, the exactly-once processor consumes it, and a summary line is printed every second.
With --offline it generates a sample file, processes it offline and shows one output of each
kind. It needs no flags; --duration or Ctrl-C ends it (exit 0).`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	d := &demoFlags{web: bench.WebConfig{IdleEvery: 50_000, MalformedShare: 0.002, LateShare: 0.001}}
	inGroup(fs, groupIO, func() {
		fs.BoolVar(&d.offline, "offline", false, "process a generated file instead (no broker)")
		fs.DurationVar(&d.duration, "duration", 0, "stop after this long (default: until Ctrl-C)")
		fs.Float64Var(&d.rate, "rate", 0, "records produced per second, live (default 2000); events per second of event time, --offline (default 20)")
		fs.IntVar(&d.profiles, "profiles", 20_000, "distinct profiles")
		fs.Float64Var(&d.speed, "speed", 120, "live: event time runs this many times faster than the wall clock, so visits end within seconds")
		fs.StringVar(&d.metricsAddr, "metrics-addr", "localhost:9090", "live: serve /metrics, /healthz and /readyz at `HOST:PORT` (empty: do not serve)")
		fs.StringVar(&d.shopAddr, "shop-addr", "localhost:8686", "live: serve a demo shop page with the tracker, and /track, at `HOST:PORT` (empty: do not serve)")
	})
	const offline = "Offline (--offline)"
	inGroup(fs, offline, func() {
		fs.IntVar(&d.events, "events", 200_000, "number of records to generate")
		fs.StringVar(&d.dir, "dir", "", "keep the sample and the outputs in this `DIR` (default: a temporary directory, removed at the end)")
		fs.IntVar(&d.partitions, "key-partitions", 4, "hash keys over this many partitions")
	})
	web := newFlags("web", io.Discard)
	bindWeb(web, &d.web)
	web.VisitAll(func(f *pflag.Flag) {
		if f.Name != "rate" && f.Name != "profiles" {
			f.Annotations = map[string][]string{groupAnn: {offline}}
			fs.AddFlag(f)
		}
	})
	bindOperators(fs, &d.ops)
	d.log = bindLog(fs, "warn")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		if d.duration > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d.duration)
			defer cancel()
		}
		var err error
		if d.offline {
			err = runDemoOffline(ctx, e, d)
		} else {
			err = runDemoLive(ctx, e, d)
		}
		// Ctrl-C (or --duration) is how a demo ends: whatever it interrupted, the exit is clean.
		if err != nil && ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			fmt.Fprintln(e.stdout, "\ndwell demo: stopped.")
			return nil
		}
		return err
	}
	return cmd
}

func runDemoLive(ctx context.Context, e *cliEnv, d *demoFlags) error {
	stdout, stderr := e.stdout, e.stderr
	rate := int(d.rate)
	if d.rate == 0 {
		rate = 2000
	}
	speed, profiles, metricsAddr, opCfg := &d.speed, &d.profiles, &d.metricsAddr, d.ops
	if rate < 1 || *speed <= 0 {
		return usageError{errors.New("demo: --rate and --speed must be positive")}
	}
	logger, err := d.log.logger(stderr)
	if err != nil {
		return err
	}
	topics := pipeline.DefaultTopics()
	const partitions = 4
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "events",
		topics.System, topics.Events, topics.Late, topics.Dead, topics.Changelog, topics.Savepoints, topics.SavepointData))
	if err != nil {
		return fmt.Errorf("demo: starting the embedded broker: %w", err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	dir, err := os.MkdirTemp("", "dwell-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)

	web := bench.WebConfig{Profiles: *profiles, Rate: float64(rate) / *speed, MalformedShare: 0.002, LateShare: 0.002,
		Start: time.Now().UTC().Truncate(time.Second)}
	fmt.Fprintf(stdout, `dwell demo: the live pipeline on an EMBEDDED TEST BROKER (franz-go's kfake, in this process;
not Apache Kafka). A generator produces %d web-tracking records/s for %d profiles into topic
"events" (%d partitions), with 0.2%% malformed and 0.2%% an hour late. Event time runs %gx faster
than the wall clock, so a 30-minute visit gap passes in %.0fs. The exactly-once processor writes
%s, %s, %s and %s; state lives in %s.
Read them from another terminal while it runs: dwell tail %s --brokers %s

`, rate, *profiles, partitions, *speed, (30*time.Minute).Seconds() / *speed,
		topics.System, topics.Events, topics.Late, topics.Dead, dir, topics.System, strings.Join(brokers, ","))

	var eventNow atomic.Int64 // the generator's event-time clock, which the processor follows
	eventNow.Store(web.Start.UnixMilli())
	nowEvent := func() time.Time { return time.UnixMilli(eventNow.Load()) }
	var produced atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	prodCtx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	prodErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		prodErr <- produce(prodCtx, brokers, web, rate, &eventNow, &produced)
	}()

	reg := newRegistry()
	live, err := pipeline.NewLive(pipeline.LiveConfig{
		Brokers: brokers, Inputs: []string{"events"}, DataDir: dir, Operators: opCfg,
		Now:     nowEvent,
		Logger:  logger,
		Metrics: pipeline.NewMetrics(reg),
	})
	if err != nil {
		return err
	}
	if *metricsAddr != "" {
		// The demo runs without flags: a busy port is a warning, not a failure.
		if addr, stop, err := serveHTTP(*metricsAddr, reg, live.Readiness, logger); err != nil {
			fmt.Fprintf(stdout, "(metrics not served: %v)\n\n", err)
		} else {
			defer stop()
			fmt.Fprintf(stdout, "Prometheus metrics: http://%s/metrics (also /healthz, /readyz)\n\n", addr)
		}
	}
	// The shop's browser events are stamped with the event clock: they join the generated
	// traffic as if they had come in just now, neither late nor ahead of it.
	var shop *demoShop
	if d.shopAddr != "" {
		if shop, err = startShop(d.shopAddr, brokers, "events", nowEvent, logger, reg); err != nil {
			fmt.Fprintf(stdout, "(shop not served: %v)\n\n", err)
		} else {
			defer shop.Close()
			fmt.Fprintf(stdout, `>>> Open %s in a browser: a small shop with the tracker. Click around: your visit
>>> shows up below as "your browser", and its visit-ended about %.0fs after your last click.

`, shop.url, (30*time.Minute).Seconds() / *speed)
		}
	}
	runCtx, stopRunning := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr <- live.Run(runCtx)
	}()
	samples := newSampler(brokers, topics)
	wg.Add(1)
	go func() {
		defer wg.Done()
		samples.run(runCtx)
	}()

	start := time.Now()
	var rt rates
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var err2 error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err2 = <-prodErr:
			if err2 != nil {
				break loop
			}
		case err2 = <-runErr:
			break loop
		case <-tick.C:
			st := live.Stats()
			fmt.Fprintln(stdout, summary(time.Since(start), produced.Load(), st)+rt.line(st))
			if line := samples.next(); line != "" {
				fmt.Fprintln(stdout, "  "+line)
			}
			for _, line := range samples.browser() {
				fmt.Fprintln(stdout, "  "+line)
			}
		}
	}
	stopProducing()
	// The shop's last requests are answered while the processor still runs.
	err2 = errors.Join(err2, shop.Close())
	final := summary(time.Since(start), produced.Load(), live.Stats()) // before workers stop
	stopRunning()
	wg.Wait()
	for _, ch := range []chan error{prodErr, runErr} {
		select {
		case err := <-ch:
			err2 = errors.Join(err2, err)
		default:
		}
	}
	fmt.Fprintln(stdout, final)
	if err := errors.Join(err2, live.Close()); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintln(stdout, "\ndwell demo: stopped cleanly. Run against your own Kafka: dwell run --brokers HOST:PORT --inputs TOPIC --create-topics")
	return nil
}

// produce writes generated records at rate per second until ctx is done.
func produce(ctx context.Context, brokers []string, web bench.WebConfig, rate int, eventNow, produced *atomic.Int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("events"),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		return err
	}
	defer cl.Close()
	g, err := bench.NewWeb(web)
	if err != nil {
		return err
	}
	const step = 20 * time.Millisecond
	perStep := max(1, rate*int(step)/int(time.Second))
	tick := time.NewTicker(step)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		recs := make([]*kgo.Record, 0, perStep)
		for range perStep {
			r := g.Next(nil)
			recs = append(recs, &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)})
			eventNow.Store(r.Timestamp)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil && ctx.Err() == nil {
			return fmt.Errorf("producing: %w", err)
		}
		produced.Add(int64(len(recs)))
	}
}

// rates turns successive summaries into per-second rates.
type rates struct {
	at       time.Time
	in, outs uint64
}

func (r rates) line(st pipeline.LiveStats) string {
	now := time.Now()
	var outs uint64
	for _, n := range st.System {
		outs += n
	}
	outs += st.Events + st.Late + st.Dead
	line := ""
	if !r.at.IsZero() && st.Records >= r.in && outs >= r.outs {
		secs := now.Sub(r.at).Seconds()
		line = fmt.Sprintf(" | %.0f in/s, %.0f out/s", float64(st.Records-r.in)/secs, float64(outs-r.outs)/secs)
	}
	r.at, r.in, r.outs = now, st.Records, outs
	return line
}

func summary(elapsed time.Duration, produced int64, st pipeline.LiveStats) string {
	s := st.System
	return fmt.Sprintf("[%4.0fs] produced %d | processed %d (lag %d) | open visits %d, sessions %d | created %d, opened %d, started %d, ended %d, closed %d | late %d | dead %d | txns %d",
		elapsed.Seconds(), produced, st.Records, max(produced-int64(st.Records), 0), st.OpenVisits, st.OpenSessions,
		s[operators.ProfileCreated], s[operators.SessionOpened], s[operators.VisitStarted], s[operators.VisitEnded], s[operators.SessionClosed],
		st.Late, st.Dead, st.Committed)
}

// sampler tails the output topics (read_committed) and hands out one record at a time, cycling
// through kinds so every kind shows up.
type sampler struct {
	brokers []string
	topics  pipeline.Topics
	mu      sync.Mutex
	latest  map[string]string // kind -> latest record
	shown   int
	shop    []string // lines for the shop's visitors (browserLine) not yet printed
}

var sampleKinds = []string{"profile-created", "session-opened", "visit-started", "visit-ended", "session-closed", "late", "dead letter"}

func newSampler(brokers []string, topics pipeline.Topics) *sampler {
	return &sampler{brokers: brokers, topics: topics, latest: map[string]string{}}
}

func (s *sampler) run(ctx context.Context) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.ConsumeTopics(s.topics.System, s.topics.Late, s.topics.Dead),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			kind := ""
			switch r.Topic {
			case s.topics.Late:
				kind = "late"
			case s.topics.Dead:
				kind = "dead letter"
			default:
				for _, k := range sampleKinds[:5] {
					if bytes.Contains(r.Value, []byte(`"type":"`+k+`"`)) {
						kind = k
					}
				}
			}
			var shop string
			if r.Topic == s.topics.System && bytes.Contains(r.Value, []byte(`"source":"`+demoShopSource+`"`)) {
				shop = browserLine(r.Value)
			}
			v := string(r.Value)
			if r.Topic == s.topics.Dead {
				if src, ok := deadletter.Read(r.Headers); ok {
					v = "(" + src.Reason + ") " + v
				}
			}
			if len(v) > 220 {
				v = v[:220] + "..."
			}
			s.mu.Lock()
			s.latest[kind] = v
			if shop != "" && len(s.shop) < 100 { // bounded: a browser sends a few visits, not thousands
				s.shop = append(s.shop, shop)
			}
			s.mu.Unlock()
		})
	}
}

// browser returns the shop's lines that came since the last call.
func (s *sampler) browser() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := s.shop
	s.shop = nil
	return lines
}

// next returns a sample of the next kind that has one, or "".
func (s *sampler) next() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range sampleKinds {
		k := sampleKinds[s.shown%len(sampleKinds)]
		s.shown++
		if v, ok := s.latest[k]; ok {
			return k + ": " + v
		}
	}
	return ""
}
