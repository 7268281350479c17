package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dwellhq/dwell/bench"
)

const benchLong = `dwell bench measures dwell on a generated workload and prints what it measured.

collect measures dwell collect: keep-alive clients in the same process post 10-event /track
batches (--level kfake, default, or broker).

Levels (--level, web and nexmark): operators (in-process, one goroutine; default), kfake (the
live processor on an embedded test broker), broker (the live processor on the brokers of
--brokers or DWELL_BROKERS, with uniquely named topics, deleted afterwards).`

// benchCommon are the flags every workload has.
type benchCommon struct {
	json, cpuprofile string
}

func bindBenchCommon(fs *pflag.FlagSet, c *benchCommon) {
	inGroup(fs, groupBench, func() {
		fs.StringVar(&c.json, "json", "", "also write the result to this `FILE` as JSON")
		fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the run to this `FILE`")
	})
}

func bindPipeline(fs *pflag.FlagSet, c *bench.PipelineConfig) {
	c.EnsureDefaults()
	inGroup(fs, groupKafka, func() {
		fs.Var(&brokerList{&c.Brokers}, "brokers", "`HOST:PORT,...`: the seed brokers of --level broker (default: DWELL_TEST_BROKERS)")
		fs.IntVar(&c.Partitions, "partitions", c.Partitions, "partitions of the input and output topics (pipeline levels)")
		fs.StringVar(&c.Guarantee, "guarantee", c.Guarantee, "`MODE`: exactly-once or at-least-once (pipeline levels)")
		fs.StringVar(&c.Compression, "compression", c.Compression, "`CODEC`: lz4, zstd, snappy or none (pipeline levels)")
		fs.IntVar(&c.MaxPollRecords, "max-poll-records", c.MaxPollRecords, "records per cycle, one transaction (pipeline levels)")
	})
}

// brokerList is bench's --brokers: a list whose default, empty, leaves bench to
// DWELL_TEST_BROKERS.
type brokerList struct{ l *[]string }

func (b brokerList) String() string     { return strings.Join(*b.l, ",") }
func (b brokerList) Type() string       { return "list" }
func (b brokerList) Set(s string) error { *b.l = splitList(s); return nil }

