package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dwellhq/dwell/pipeline/move"
)

const moveFilterHelp = `expression selecting the records to move (expr language), over:
  value (the JSON object: value.type, value.properties.x), raw, key, headers["name"],
  reason (the dead-letter reason header), topic, partition, offset, timestamp (a time:
  timestamp > now() - duration("2h")); e.g. reason == "invalid-time" && value?.type == "purchase"
  (value?.x: some values may not be JSON objects; a filter that fails on a record skips it)`

// cmdMove copies the records of one topic that match a filter to another topic (pipeline/move).
func cmdMove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("move", stderr)
	cfg := move.DefaultConfig()
	brokers := bindBrokers(fs)
	fs.StringVar(&cfg.From, "from", cfg.From, "topic to read (required), e.g. dwell.dlq")
	fs.StringVar(&cfg.To, "to", cfg.To, "topic to write (required), e.g. an input topic or dwell.queue.NAME")
	fs.StringVar(&cfg.Filter, "filter", cfg.Filter, moveFilterHelp)
	since := fs.String("since", "", "only records from this time: RFC 3339, or a duration ago (90m, 2h, 7d)")
	until := fs.String("until", "", "only records before this time: RFC 3339, or a duration ago")
	fs.BoolVar(&cfg.DryRun, "dry-run", cfg.DryRun, "write nothing: print the matching records as JSON lines")
	fs.StringVar(&cfg.EventLogTopic, "event-log-topic", cfg.EventLogTopic, "event-log topic: each moved record is logged as transferred (empty: do not log)")
	fs.DurationVar(&cfg.Progress, "progress", cfg.Progress, "interval of the progress line on stderr (0: none)")
	kafka := bindKafka(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.Since, cfg.Until, err = parseWindow(*since, *until, time.Now()); err != nil {
		return usageError{fmt.Errorf("move: %w", err)}
	}
	if cfg.ClientOpts, err = kafka.opts(); err != nil {
		return usageError{err}
	}
	cfg.Brokers = splitList(*brokers)
	_, err = move.Run(ctx, cfg, stdout, stderr)
	if errors.Is(err, move.ErrConfig) {
		return usageError{err}
	}
	return err
}
