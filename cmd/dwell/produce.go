package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/dwellhq/dwell/bench"
)

// newProduceCmd is dwell produce: it writes the web-tracking generator's records to a topic of
// any Kafka at a target rate, keyed by profile (or session) as a collector would, or, with
// --file, replays a JSON Lines file.
func newProduceCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "produce --topic TOPIC [--rps N | --file FILE] [flags]",
		Short: "produce generated web tracking, or replay a JSON Lines file, into any Kafka",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	brokers := bindBrokers(fs)
	kafka := bindKafka(fs)
	var (
		topic, file *string
		rate, count *int
		web         bench.WebConfig
	)
	inGroup(fs, groupIO, func() {
		topic = fs.String("topic", "events", "`TOPIC` to produce to")
		file = fs.String("file", "", "replay this JSON Lines `FILE` (- for standard input) instead of generating: one record per line, keyed by profile id")
		rate = fs.Int("rps", 1000, "generated records per second of wall-clock time (0: as fast as possible); event time keeps pace")
		count = fs.Int("count", 0, "stop after this many generated records (0: until Ctrl-C)")
	})
	bindWeb(fs, &web)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		conn, err := kafka.conn(*brokers)
		if err != nil {
			return err
		}
		if *file != "" {
			if fs.Changed("rps") || fs.Changed("count") {
				return usageError{errors.New("produce: --rps and --count are for generated records; --file replays the whole file")}
			}
			in, err := openProduceInput(*file, e.stdin)
			if err != nil {
				return err
			}
			defer in.Close()
			name := *file
			if name == "-" {
				name = "standard input"
			}
			_, err = produceFile(cmd.Context(), conn, produceFileOptions{Topic: *topic, Name: name}, in, e.stderr)
			return err
		}
		return runProduce(cmd.Context(), e.stderr, conn, *topic, *rate, *count, web)
	}
	return cmd
}

func runProduce(ctx context.Context, stderr io.Writer, conn connectOptions, topic string, rate, count int, web bench.WebConfig) error {
	if rate < 0 || count < 0 {
		return usageError{errors.New("produce: --rps and --count must not be negative")}
	}
	if web.Start.IsZero() || web.Start.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		web.Start = time.Now().UTC()
	}
	if rate > 0 {
		web.Rate = float64(rate) // event time runs with the wall clock
	}
	g, err := bench.NewWeb(web)
	if err != nil {
		return usageError{err}
	}
	return produceGenerated(ctx, conn, produceGeneratedOptions{Topic: topic, Rate: rate, Count: count}, g, stderr)
}

// newTailCmd is dwell tail: it prints the committed records of a topic as JSON, one per line.
func newTailCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tail TOPIC [--offset start|end|N | --since WHEN] [--partition P,...] [--key K] [--count N]",
		Short: "print a topic's committed records as JSON lines",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("tail: name a topic: dwell tail TOPIC [flags]")}
			}
			return maxArgs(1, "TOPIC")(cmd, args)
		},
	}
	fs := cmd.Flags()
	brokers := bindBrokers(fs)
	kafka := bindKafka(fs)
	var (
		fromStart              *bool
		count                  *int
		offset, since, key, ps *string
	)
	inGroup(fs, groupSelect, func() {
		offset = fs.String("offset", "end", "where each partition starts: start, end (only new records) or an `OFFSET`")
		fromStart = fs.Bool("from-start", false, "the same as --offset start")
		since = fs.String("since", "", "start each partition at its first record at or after `WHEN`: RFC 3339 or a duration ago (90m, 2h, 7d)")
		ps = fs.String("partition", "", "read only these `PARTITIONS` (comma-separated; default all)")
		key = fs.String("key", "", "print only the records with this `KEY` (and, without --partition, read only the partition Kafka's default partitioner gives it)")
		count = fs.Int("count", 0, "stop after this many records (0: until Ctrl-C)")
	})
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		conn, err := kafka.conn(*brokers)
		if err != nil {
			return err
		}
		o := tailOptions{Topic: args[0], Offset: *offset, Since: *since, Key: *key, KeySet: fs.Changed("key"), Count: *count}
		if *fromStart {
			if fs.Changed("offset") && *offset != "start" {
				return usageError{errors.New("tail: --from-start and --offset " + *offset + " disagree; pass one")}
			}
			o.Offset = "start"
		}
		if *since != "" && fs.Changed("offset") {
			return usageError{errors.New("tail: --since and --offset both say where to start; pass one")}
		}
		if *since != "" && !fs.Changed("offset") {
			o.Offset = ""
		}
		if *ps != "" {
			if o.Partitions, err = parsePartitions(*ps); err != nil {
				return usageError{fmt.Errorf("tail: --partition: %w", err)}
			}
		}
		return tailRecords(cmd.Context(), conn, o, e.stdout)
	}
	return cmd
}
