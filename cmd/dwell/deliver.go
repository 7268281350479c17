package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/dwellhq/dwell/pipeline/deliver"
)

// newDeliverCmd is dwell deliver: it delivers one queue's records as webhooks until ctx is
// cancelled: deliveries in flight finish (bounded by --drain-timeout), offsets are committed,
// and it exits 0.
func newDeliverCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deliver --queue NAME --url URL [flags]",
		Short: "deliver a queue's records as webhooks",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	cfg := deliver.DefaultConfig() // each flag's default is the field's value
	var url, endpoints, metricsAddr *string
	brokers := bindBrokers(fs)
	kafka := bindKafka(fs)
	inGroup(fs, groupIO, func() {
		fs.StringVar(&cfg.Queue, "queue", "", "the queue to deliver (required); its topic is dwell.queue.`NAME`")
		fs.StringVar(&cfg.Topic, "topic", "", "the queue `TOPIC` (default dwell.queue.NAME)")
		fs.StringVar(&cfg.Group, "group", "", "consumer `GROUP` (default dwell-deliver-NAME)")
		fs.StringVar(&cfg.DeadTopic, "dlq-topic", cfg.DeadTopic, "dead-letter `TOPIC` for what cannot be delivered")
		url = fs.String("url", "", "default endpoint: records without a channel listed in --endpoints are POSTed to this `URL`")
		endpoints = fs.String("endpoints", "", "YAML `FILE`: a default URL and URLs (with headers) per notification channel")
	})
	inGroup(fs, groupDelivery, func() {
		fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "deliveries at once")
		fs.IntVar(&cfg.MaxPending, "max-pending", cfg.MaxPending, "pause a partition with this many uncommitted records")
		fs.DurationVar(&cfg.AttemptTimeout, "attempt-timeout", cfg.AttemptTimeout, "timeout of one HTTP request")
		fs.IntVar(&cfg.MaxAttempts, "max-attempts", cfg.MaxAttempts, "attempts per record before it is dead-lettered")
		fs.DurationVar(&cfg.MaxElapsed, "max-elapsed", cfg.MaxElapsed, "time from a record's first attempt to its last")
		fs.DurationVar(&cfg.InitialBackoff, "initial-backoff", cfg.InitialBackoff, "wait before the first retry, doubling per retry")
		fs.DurationVar(&cfg.MaxBackoff, "max-backoff", cfg.MaxBackoff, "cap of the computed wait; a longer Retry-After is honoured")
		fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", cfg.DrainTimeout, "on shutdown or revocation, wait this long for deliveries in flight")
	})
	inGroup(fs, groupObserve, func() {
		metricsAddr = fs.String("metrics-addr", "localhost:9091", "serve /metrics, /healthz and /readyz at `HOST:PORT` (empty: do not serve)")
	})
	logf := bindLog(fs, "info")
	bindConfigFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runDeliver(cmd.Context(), e.stderr, cfg, kafka, *brokers, *url, *endpoints, *metricsAddr, logf)
	}
	return cmd
}

func runDeliver(ctx context.Context, stderr io.Writer, cfg deliver.Config, kafka *kafkaFlags, brokers, url, endpoints, metricsAddr string, logf *logFlags) error {
	if cfg.Queue == "" {
		return usageError{errors.New("deliver: name the queue: dwell deliver --queue NAME --url URL")}
	}
	if endpoints != "" {
		b, err := os.ReadFile(endpoints)
		if err != nil {
			return usageError{fmt.Errorf("deliver: --endpoints: %w", err)}
		}
		if cfg.Endpoints, err = deliver.ParseEndpoints(b, os.Getenv); err != nil {
			return usageError{err}
		}
	}
	if url != "" {
		if err := deliver.CheckURL(url); err != nil {
			return usageError{fmt.Errorf("deliver: --url: %w", err)}
		}
		cfg.Endpoints.Default = &deliver.Endpoint{URL: url}
	}
	if cfg.Endpoints.Default == nil && len(cfg.Endpoints.Channels) == 0 {
		return usageError{errors.New("deliver: no endpoint: pass --url or --endpoints FILE")}
	}
	cfg.Brokers = splitList(brokers)
	logger, err := logf.logger(stderr)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	kopts, err := kafka.opts()
	if err != nil {
		return usageError{err}
	}
	cfg.ClientOpts = kopts
	reg := newRegistry()
	cfg.Metrics = deliver.NewMetrics(reg)
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if err := checkBrokers(ctx, connectOptions{Brokers: cfg.Brokers, ClientOpts: kopts}); err != nil {
		return err
	}
	d, err := deliver.New(cfg)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = d.CheckTopics(cctx)
	cancel()
	if err != nil {
		return errors.Join(err, d.Close())
	}
	if metricsAddr != "" {
		_, stop, err := serveHTTP(metricsAddr, reg, readyErr(d.Ready), cfg.Logger)
		if err != nil {
			return errors.Join(err, d.Close())
		}
		defer stop()
	}
	cfg.Logger.Info("dwell deliver running", "queue", cfg.Queue, "topic", cfg.Topic, "group", cfg.Group,
		"concurrency", cfg.Concurrency, "dlq", cfg.DeadTopic)
	runErr := d.Run(ctx)
	if err := errors.Join(runErr, d.Close()); err != nil {
		return fmt.Errorf("deliver: %w", err)
	}
	cfg.Logger.Info("dwell deliver stopped cleanly")
	return nil
}
