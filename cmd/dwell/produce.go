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

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/pipeline/topicscan"
)

// cmdProduce writes the web-tracking generator's records to a topic of any Kafka at a target
// rate, keyed by profile (or session) as a collector would.
func cmdProduce(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("produce", stderr)
	brokers := bindBrokers(fs)
	topic := fs.String("topic", "events", "topic to produce to")
	rate := fs.Int("rps", 1000, "records per second of wall-clock time (0: as fast as possible); event time keeps pace")
	count := fs.Int("count", 0, "stop after this many records (0: until Ctrl-C)")
	kafka := bindKafka(fs)
	var web bench.WebConfig
	bindWeb(fs, &web)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *rate < 0 || *count < 0 {
		return usageError{errors.New("produce: --rps and --count must not be negative")}
	}
	if web.Start.IsZero() || web.Start.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		web.Start = time.Now().UTC()
	}
	if *rate > 0 {
		web.Rate = float64(*rate) // event time runs with the wall clock
	}
	g, err := bench.NewWeb(web)
	if err != nil {
		return usageError{err}
	}
	kopts, err := kafka.opts()
	if err != nil {
		return usageError{err}
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(splitList(*brokers)...), kgo.DefaultProduceTopic(*topic),
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
	for *count == 0 || sent < *count {
		if ctx.Err() != nil {
			break
		}
		r := g.Next(nil)
		cl.Produce(ctx, &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)}, promise)
		sent++
		if *rate > 0 && sent%100 == 0 {
			if ahead := time.Duration(sent)*time.Second/time.Duration(*rate) - time.Since(start); ahead > 0 {
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
		return fmt.Errorf("produce: %w; check --brokers and that topic %q exists", *err, *topic)
	}
	fmt.Fprintf(stderr, "dwell: produced %d records to %s in %s\n", sent, *topic, time.Since(start).Round(time.Millisecond))
	return nil
}

// cmdTail prints the committed records of a topic as JSON, one per line.
func cmdTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("tail", stderr)
	brokers := bindBrokers(fs)
	fromStart := fs.Bool("from-start", false, "start at the oldest record instead of the newest")
	count := fs.Int("count", 0, "stop after this many records (0: until Ctrl-C)")
	kafka := bindKafka(fs)
	var topicArgs []string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		topicArgs, args = args[:1], args[1:]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(topicArgs) == 0 {
		return usageError{errors.New("tail: name a topic: dwell tail TOPIC [flags]")}
	}
	start := kgo.NewOffset().AtEnd()
	if *fromStart {
		start = kgo.NewOffset().AtStart()
	}
	kopts, err := kafka.opts()
	if err != nil {
		return usageError{err}
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(splitList(*brokers)...), kgo.ConsumeTopics(topicArgs[0]),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(start)}, kopts...)...)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	defer cl.Close()
	enc := json.NewEncoder(stdout)
	n := 0
	for ctx.Err() == nil && (*count == 0 || n < *count) {
		fetches := cl.PollFetches(ctx)
		if errs := fetches.Errors(); len(errs) > 0 && ctx.Err() == nil {
			return fmt.Errorf("tail: %s: %w", topicArgs[0], errs[0].Err)
		}
		var err error
		fetches.EachRecord(func(r *kgo.Record) {
			if err != nil || (*count > 0 && n >= *count) {
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
