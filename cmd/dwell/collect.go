package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline/collect"
	"github.com/dwellhq/dwell/pipeline/rulesrc"
)

// collectFlags are dwell collect's settings.
type collectFlags struct {
	topic, listen, sources, metricsAddr string
	configTopic                         string
	maxEvents, maxBuffered, maxInflight int
	timeout, drain, reloadInterval      time.Duration
	shutdownDelay                       time.Duration
	linger                              time.Duration
	ops                                 operators.Config
	log                                 *logFlags
}

// newCollectCmd is dwell collect: Tracardi's /track over HTTP into the input topic.
func newCollectCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "collect --sources FILE [--topic TOPIC] [--listen HOST:PORT] [flags]",
		Short: "serve Tracardi's /track and the JavaScript tracker, producing events into Kafka",
		Long: `dwell collect is an HTTP intake for browsers and servers: POST /track takes a Tracardi
tracker payload (source, session, profile, context and an events array), checks it with the
processor's own decoder and the event source's rules (origins, API key, rate limit), and
produces it as one record to the input topic, keyed by profile id, idempotent with acks=all.
It answers 200 with the profile id (minted for a first visit) only once Kafka has the events;
503 with Retry-After when Kafka is unreachable or its buffer is full. GET /tracker.js serves
the JavaScript tracker. The sources file lists the event sources; it is reloaded when it
changes and on SIGHUP.`,
		Example: `  dwell collect --brokers localhost:9092 --topic events --sources sources.yaml --listen :8686
  curl -s localhost:8686/track -d '{"source":{"id":"web"},"session":{"id":"s1"},"events":[{"type":"page-view"}]}'`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	brokers := bindBrokers(fs)
	kafka := bindKafka(fs)
	f := &collectFlags{}
	f.ops.EnsureDefaults()
	inGroup(fs, groupIO, func() {
		fs.StringVar(&f.topic, "topic", "events", "input `TOPIC` the events are produced to")
		fs.StringVar(&f.listen, "listen", ":8686", "serve /track, /tracker.js, /healthz and /readyz at `HOST:PORT`")
		fs.StringVar(&f.sources, "sources", "", "event sources `FILE` (YAML: sources: [{id, origins, api_key_env, rate, burst, enabled}]); reloaded when it changes and on SIGHUP")
		fs.StringVar(&f.configTopic, "config-topic", "", "follow the sources dwell config apply --sources publishes to this `TOPIC` (e.g. "+rulesrc.DefaultTopic+") instead of a file")
		fs.DurationVar(&f.reloadInterval, "reload-interval", 2*time.Second, "how often --sources is checked for changes (0: only on SIGHUP)")
	})
	inGroup(fs, groupLimits, func() {
		fs.IntVar(&f.ops.MaxEventBytes, "max-event-bytes", f.ops.MaxEventBytes, "refuse request bodies larger than this many `BYTES` (413); keep it dwell run's")
		fs.IntVar(&f.ops.MaxDepth, "max-depth", f.ops.MaxDepth, "refuse JSON nested deeper than this (400), as dwell run dead-letters it")
		fs.DurationVar(&f.ops.MaxFutureSkew, "max-future-skew", f.ops.MaxFutureSkew, "event times this far ahead of the time of receipt are replaced by it, as dwell run does")
		fs.IntVar(&f.maxEvents, "max-events", 100, "refuse requests with more events than this (400)")
		fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "answer 503 when Kafka has not acknowledged a request within this long")
		fs.IntVar(&f.maxBuffered, "max-buffered-bytes", 64<<20, "answer 503 at once when this many `BYTES` already wait for Kafka")
		fs.IntVar(&f.maxInflight, "max-inflight", 4096, "answer 503 beyond this many requests being handled at once")
		fs.DurationVar(&f.shutdownDelay, "shutdown-delay", 0, "on SIGTERM, keep serving this long with /readyz red before draining, so that a load balancer stops sending first (Kubernetes: a few seconds)")
		fs.DurationVar(&f.linger, "linger", 500*time.Microsecond, "how long the producer waits for more requests' records before it sends a batch (each request waits for it; 0: not at all)")
		fs.DurationVar(&f.drain, "drain-timeout", 30*time.Second, "on SIGTERM, wait this long for requests in flight to be answered")
	})
	inGroup(fs, groupObserve, func() {
		fs.StringVar(&f.metricsAddr, "metrics-addr", "localhost:9091", "serve /metrics, /healthz and /readyz at `HOST:PORT` (empty: do not serve)")
	})
	f.log = bindLog(fs, "info")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		conn, err := kafka.conn(*brokers)
		if err != nil {
			return err
		}
		return runCollect(cmd.Context(), e, conn, f)
	}
	return cmd
}

