package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dwellhq/dwell/pipeline/move"
)

const moveFilterHelp = `expression selecting the records to move (expr language), over:
  value (the JSON object: value.type, value.properties.x), raw, key, headers["name"],
  reason (the dead-letter reason header), topic, partition, offset, timestamp (a time:
  timestamp > now() - duration("2h")); e.g. reason == "invalid-time" && value?.type == "purchase"
  (value?.x: some values may not be JSON objects; a filter that fails on a record skips it)`

// newMoveCmd is dwell move: it copies the records of one topic that match a filter to another
// topic (pipeline/move).
func newMoveCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "move --from TOPIC --to TOPIC [--filter EXPR] [flags]",
		Short: "copy matching records (dead letters) to a topic for reprocessing",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	cfg := move.DefaultConfig()
	var since, until *string
	brokers := bindBrokers(fs)
	kafka := bindKafka(fs)
	inGroup(fs, groupIO, func() {
		fs.StringVar(&cfg.From, "from", cfg.From, "`TOPIC` to read (required), e.g. dwell.dlq")
		fs.StringVar(&cfg.To, "to", cfg.To, "`TOPIC` to write (required), e.g. an input topic or dwell.queue.NAME")
		fs.BoolVar(&cfg.DryRun, "dry-run", cfg.DryRun, "write nothing: print the matching records as JSON lines")
		fs.StringVar(&cfg.EventLogTopic, "event-log-topic", cfg.EventLogTopic, "event-log `TOPIC`: each moved record is logged as transferred (empty: do not log)")
	})
	inGroup(fs, groupSelect, func() {
		fs.StringVar(&cfg.Filter, "filter", cfg.Filter, "`EXPR`: "+moveFilterHelp)
		since = fs.String("since", "", "only records from this `TIME`: RFC 3339, or a duration ago (90m, 2h, 7d)")
		until = fs.String("until", "", "only records before this `TIME`: RFC 3339, or a duration ago")
	})
	inGroup(fs, groupObserve, func() {
		fs.DurationVar(&cfg.Progress, "progress", cfg.Progress, "interval of the progress line on stderr (0: none)")
	})
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runMove(cmd.Context(), e, cfg, kafka, *brokers, *since, *until)
	}
	return cmd
}

func runMove(ctx context.Context, e *cliEnv, cfg move.Config, kafka *kafkaFlags, brokers, since, until string) error {
	var err error
	if cfg.Since, cfg.Until, err = parseWindow(since, until, time.Now()); err != nil {
		return usageError{fmt.Errorf("move: %w", err)}
	}
	if cfg.ClientOpts, err = kafka.opts(); err != nil {
		return usageError{err}
	}
	cfg.Brokers = splitList(brokers)
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if err := checkBrokers(ctx, connectOptions{Brokers: cfg.Brokers, ClientOpts: cfg.ClientOpts}); err != nil {
		return err
	}
	_, err = move.Run(ctx, cfg, e.stdout, e.stderr)
	if errors.Is(err, move.ErrConfig) {
		return usageError{err}
	}
	return err
}
