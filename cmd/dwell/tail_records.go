package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/topicscan"
)

// tailOptions are dwell tail's settings.
type tailOptions struct {
	Topic string
	// Partitions to read; empty: every partition (or, with Key, the one the key goes to).
	Partitions []int32
	// Offset is where to start in each partition: end (the default: only new records), start,
	// or an offset.
	Offset string
	// Since starts each partition at its first record at or after this time: RFC 3339 or a
	// duration ago (90m, 2h, 7d), as dwell log and dwell reset read it. Not with Offset.
	Since string
	// Key prints only the records with this key (with KeySet; an empty key is a key too).
	// Without Partitions only the partition Kafka's default partitioner (murmur2) gives the key
	// is read, as dwell produce and the Java client place keys.
	Key    string
	KeySet bool
	Count  int       // stop after this many records printed; 0: until ctx ends
	Now    time.Time // for Since; default time.Now()
}

// tailRecords prints a topic's committed records (read_committed) as JSON, one per line
// (topicscan.Record), from where o says, until o.Count records or ctx ends. A missing topic, a
// partition the topic does not have and unreachable brokers are errors, within seconds.
// It replaces cmdTail's body from kgo.NewClient on (--from-start is Offset "start").
func tailRecords(ctx context.Context, conn connectOptions, o tailOptions, stdout io.Writer) error {
	if o.Topic == "" {
		return usageError{errors.New("tail: name a topic: dwell tail TOPIC [flags]")}
	}
	if o.Count < 0 {
		return usageError{errors.New("tail: --count must not be negative")}
	}
	if o.Offset != "" && o.Since != "" {
		return usageError{errors.New("tail: --offset and --since both say where to start; pass one")}
	}
	start := kgo.NewOffset().AtEnd()
	switch o.Offset {
	case "", "end":
	case "start":
		start = kgo.NewOffset().AtStart()
	default:
		n, err := strconv.ParseInt(o.Offset, 10, 64)
		if err != nil || n < 0 {
			return usageError{fmt.Errorf("tail: --offset %q: use start, end or an offset (0 or more)", o.Offset)}
		}
		start = kgo.NewOffset().At(n)
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	since, err := parseWhen(o.Since, now)
	if err != nil {
		return usageError{fmt.Errorf("tail: --since: %w", err)}
	}

	_, adm, err := connectKafka(ctx, conn)
	if err != nil {
		return err
	}
	defer adm.Close()
	details, err := requireTopics(ctx, adm, false, o.Topic)
	if err != nil {
		return err
	}
	n := int32(len(details[o.Topic].Partitions))
	parts := slices.Clone(o.Partitions)
	for _, p := range parts {
		if p < 0 || p >= n {
			return usageError{fmt.Errorf("tail: topic %q has partitions 0 to %d, not %d", o.Topic, n-1, p)}
		}
	}
	if len(parts) == 0 && o.KeySet {
		parts = []int32{pipeline.KafkaPartition([]byte(o.Key), n)}
	}
	if len(parts) == 0 {
		for p := range n {
			parts = append(parts, p)
		}
	}
	offsets := map[int32]kgo.Offset{}
	for _, p := range parts {
		offsets[p] = start
	}
	// An offset past a partition's end would be reset to its start by the client, silently:
	// say so instead.
	if n, err := strconv.ParseInt(o.Offset, 10, 64); err == nil {
		ends, err := adm.ListEndOffsets(ctx, o.Topic)
		if err != nil {
			return fmt.Errorf("tail: end offsets of %s: %w", o.Topic, err)
		}
		for _, p := range parts {
			if e, ok := ends.Lookup(o.Topic, p); ok && n > e.Offset {
				return fmt.Errorf("tail: --offset %d is past the end of %s partition %d (next offset %d); use --offset end to wait for new records", n, o.Topic, p, e.Offset)
			}
		}
	}
	if !since.IsZero() {
		listed, err := adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), o.Topic)
		if err != nil {
			return fmt.Errorf("tail: offsets after %s: %w", since.Format(time.RFC3339), err)
		}
		for _, p := range parts {
			lo, ok := listed.Lookup(o.Topic, p)
			switch {
			case !ok || lo.Err != nil:
				return fmt.Errorf("tail: offsets after %s: partition %d: %v", since.Format(time.RFC3339), p, lo.Err)
			case lo.Offset < 0: // no record at or after it
				offsets[p] = kgo.NewOffset().AtEnd()
			default:
				offsets[p] = kgo.NewOffset().At(lo.Offset)
			}
		}
	}

	cl, _, err := connectKafka(ctx, conn, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	enc := json.NewEncoder(stdout)
	printed := 0
	for ctx.Err() == nil && (o.Count == 0 || printed < o.Count) {
		fetches := cl.PollFetches(ctx)
		if errs := fetches.Errors(); len(errs) > 0 && ctx.Err() == nil {
			return fmt.Errorf("tail: %s partition %d: %w", errs[0].Topic, errs[0].Partition, errs[0].Err)
		}
		var err error
		fetches.EachRecord(func(r *kgo.Record) {
			if err != nil || (o.Count > 0 && printed >= o.Count) || (o.KeySet && string(r.Key) != o.Key) {
				return
			}
			printed++
			err = enc.Encode(topicscan.Record(r))
		})
		if err != nil {
			return fmt.Errorf("tail: %w", err)
		}
	}
	return nil
}

// parsePartitions reads --partition: comma-separated partition numbers.
func parsePartitions(s string) ([]int32, error) {
	var out []int32
	for _, f := range splitList(s) {
		p, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32)
		if err != nil || p < 0 {
			return nil, usageError{fmt.Errorf("--partition %q: use partition numbers, e.g. 0 or 0,3", s)}
		}
		out = append(out, int32(p))
	}
	return out, nil
}