func runCollect(ctx context.Context, e *cliEnv, conn connectOptions, f *collectFlags) error {
	switch {
	case f.sources == "" && f.configTopic == "":
		return usageError{errors.New("collect: no event sources: pass --sources FILE (YAML with a sources: list, e.g. sources: [{id: web, origins: [\"https://shop.example.com\"]}]; see deploy/sources.example.yaml) or --config-topic TOPIC")}
	case f.sources != "" && f.configTopic != "":
		return usageError{errors.New("collect: sources come from --sources or from --config-topic, not both")}
	}
	for _, c := range []struct {
		flag, want string
		bad        bool
	}{
		{"--max-events", "positive", f.maxEvents < 1}, {"--max-inflight", "positive", f.maxInflight < 1},
		{"--max-buffered-bytes", "positive", f.maxBuffered < 1}, {"--timeout", "positive", f.timeout <= 0},
		{"--drain-timeout", "positive", f.drain <= 0}, {"--linger", "0 or more", f.linger < 0},
		{"--shutdown-delay", "0 or more", f.shutdownDelay < 0},
	} {
		if c.bad {
			return usageError{fmt.Errorf("collect: %s must be %s", c.flag, c.want)}
		}
	}
	linger := f.linger
	if linger == 0 {
		linger = -1 // collect.Config: none
	}
	if err := f.ops.Validate(); err != nil {
		return usageError{err}
	}
	logger, err := f.log.logger(e.stderr)
	if err != nil {
		return err
	}
	var ss *collect.Sources
	if f.sources != "" {
		if ss, err = loadSources(f.sources, e.getenv); err != nil {
			return err
		}
	}
	// The topic must exist: producing to a missing one would only time out request by request.
	cl, adm, err := connectKafka(ctx, conn)
	if err != nil {
		return err
	}
	topics := []string{f.topic}
	if f.configTopic != "" {
		topics = append(topics, f.configTopic)
	}
	_, err = requireTopics(ctx, adm, false, topics...)
	cl.Close()
	if err != nil {
		return err
	}
	var follow *collect.SourcesTopic
	if f.configTopic != "" {
		if follow, err = collect.NewSourcesTopic(conn.Brokers, conn.ClientOpts, f.configTopic, logger, e.getenv); err != nil {
			return err
		}
		defer follow.Close()
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ss, err = follow.Load(lctx)
		cancel()
		if err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("collect: listening on %s: %w; pass another --listen", f.listen, err)
	}
	defer ln.Close()

	reg := newRegistry()
	c, err := collect.New(collect.Config{Brokers: conn.Brokers, ClientOpts: conn.ClientOpts, Topic: f.topic, Sources: ss,
		Operators: f.ops, MaxEvents: f.maxEvents, Timeout: f.timeout, MaxBufferedBytes: f.maxBuffered, MaxInflight: f.maxInflight, Linger: linger,
		Logger: logger, Metrics: collect.NewMetrics(reg)})
	if err != nil {
		return err
	}
	if f.metricsAddr != "" {
		_, stop, err := serveHTTP(f.metricsAddr, reg, c.Ready, logger)
		if err != nil {
			_ = c.Close(ctx)
			return err
		}
		defer stop()
	}
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		_ = c.Run(runCtx)
	}()
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		if follow != nil {
			follow.Follow(runCtx, c.SetSources)
			return
		}
		watchSources(runCtx, f.sources, e.getenv, f.reloadInterval, c, logger)
	}()

	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: f.timeout + 30*time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("dwell collect running", "listen", ln.Addr().String(), "topic", f.topic, "sources", len(ss.IDs()),
		"tracker", "http://"+ln.Addr().String()+"/tracker.js")
	fmt.Fprintf(e.stderr, "dwell collect: POST http://%s/track -> %s (%d event sources); the tracker is at /tracker.js\n",
		ln.Addr(), f.topic, len(ss.IDs()))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	// Drain: /readyz red at once, new requests still served for --shutdown-delay (endpoints
	// and load balancers take a moment to drop the instance), then no new connections,
	// requests in flight answered (each waits for Kafka at most --timeout), what is buffered
	// flushed.
	c.Drain()
	if f.shutdownDelay > 0 && serveErr == nil {
		logger.Info("not ready; serving on until the shutdown delay has passed", "delay", f.shutdownDelay)
		select {
		case <-time.After(f.shutdownDelay):
		case serveErr = <-served:
		}
	}
	logger.Info("draining", "timeout", f.drain)
	dctx, cancel := context.WithTimeout(context.Background(), f.drain)
	defer cancel()
	shutErr := srv.Shutdown(dctx)
	stopRun()
	<-pinged
	<-reloaded
	// Every handler has returned: what is still buffered belongs to requests answered 503
	// (timeout), so a Kafka that is down does not hold the exit for the rest of the drain.
	fctx, fcancel := context.WithTimeout(dctx, 5*time.Second)
	defer fcancel()
	closeErr := c.Close(fctx)
	var unflushed *collect.UnflushedError
	if errors.As(closeErr, &unflushed) {
		// No request answered 200 lost anything: a warning, not a failed shutdown.
		logger.Warn("stopping with records not written", "err", closeErr)
		closeErr = nil
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	if err := errors.Join(serveErr, shutErr, closeErr); err != nil {
		return fmt.Errorf("collect: %w", err)
	}
	logger.Info("dwell collect stopped cleanly")
	return nil
}

// loadSources reads and checks the sources file.
func loadSources(path string, getenv func(string) string) (*collect.Sources, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	ss, err := collect.ParseSources(b, getenv)
	if err != nil {
		return nil, fmt.Errorf("collect: %s: %w", path, err)
	}
	return ss, nil
}

// watchSources reloads the sources file when it changes (polled every interval) and on SIGHUP,
// until ctx is done. A file that does not parse is logged and the sources in use stay.
func watchSources(ctx context.Context, path string, getenv func(string) string, interval time.Duration, c *collect.Collector, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	last, _ := os.ReadFile(path)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-hup:
			last = nil // reload even if unchanged
		}
		b, err := os.ReadFile(path)
		if err != nil {
			logger.Warn("sources file unreadable; the sources in use stay", "file", path, "err", err)
			continue
		}
		if string(b) == string(last) {
			continue
		}
		last = b
		ss, err := collect.ParseSources(b, getenv)
		if err != nil {
			logger.Error("sources file refused; the sources in use stay", "file", path, "err", err)
			continue
		}
		c.SetSources(ss)
		logger.Info("sources reloaded", "file", path, "sources", len(ss.IDs()))
	}
}
