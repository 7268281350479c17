package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dwellhq/dwell/pipeline/eventlog"
)

// newLogCmd is dwell log: it searches the event log and prints the matching entries, oldest
// first (pipeline/eventlog).
func newLogCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log [--type T] [--profile P] [--state S] [--since 1h] [flags]",
		Short: "search the event log",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	cfg := eventlog.DefaultConfig()
	var since, until *string
	brokers := bindBrokers(fs)
	kafka := bindKafka(fs)
	inGroup(fs, groupSelect, func() {
		fs.StringVar(&cfg.Type, "type", cfg.Type, "event `TYPE`; * matches any run of characters (cart-*)")
		fs.StringVar(&cfg.Profile, "profile", cfg.Profile, "profile `ID` (the record key: the session id for profile-less events)")
		fs.StringVar(&cfg.State, "state", cfg.State, "`STATE`: processed, error, ignored, dead-lettered, late or transferred")
		fs.StringVar(&cfg.ID, "id", cfg.ID, "event `ID`")
		fs.StringVar(&cfg.Rule, "rule", cfg.Rule, "only events this `RULE` fired on")
		since = fs.String("since", "1h", "entries logged from this `TIME`: RFC 3339 or a duration ago (90m, 2h, 7d); empty: the whole log")
		until = fs.String("until", "", "entries logged before this `TIME`: RFC 3339 or a duration ago")
		fs.IntVar(&cfg.Limit, "limit", cfg.Limit, "print at most the N most recent matches (0: all)")
	})
	inGroup(fs, groupIO, func() {
		fs.StringVar(&cfg.Topic, "topic", cfg.Topic, "the event-log `TOPIC`")
		fs.BoolVar(&cfg.JSON, "json", cfg.JSON, "print the entries as JSON lines, as logged")
	})
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runLog(cmd.Context(), e, cfg, kafka, *brokers, *since, *until)
	}
	return cmd
}

func runLog(ctx context.Context, e *cliEnv, cfg eventlog.Config, kafka *kafkaFlags, brokers, since, until string) error {
	var err error
	if cfg.Since, cfg.Until, err = parseWindow(since, until, time.Now()); err != nil {
		return usageError{fmt.Errorf("log: %w", err)}
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
	_, err = eventlog.Search(ctx, cfg, e.stdout, e.stderr)
	if errors.Is(err, eventlog.ErrConfig) {
		return usageError{err}
	}
	return err
}
