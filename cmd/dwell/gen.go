package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/dwellhq/dwell/bench"
)

func bindWeb(fs *flag.FlagSet, c *bench.WebConfig) {
	c.EnsureDefaults()
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed: the same seed gives the same stream")
	fs.IntVar(&c.Profiles, "profiles", c.Profiles, "distinct profiles")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "events per second of event time")
	fs.Float64Var(&c.VisitEvents, "visit-events", c.VisitEvents, "mean events per visit")
	fs.Float64Var(&c.MalformedShare, "malformed", c.MalformedShare, "share of malformed records")
	fs.Float64Var(&c.LateShare, "late", c.LateShare, "share of events sent an hour late")
	fs.IntVar(&c.IdleEvery, "idle-every", c.IdleEvery, "insert an idle gap after every N events (0: never)")
	fs.DurationVar(&c.IdleGap, "idle-gap", c.IdleGap, "length of each idle gap in event time (default 45m)")
	fs.IntVar(&c.EventBytes, "event-bytes", c.EventBytes, "pad events to at least this many bytes")
}

func cmdGen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("gen", stderr)
	var cfg bench.WebConfig
	bindWeb(fs, &cfg)
	events := fs.Int("events", 100_000, "number of records to write")
	out := fs.String("out", "-", "output file, or - for standard output")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *events < 0 {
		return usageError{fmt.Errorf("gen: --events must not be negative, got %d", *events)}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	w := stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("gen: %w", err)
		}
		defer f.Close()
		w = f
	}
	err := writeWeb(ctx, cfg, *events, w)
	if f, ok := w.(*os.File); ok && *out != "-" {
		err = errors.Join(err, f.Sync())
	}
	return err
}

// writeWeb writes n generated records as JSON Lines.
func writeWeb(ctx context.Context, cfg bench.WebConfig, n int, w io.Writer) error {
	g, err := bench.NewWeb(cfg)
	if err != nil {
		return usageError{err}
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var buf []byte
	for i := range n {
		if i&4095 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		rec := g.Next(buf[:0])
		buf = append(rec.Value, '\n')
		if _, err := bw.Write(buf); err != nil {
			return fmt.Errorf("gen: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	return nil
}