func newBenchCmd(e *cliEnv) *cobra.Command {
	cmd := parentCmd("bench", "measure throughput, latency and memory")
	cmd.Long = benchLong
	add := func(use, short string, bind func(fs *pflag.FlagSet) (run func(context.Context) (*bench.Result, error), validate func() error, level *string)) {
		c := &cobra.Command{Use: use, Short: short, Args: noArgs}
		fs := c.Flags()
		var common benchCommon
		run, validate, level := bind(fs)
		bindBenchCommon(fs, &common)
		c.RunE = func(c *cobra.Command, _ []string) error {
			if b := c.Flags().Lookup("brokers"); b != nil && level != nil && *level == bench.LevelBroker &&
				b.Value.String() == "" && len(bench.BrokersFromEnv()) == 0 {
				return usageError{errBenchBrokers}
			}
			return runBench(c.Context(), e.stdout, common, run, validate, level)
		}
		cmd.AddCommand(c)
	}
	add("web [flags]", "web tracking: decode + sessionize against a warm state", func(fs *pflag.FlagSet) (func(context.Context) (*bench.Result, error), func() error, *string) {
		// The defaults of the README's figures: 1M known profiles, 250 events/s of event time.
		cfg := &bench.WebRunConfig{Operators: bench.OperatorsConfig{Web: bench.WebConfig{Profiles: 1_000_000, Rate: 250}}}
		inGroup(fs, groupBench, func() {
			fs.StringVar(&cfg.Level, "level", bench.LevelOperators, "`LEVEL`: operators, kfake or broker")
			fs.Int64Var(&cfg.Events, "events", 1_000_000, "records measured")
			fs.BoolVar(&cfg.Encode, "encode", true, "encode every output as JSON (operators level; bytes out)")
		})
		bindWeb(fs, &cfg.Operators.Web)
		bindOperators(fs, &cfg.Operators.Operators)
		bindPipeline(fs, &cfg.Pipeline)
		validate := func() error {
			return errors.Join(cfg.Operators.Web.Validate(), cfg.Operators.Operators.Validate(), positive("events", cfg.Events))
		}
		return func(ctx context.Context) (*bench.Result, error) { return bench.RunWeb(ctx, *cfg) }, validate, &cfg.Level
	})
	add("nexmark [flags]", "Nexmark Query 11 (bids per bidder session, 10s gap)", func(fs *pflag.FlagSet) (func(context.Context) (*bench.Result, error), func() error, *string) {
		cfg := &bench.NexmarkRunConfig{}
		cfg.Q11.EnsureDefaults()
		n := &cfg.Q11.Nexmark
		inGroup(fs, groupBench, func() {
			fs.StringVar(&cfg.Level, "level", bench.LevelOperators, "`LEVEL`: operators, kfake or broker")
			fs.Int64Var(&cfg.Events, "events", 10_000_000, "Nexmark events measured (persons, auctions and bids)")
			fs.BoolVar(&cfg.Q11.Encode, "encode", true, "encode every output as JSON (operators level; bytes out)")
		})
		inGroup(fs, groupGen, func() {
			fs.Uint64Var(&n.Seed, "seed", n.Seed, "random seed: the same seed gives the same stream")
			fs.Float64Var(&n.Rate, "rate", n.Rate, "events per second of event time (the Nexmark V2 guide uses 100,000)")
			fs.IntVar(&n.ActivePeople, "active-people", n.ActivePeople, "people who bid and sell at any time")
			fs.IntVar(&n.HotBiddersRatio, "hot-bidders-ratio", n.HotBiddersRatio, "1 - 1/ratio of bids are by a hot bidder")
			fs.IntVar(&n.HotAuctionRatio, "hot-auction-ratio", n.HotAuctionRatio, "1 - 1/ratio of bids are for a hot auction")
		})
		inGroup(fs, groupSessions, func() {
			fs.DurationVar(&cfg.Q11.Gap, "gap", cfg.Q11.Gap, "session gap")
			fs.DurationVar(&cfg.Q11.MaxOutOfOrderness, "max-out-of-orderness", cfg.Q11.MaxOutOfOrderness, "how far the watermark trails (Flink's Nexmark DDL: 4s)")
		})
		bindPipeline(fs, &cfg.Pipeline)
		validate := func() error { return errors.Join(n.Validate(), positive("events", cfg.Events)) }
		return func(ctx context.Context) (*bench.Result, error) {
			cfg.Q11.Warmup = 0 // follow --rate, --gap and --max-out-of-orderness
			return bench.RunNexmark(ctx, *cfg)
		}, validate, &cfg.Level
	})
	add("collect [flags]", "dwell collect's /track under keep-alive clients in the same process", func(fs *pflag.FlagSet) (func(context.Context) (*bench.Result, error), func() error, *string) {
		cfg := &bench.CollectConfig{}
		cfg.EnsureDefaults()
		inGroup(fs, groupBench, func() {
			fs.StringVar(&cfg.Level, "level", cfg.Level, "`LEVEL`: kfake or broker")
			fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "keep-alive connections, one request at a time each")
			fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to send")
			fs.Int64Var(&cfg.Requests, "requests", 0, "stop after this many requests (0: --duration alone)")
			fs.IntVar(&cfg.EventsPerRequest, "events-per-request", cfg.EventsPerRequest, "events in each /track batch")
			fs.IntVar(&cfg.Profiles, "profiles", cfg.Profiles, "profiles the requests come from (a tenth anonymous)")
			fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "how long the clients send before the measured stretch")
			fs.StringVar(&cfg.Client, "client", cfg.Client, "`CLIENT`: raw (HTTP/1.1 by hand, cheap) or net/http")
		})
		inGroup(fs, groupKafka, func() {
			fs.Var(&brokerList{&cfg.Brokers}, "brokers", "`HOST:PORT,...`: the seed brokers of --level broker (default: DWELL_TEST_BROKERS)")
			fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "partitions of the input topic")
			fs.StringVar(&cfg.Compression, "compression", cfg.Compression, "`CODEC` of the collector's producer: lz4, zstd, snappy or none")
			fs.DurationVar(&cfg.Linger, "linger", 0, "replace the collector's producer linger (0: dwell collect's own)")
		})
		validate := func() error {
			if cfg.Level == bench.LevelOperators {
				return errors.New("bench: collect runs at --level kfake or broker")
			}
			if cfg.Client != "raw" && cfg.Client != "net/http" {
				return fmt.Errorf("bench: --client %q: raw or net/http", cfg.Client)
			}
			return errors.Join(positive("clients", int64(cfg.Clients)), positive("events-per-request", int64(cfg.EventsPerRequest)),
				positive("profiles", int64(cfg.Profiles)), positive("duration", int64(cfg.Duration)))
		}
		return func(ctx context.Context) (*bench.Result, error) { return bench.RunCollect(ctx, *cfg) }, validate, &cfg.Level
	})
	add("restore [flags]", "changelog replay, restore from Pebble, cold reads", func(fs *pflag.FlagSet) (func(context.Context) (*bench.Result, error), func() error, *string) {
		cfg := &bench.RestoreConfig{}
		cfg.EnsureDefaults()
		inGroup(fs, groupBench, func() {
			fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "keys in the partition, each with an open visit and session (10M needs about 25 GB for the load; see --skip-load)")
			fs.IntVar(&cfg.ColdReads, "cold-reads", cfg.ColdReads, "random point reads from Pebble")
			fs.BoolVar(&cfg.SkipLoad, "skip-load", cfg.SkipLoad, "do not restore into memory (replay and cold reads only)")
			fs.StringVar(&cfg.Dir, "dir", "", "Pebble `DIR` (default: a temporary one, removed afterwards)")
		})
		validate := func() error {
			return errors.Join(positive("keys", int64(cfg.Keys)), positive("cold-reads", int64(cfg.ColdReads)+1))
		}
		return func(ctx context.Context) (*bench.Result, error) { return bench.RunRestore(ctx, *cfg) }, validate, nil
	})
	return cmd
}

var errBenchBrokers = errors.New("bench: --level broker needs brokers: pass --brokers HOST:PORT,... (or set DWELL_BROKERS)")

func runBench(ctx context.Context, stdout io.Writer, common benchCommon, run func(context.Context) (*bench.Result, error), validate func() error, level *string) error {
	if err := validate(); err != nil {
		return usageError{err}
	}
	if level != nil {
		switch *level {
		case bench.LevelOperators, bench.LevelKfake, bench.LevelBroker:
		default:
			return usageError{fmt.Errorf("bench: unknown level %q (operators, kfake, broker)", *level)}
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
	if errors.Is(err, bench.ErrNoBrokers) {
		return usageError{errBenchBrokers}
	}
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
