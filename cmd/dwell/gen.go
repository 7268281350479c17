package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dwellhq/dwell/bench"
)

func bindWeb(fs *pflag.FlagSet, c *bench.WebConfig) {
	c.EnsureDefaults()
	inGroup(fs, groupGen, func() {
		fs.Uint64Var(&c.Seed, "seed", c.Seed, "random seed: the same seed gives the same stream")
		fs.IntVar(&c.Profiles, "profiles", c.Profiles, "distinct profiles")
		fs.Float64Var(&c.Rate, "rate", c.Rate, "events per second of event time")
		fs.Float64Var(&c.VisitEvents, "visit-events", c.VisitEvents, "mean events per visit")
		fs.Float64Var(&c.MalformedShare, "malformed", c.MalformedShare, "share of malformed records")
		fs.Float64Var(&c.LateShare, "late", c.LateShare, "share of events sent an hour late")
		fs.IntVar(&c.IdleEvery, "idle-every", c.IdleEvery, "insert an idle gap after every N events (0: never)")
		fs.DurationVar(&c.IdleGap, "idle-gap", c.IdleGap, "length of each idle gap in event time (default 45m)")
		fs.IntVar(&c.EventBytes, "event-bytes", c.EventBytes, "pad events to at least this many `BYTES`")
	})
}

func newGenCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gen [--events N] [--out FILE] [flags]",
		Short: "write a generated web-tracking stream as JSON Lines",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	var cfg bench.WebConfig
	var events *int
	var out *string
	inGroup(fs, groupIO, func() {
		events = fs.Int("events", 100_000, "number of records to write")
		out = fs.String("out", "-", "output `FILE`, or - for standard output")
	})
	bindWeb(fs, &cfg)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runGen(cmd.Context(), e.stdout, cfg, *events, *out)
	}
	return cmd
}

func runGen(ctx context.Context, stdout io.Writer, cfg bench.WebConfig, events int, out string) error {
	if events < 0 {
		return usageError{fmt.Errorf("gen: --events must not be negative, got %d", events)}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	w := stdout
	if out != "-" {
		f, err := os.Create(out)
		if err != nil {
			return fmt.Errorf("gen: %w", err)
		}
		defer f.Close()
		w = f
	}
	err := writeWeb(ctx, cfg, events, w)
	if f, ok := w.(*os.File); ok && out != "-" {
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
