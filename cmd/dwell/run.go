package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/dwellhq/dwell/pipeline"
)

// cmdRun runs the live processor until ctx is cancelled (SIGINT/SIGTERM): the cycle in flight
// finishes and commits, then it exits 0.
func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	var cfg pipeline.LiveConfig
	bindOperators(fs, &cfg.Operators)
	brokers := fs.String("brokers", "localhost:9092", "comma-separated seed brokers")
	inputs := fs.String("inputs", "events", "comma-separated input topics (co-partitioned, keyed by profile id)")
	fs.StringVar(&cfg.Group, "group", "dwell", "consumer group")
	fs.StringVar(&cfg.DataDir, "data-dir", "data", "directory of the local state (Pebble); rebuildable from the changelog")
	def := pipeline.DefaultTopics()
	fs.StringVar(&cfg.Topics.System, "system-topic", def.System, "system events output topic")
	fs.StringVar(&cfg.Topics.Events, "events-topic", def.Events, "processed events output topic")
	fs.StringVar(&cfg.Topics.Late, "late-topic", def.Late, "late events output topic")
	fs.StringVar(&cfg.Topics.Dead, "dlq-topic", def.Dead, "dead-letter output topic")
	fs.StringVar(&cfg.Topics.Changelog, "changelog-topic", def.Changelog, "state changelog topic (compacted)")
	createTopics := fs.Bool("create-topics", false, "create missing output topics (the changelog compacted)")
	fs.IntVar(&cfg.MaxPollRecords, "max-poll-records", 10_000, "records per processing cycle (one transaction)")
	fs.IntVar(&cfg.MaxCachedKeys, "max-cached-keys", 1_000_000, "keys kept in memory per partition; the rest are read from Pebble")
	fs.StringVar(&cfg.Compression, "compression", "lz4", "compression of produced batches: lz4, zstd, snappy or none")
	fs.StringVar(&cfg.Guarantee, "guarantee", pipeline.ExactlyOnce, "exactly-once (a transaction per cycle) or at-least-once (no transactions; repeats after a crash carry the same ids)")
	fs.DurationVar(&cfg.TransactionTimeout, "transaction-timeout", 30*time.Second, "how long a transaction may stay open: a cycle must end within it, and a crashed instance's open transaction holds back readers this long (a restart on the same data dir ends it at once)")
	fs.DurationVar(&cfg.GroupSessionTimeout, "group-session-timeout", 45*time.Second, "how long the group waits for a silent instance before moving its partitions")
	fs.StringVar(&cfg.KafkaLogLevel, "kafka-log-level", "warn", "what the Kafka client logs: none, error, warn, info or debug")
	metricsAddr := fs.String("metrics-addr", "localhost:9090", "serve /metrics, /healthz and /readyz here (empty: do not serve)")
	fs.String("config", "", "YAML file of settings keyed by flag name (flags and DWELL_* variables win)")
	verbose := fs.Bool("v", false, "log at debug level")
	kafka := bindKafka(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.Brokers = splitList(*brokers)
	cfg.Inputs = splitList(*inputs)
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := cfg.Operators.Validate(); err != nil {
		return usageError{err}
	}
	kopts, err := kafka.opts()
	if err != nil {
		return usageError{err}
	}
	cfg.ClientOpts = kopts
	if err := pipeline.EnsureTopics(ctx, cfg.Brokers, cfg.Inputs, cfg.Topics, *createTopics, kopts...); err != nil {
		return err
	}
	reg := newRegistry()
	cfg.Metrics = pipeline.NewMetrics(reg)
	live, err := pipeline.NewLive(cfg)
	if err != nil {
		if strings.Contains(err.Error(), "pass --") {
			return usageError{err}
		}
		return err
	}
	if *metricsAddr != "" {
		_, stop, err := serveHTTP(*metricsAddr, reg, live.Ready, cfg.Logger)
		if err != nil {
			return errors.Join(err, live.Close())
		}
		defer stop()
	}
	cfg.Logger.Info("dwell running", "brokers", cfg.Brokers, "inputs", cfg.Inputs, "group", cfg.Group, "data_dir", cfg.DataDir)
	runErr := live.Run(ctx)
	if err := errors.Join(runErr, live.Close()); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	cfg.Logger.Info("dwell stopped cleanly")
	return nil
}
