package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/pipeline/topicscan"
)

// newProduceCmd is dwell produce: it writes the web-tracking generator's records to a topic of
// any Kafka at a target rate, keyed by profile (or session) as a collector would.
func newProduceCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "produce --brokers HOST:PORT --topic TOPIC [--rps N] [flags]",
		Short: "produce generated web tracking into any Kafka",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	brokers := bindBrokers(fs)
	kafka := bindKafka(fs)
	var (
		topic       *string
		rate, count *int
		web         bench.WebConfig
	)
	inGroup(fs, groupIO, func() {
		topic = fs.String("topic", "events", "`TOPIC` to produce to")
		rate = fs.Int("rps", 1000, "records per second of wall-clock time (0: as fast as possible); event time keeps pace")
		count = fs.Int("count", 0, "stop after this many records (0: until Ctrl-C)")
	})
	bindWeb(fs, &web)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runProduce(cmd.Context(), e.stderr, kafka, *brokers, *topic, *rate, *count, web)
	}
	return cmd
}

func runProduce(ctx context.Context, stderr io.Writer, kafka *kafkaFlags, brokers, topic string, rate, count int, web bench.WebConfig) error {
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
	kopts, err := kafka.opts()
	if err != nil {
		return usageError{err}
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(splitList(brokers)...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerBatchCompression(kgo.ZstdCompression())}, kopts...)...)
	if err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	defer cl.Close()
	var firstErr atomic.Pointer[error] // promises run on the client's goroutines
	sent := 0
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			firstErr.CompareAndSwap(nil, &err)
		}
	}
	start := time.Now()
	for count == 0 || sent < count {
		if ctx.Err() != nil {
			break
		}
		r := g.Next(nil)
		cl.Produce(ctx, &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)}, promise)
		sent++
		if rate > 0 && sent%100 == 0 {
			if ahead := time.Duration(sent)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
				select {
				case <-time.After(ahead):
				case <-ctx.Done():
				}
			}
		}
	}
	if err := cl.Flush(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	if err := firstErr.Load(); err != nil {
		return fmt.Errorf("produce: %w; check --brokers and that topic %q exists", *err, topic)
	}
	fmt.Fprintf(stderr, "dwell: produced %d records to %s in %s\n", sent, topic, time.Since(start).Round(time.Millisecond))
	return nil
}

// newTailCmd is dwell tail: it prints the committed records of a topic as JSON, one per line.
func newTailCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tail TOPIC [--brokers HOST:PORT] [--from-start] [flags]",
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
		fromStart *bool
		count     *int
	)
	inGroup(fs, groupSelect, func() {
		fromStart = fs.Bool("from-start", false, "start at the oldest record instead of the newest")
		count = fs.Int("count", 0, "stop after this many records (0: until Ctrl-C)")
	})
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return runTail(cmd.Context(), e.stdout, kafka, *brokers, args[0], *fromStart, *count)
	}
	return cmd
}

func runTail(ctx context.Context, stdout io.Writer, kafka *kafkaFlags, brokers, topic string, fromStart bool, count int) error {
	topicArgs := []string{topic}
	start := kgo.NewOffset().AtEnd()
	if fromStart {
		start = kgo.NewOffset().AtStart()
	}
	kopts, err := kafka.opts()
	if err != nil {
		return usageError{err}
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(splitList(brokers)...), kgo.ConsumeTopics(topicArgs[0]),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(start)}, kopts...)...)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	defer cl.Close()
	enc := json.NewEncoder(stdout)
	n := 0
	for ctx.Err() == nil && (count == 0 || n < count) {
		fetches := cl.PollFetches(ctx)
		if errs := fetches.Errors(); len(errs) > 0 && ctx.Err() == nil {
			return fmt.Errorf("tail: %s: %w", topicArgs[0], errs[0].Err)
		}
		var err error
		fetches.EachRecord(func(r *kgo.Record) {
			if err != nil || (count > 0 && n >= count) {
				return
			}
			n++
			err = enc.Encode(topicscan.Record(r))
		})
		if err != nil {
			return fmt.Errorf("tail: %w", err)
		}
	}
	return nil
}
