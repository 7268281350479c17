package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dwellhq/dwell/pipeline/eventlog"
)

// cmdLog searches the event log and prints the matching entries, oldest first (pipeline/eventlog).
func cmdLog(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("log", stderr)
	cfg := eventlog.DefaultConfig()
	brokers := bindBrokers(fs)
	fs.StringVar(&cfg.Topic, "topic", cfg.Topic, "the event-log topic")
	fs.StringVar(&cfg.Type, "type", cfg.Type, "event type; * matches any run of characters (cart-*)")
	fs.StringVar(&cfg.Profile, "profile", cfg.Profile, "profile id (the record key: the session id for profile-less events)")
	fs.StringVar(&cfg.State, "state", cfg.State, "processed, error, ignored, dead-lettered, late or transferred")
	fs.StringVar(&cfg.ID, "id", cfg.ID, "event id")
	fs.StringVar(&cfg.Rule, "rule", cfg.Rule, "only events this rule fired on")
	since := fs.String("since", "1h", "entries logged from this time: RFC 3339 or a duration ago (90m, 2h, 7d); empty: the whole log")
	until := fs.String("until", "", "entries logged before this time: RFC 3339 or a duration ago")
	fs.BoolVar(&cfg.JSON, "json", cfg.JSON, "print the entries as JSON lines, as logged")
	fs.IntVar(&cfg.Limit, "limit", cfg.Limit, "print at most the N most recent matches (0: all)")
	kafka := bindKafka(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.Since, cfg.Until, err = parseWindow(*since, *until, time.Now()); err != nil {
		return usageError{fmt.Errorf("log: %w", err)}
	}
	if cfg.ClientOpts, err = kafka.opts(); err != nil {
		return usageError{err}
	}
	cfg.Brokers = splitList(*brokers)
	_, err = eventlog.Search(ctx, cfg, stdout, stderr)
	if errors.Is(err, eventlog.ErrConfig) {
		return usageError{err}
	}
	return err
}
