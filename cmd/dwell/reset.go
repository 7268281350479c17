package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dwellhq/dwell/pipeline/reset"
)

// cmdReset rewinds a stopped application's group offsets and state together (pipeline/reset).
func cmdReset(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reset", stderr)
	var cfg reset.Config
	brokers := bindBrokers(fs)
	fs.StringVar(&cfg.Group, "group", "dwell", "the application's consumer group")
	fs.StringVar(&cfg.ApplicationID, "application-id", "", "the application id dwell run was given (names the changelog and savepoint topics); default the --group")
	fs.StringVar(&cfg.Changelog, "changelog-topic", "", "the changelog topic, if dwell run was given --changelog-topic; default <application-id>.changelog")
	inputs := fs.String("inputs", "", "comma-separated input topics; default the topics the group has offsets for")
	fs.BoolVar(&cfg.ToEarliest, "to-earliest", false, "rewind to the earliest offsets, with empty state: reprocess everything")
	toDatetime := fs.String("to-datetime", "", "rewind to the first records at or after this time (RFC 3339, or a duration ago: 90m, 2h, 7d), with the state of the newest savepoint at or before it")
	fs.DurationVar(&cfg.ByDuration, "by-duration", 0, "rewind this far back from now (like --to-datetime)")
	fs.StringVar(&cfg.ToOffsets, "to-offsets", "", "rewind to the offsets in this file (lines topic,partition,offset), with the state of the newest savepoint at or before them; partitions it leaves out are left alone")
	dryRun := fs.Bool("dry-run", false, "print the plan and change nothing (the default without --execute)")
	fs.BoolVar(&cfg.Execute, "execute", false, "carry the plan out: offsets and state move together, in one transaction")
	fs.DurationVar(&cfg.TransactionTimeout, "transaction-timeout", 5*time.Minute, "how long the reset's transaction may take (copying a large savepoint)")
	kafka := bindKafka(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dryRun && cfg.Execute {
		return usageError{errors.New("reset: --dry-run and --execute contradict each other; pass one")}
	}
	var err error
	if cfg.ToDatetime, err = parseWhen(*toDatetime, time.Now()); err != nil {
		return usageError{fmt.Errorf("reset: --to-datetime: %w", err)}
	}
	if cfg.ClientOpts, err = kafka.opts(); err != nil {
		return usageError{err}
	}
	cfg.Brokers, cfg.Inputs = splitList(*brokers), splitList(*inputs)
	_, err = reset.Run(ctx, cfg, stdout)
	if errors.Is(err, reset.ErrConfig) {
		return usageError{err}
	}
	return err
}
