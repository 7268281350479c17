package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/dwellhq/dwell/bench"
)

const benchUsage = `dwell bench measures dwell on a generated workload and prints what it measured.

Usage:
  dwell bench web [flags]       web tracking: decode + sessionize against a warm state
  dwell bench nexmark [flags]   Nexmark Query 11 (bids per bidder session, 10s gap)
  dwell bench restore [flags]   changelog replay, restore from Pebble, cold reads

Levels (--level, web and nexmark): operators (in-process, one goroutine; default), kfake (the
live processor on an embedded test broker), broker (the live processor on the brokers in
DWELL_TEST_BROKERS, with uniquely named topics, deleted afterwards).

Run 'dwell bench WORKLOAD -h' for a workload's flags.
`

// benchCommon are the flags every workload has.
type benchCommon struct {
	json, cpuprofile string
}

func bindBenchCommon(fs *flag.FlagSet, c *benchCommon) {
	fs.StringVar(&c.json, "json", "", "also write the result to this file as JSON")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the run to this file")
}

func bindPipeline(fs *flag.FlagSet, c *bench.PipelineConfig) {
	c.EnsureDefaults()
	fs.IntVar(&c.Partitions, "partitions", c.Partitions, "partitions of the input and output topics (pipeline levels)")
	fs.StringVar(&c.Guarantee, "guarantee", c.Guarantee, "exactly-once or at-least-once (pipeline levels)")
	fs.StringVar(&c.Compression, "compression", c.Compression, "lz4, zstd, snappy or none (pipeline levels)")
	fs.IntVar(&c.MaxPollRecords, "max-poll-records", c.MaxPollRecords, "records per cycle, one transaction (pipeline levels)")
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, benchUsage)
			return errHelp
		}
		fmt.Fprint(stderr, benchUsage)
		return usageError{errors.New("bench: name a workload: web, nexmark or restore")}
	}
	workload, args := args[0], args[1:]
	fs := newFlags("bench "+workload, stderr)
	var common benchCommon
	bindBenchCommon(fs, &common)
	var run func(context.Context) (*bench.Result, error)
	var validate func() error
	switch workload {
	case "web":
		// The defaults of the README's figures: 1M known profiles, 250 events/s of event time.
		cfg := bench.WebRunConfig{Operators: bench.OperatorsConfig{Web: bench.WebConfig{Profiles: 1_000_000, Rate: 250}}}
		fs.StringVar(&cfg.Level, "level", bench.LevelOperators, "operators, kfake or broker")
		fs.Int64Var(&cfg.Events, "events", 1_000_000, "records measured")
		fs.BoolVar(&cfg.Encode, "encode", true, "encode every output as JSON (operators level; bytes out)")
		bindWeb(fs, &cfg.Operators.Web)
		bindOperators(fs, &cfg.Operators.Operators)
		bindPipeline(fs, &cfg.Pipeline)
		validate = func() error {
			return errors.Join(cfg.Operators.Web.Validate(), cfg.Operators.Operators.Validate(), positive("events", cfg.Events))
		}
		run = func(ctx context.Context) (*bench.Result, error) { return bench.RunWeb(ctx, cfg) }
	case "nexmark":
		var cfg bench.NexmarkRunConfig
		cfg.Q11.EnsureDefaults()
		n := &cfg.Q11.Nexmark
		fs.StringVar(&cfg.Level, "level", bench.LevelOperators, "operators, kfake or broker")
		fs.Int64Var(&cfg.Events, "events", 10_000_000, "Nexmark events measured (persons, auctions and bids)")
		fs.Uint64Var(&n.Seed, "seed", n.Seed, "random seed: the same seed gives the same stream")
		fs.Float64Var(&n.Rate, "rate", n.Rate, "events per second of event time (the Nexmark V2 guide uses 100,000)")
		fs.IntVar(&n.ActivePeople, "active-people", n.ActivePeople, "people who bid and sell at any time")
		fs.IntVar(&n.HotBiddersRatio, "hot-bidders-ratio", n.HotBiddersRatio, "1 - 1/ratio of bids are by a hot bidder")
		fs.IntVar(&n.HotAuctionRatio, "hot-auction-ratio", n.HotAuctionRatio, "1 - 1/ratio of bids are for a hot auction")
		fs.DurationVar(&cfg.Q11.Gap, "gap", cfg.Q11.Gap, "session gap")
		fs.DurationVar(&cfg.Q11.MaxOutOfOrderness, "max-out-of-orderness", cfg.Q11.MaxOutOfOrderness, "how far the watermark trails (Flink's Nexmark DDL: 4s)")
		fs.BoolVar(&cfg.Q11.Encode, "encode", true, "encode every output as JSON (operators level; bytes out)")
		bindPipeline(fs, &cfg.Pipeline)
		validate = func() error { return errors.Join(n.Validate(), positive("events", cfg.Events)) }
		run = func(ctx context.Context) (*bench.Result, error) {
			cfg.Q11.Warmup = 0 // follow --rate, --gap and --max-out-of-orderness
			return bench.RunNexmark(ctx, cfg)
		}
	case "restore":
		var cfg bench.RestoreConfig
		cfg.EnsureDefaults()
		fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "keys in the partition, each with an open visit and session (10M needs about 25 GB for the load; see --skip-load)")
		fs.IntVar(&cfg.ColdReads, "cold-reads", cfg.ColdReads, "random point reads from Pebble")
		fs.BoolVar(&cfg.SkipLoad, "skip-load", cfg.SkipLoad, "do not restore into memory (replay and cold reads only)")
		fs.StringVar(&cfg.Dir, "dir", "", "Pebble directory (default: a temporary one, removed afterwards)")
		validate = func() error {
			return errors.Join(positive("keys", int64(cfg.Keys)), positive("cold-reads", int64(cfg.ColdReads)+1))
		}
		run = func(ctx context.Context) (*bench.Result, error) { return bench.RunRestore(ctx, cfg) }
	default:
		fmt.Fprint(stderr, benchUsage)
		return usageError{fmt.Errorf("bench: unknown workload %q (web, nexmark, restore)", workload)}
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := validate(); err != nil {
		return usageError{err}
	}
	if lv := fs.Lookup("level"); lv != nil {
		switch l := lv.Value.String(); l {
		case bench.LevelOperators, bench.LevelKfake:
		case bench.LevelBroker:
			if len(bench.BrokersFromEnv()) == 0 {
				return usageError{bench.ErrNoBrokers}
			}
		default:
			return usageError{fmt.Errorf("bench: unknown level %q (operators, kfake, broker)", l)}
		}
	}
	if common.cpuprofile != "" {
		f, err := os.Create(common.cpuprofile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	r, err := run(ctx)
	if err != nil {
		return err
	}
	if err := r.Print(stdout); err != nil {
		return err
	}
	if common.json != "" {
		return r.WriteJSON(common.json)
	}
	return nil
}

func positive(name string, v int64) error {
	if v < 1 {
		return fmt.Errorf("bench: --%s must be positive, got %d", name, v)
	}
	return nil
}
