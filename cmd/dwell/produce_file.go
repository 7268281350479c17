package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/operators"
)

// produceFileOptions are dwell produce --file's settings.
type produceFileOptions struct {
	Topic string
	// Name is the file's name in messages ("-" for standard input).
	Name string
	// MaxListedLines is how many line numbers of lines that are not JSON the summary lists
	// (default 10); all of them are counted.
	MaxListedLines int
}

// produceFileStats is what produceFile wrote.
type produceFileStats struct {
	Records int64 // records written (every line that is not blank)
	Bytes   int64 // bytes of their values
	// Keyed by profile id, by session id (a profile-less event), and without a key (neither, or
	// a line the decoder cannot read that far).
	ByProfile, BySession, Unkeyed int64
	WithEventTime                 int64   // records whose timestamp is the line's event time
	NotJSON                       int64   // lines that are not valid JSON, sent as they are
	NotJSONLines                  []int64 // their line numbers (from 1), the first MaxListedLines
	Blank                         int64   // blank lines, skipped as dwell process skips them
}

// openProduceInput opens path for produceFile; "-" is stdin (not closed).
func openProduceInput(path string, stdin io.Reader) (io.ReadCloser, error) {
	if path == "-" {
		return io.NopCloser(stdin), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("produce: %w", err)
	}
	return f, nil
}

// produceFile replays a JSON Lines file (what dwell gen writes and dwell process reads) into a
// topic, one record per line, in order:
//
//   - the key is the event's profile id, or its session id for a profile-less event, found by
//     dwell's own decoder (operators.Decoder), so a batch in Tracardi's shape is keyed by its
//     profile too; a line with neither has no key;
//   - the partition is Kafka's default partitioner's (murmur2 of the key, as the Java client
//     and dwell process --key-partitions), so the records of one key keep their order;
//   - the record timestamp is the line's event time where it has one, else the time it is sent;
//   - the producer is idempotent with acks=all (franz-go's defaults), so a retried batch is
//     written once and in order.
//
// A line that is not JSON is sent as it is and counted: dwell run dead-letters bad input itself
// (reason malformed-json, with the bytes as they were), and a replay must not filter what it
// replays. Blank lines are skipped, as dwell process skips them. Memory is bounded: the file is
// streamed, and at most 64 MiB of records wait for the brokers. A summary goes to stderr.
func produceFile(ctx context.Context, conn connectOptions, o produceFileOptions, in io.Reader, stderr io.Writer) (produceFileStats, error) {
	var st produceFileStats
	if o.Topic == "" {
		return st, usageError{errors.New("produce: --topic is empty")}
	}
	if o.MaxListedLines == 0 {
		o.MaxListedLines = 10
	}
	cl, adm, err := connectKafka(ctx, conn, kgo.DefaultProduceTopic(o.Topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // nil: Kafka's murmur2 hasher
		kgo.ProducerBatchCompression(kgo.ZstdCompression()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MaxBufferedBytes(64<<20))
	if err != nil {
		return st, err
	}
	defer cl.Close()
	if _, err := requireTopics(ctx, adm, false, o.Topic); err != nil {
		return st, err
	}

	dcfg := operators.Config{}
	dcfg.EnsureDefaults()
	dcfg.MaxEventBytes = math.MaxInt // the key of a large line too; dwell run applies its own limit
	dec := operators.NewDecoder(&dcfg)
	var firstErr atomic.Pointer[error] // promises run on the client's goroutines
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			firstErr.CompareAndSwap(nil, &err)
		}
	}
	start := time.Now()
	br := bufio.NewReaderSize(in, 1<<20)
	var ev operators.Event
	var readErr error
	for lineNo := int64(1); ; lineNo++ {
		if ctx.Err() != nil || firstErr.Load() != nil {
			break
		}
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			readErr = fmt.Errorf("produce: reading %s line %d: %w", o.Name, lineNo, err)
			break
		}
		value := bytes.TrimRight(line, "\r\n")
		if len(bytes.TrimSpace(value)) == 0 {
			if len(line) > 0 {
				st.Blank++
			}
			if err != nil { // io.EOF
				break
			}
			continue
		}
		rec := &kgo.Record{Value: value}
		derr := dec.Decode(&operators.Record{Topic: o.Topic, Value: value, Timestamp: operators.NoTimestamp}, &ev)
		switch {
		case len(ev.Profile) > 0:
			rec.Key = bytes.Clone(ev.Profile) // the decoder may reuse its buffers
			st.ByProfile++
		case len(ev.Session) > 0:
			rec.Key = bytes.Clone(ev.Session)
			st.BySession++
		default:
			st.Unkeyed++
		}
		// Decode found the event time (a batch's own, for a batch) unless it failed before it;
		// without a record timestamp a line with no time fails missing-time with Time 0.
		if (derr == nil || derr == operators.ErrBatch) && ev.Time > 0 {
			rec.Timestamp = time.UnixMilli(ev.Time)
			st.WithEventTime++
		}
		if derr != nil && derr.Reason == operators.ReasonMalformedJSON {
			st.NotJSON++
			if len(st.NotJSONLines) < o.MaxListedLines {
				st.NotJSONLines = append(st.NotJSONLines, lineNo)
			}
		}
		cl.Produce(ctx, rec, promise)
		st.Records++
		st.Bytes += int64(len(value))
		if err != nil { // io.EOF: the last line had no newline
			break
		}
	}
	flushErr := cl.Flush(context.WithoutCancel(ctx))
	took := time.Since(start).Round(time.Millisecond)
	if p := firstErr.Load(); p != nil {
		return st, fmt.Errorf("produce: writing to %s: %w (after %d lines of %s)", o.Topic, *p, st.Records, o.Name)
	}
	if err := errors.Join(readErr, flushErr); err != nil {
		return st, err
	}
	fmt.Fprintf(stderr, "dwell: produced %d records (%d bytes) from %s to %s in %s: %d keyed by profile, %d by session, %d without a key; %d with their event time as timestamp%s%s\n",
		st.Records, st.Bytes, o.Name, o.Topic, took, st.ByProfile, st.BySession, st.Unkeyed, st.WithEventTime, notJSONNote(st), blankNote(st))
	if ctx.Err() != nil {
		return st, ctx.Err()
	}
	return st, nil
}

func notJSONNote(st produceFileStats) string {
	if st.NotJSON == 0 {
		return ""
	}
	nums := make([]string, len(st.NotJSONLines))
	for i, n := range st.NotJSONLines {
		nums[i] = fmt.Sprint(n)
	}
	more := ""
	if int64(len(nums)) < st.NotJSON {
		more = ", ..."
	}
	return fmt.Sprintf("; %d lines not JSON (line %s%s), sent as they are: dwell run dead-letters them (malformed-json)", st.NotJSON, strings.Join(nums, ", "), more)
}

func blankNote(st produceFileStats) string {
	if st.Blank == 0 {
		return ""
	}
	return fmt.Sprintf("; %d blank line(s) skipped", st.Blank)
}

// produceGeneratedOptions are dwell produce's settings without --file.
type produceGeneratedOptions struct {
	Topic string
	Rate  int // records per second of wall-clock time; 0: as fast as possible
	Count int // 0: until ctx ends
}

// produceGenerated writes the web-tracking generator's records (web; its Start and Rate already
// set from the wall clock and Rate, as cmdProduce does) to a topic, keyed by profile (or
// session) as a collector would, after the same connect and topic checks as every command: an
// unreachable cluster or a missing topic is an error within seconds instead of a silent wait.
// It replaces cmdProduce's body from kgo.NewClient on.
func produceGenerated(ctx context.Context, conn connectOptions, o produceGeneratedOptions, g *bench.Web, stderr io.Writer) error {
	cl, adm, err := connectKafka(ctx, conn, kgo.DefaultProduceTopic(o.Topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := requireTopics(ctx, adm, false, o.Topic); err != nil {
		return err
	}
	var firstErr atomic.Pointer[error] // promises run on the client's goroutines
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			firstErr.CompareAndSwap(nil, &err)
		}
	}
	sent := 0
	start := time.Now()
	for (o.Count == 0 || sent < o.Count) && ctx.Err() == nil && firstErr.Load() == nil {
		r := g.Next(nil)
		cl.Produce(ctx, &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)}, promise)
		sent++
		if o.Rate > 0 && sent%100 == 0 {
			if ahead := time.Duration(sent)*time.Second/time.Duration(o.Rate) - time.Since(start); ahead > 0 {
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
	if p := firstErr.Load(); p != nil {
		return fmt.Errorf("produce: writing to %s: %w", o.Topic, *p)
	}
	fmt.Fprintf(stderr, "dwell: produced %d records to %s in %s\n", sent, o.Topic, time.Since(start).Round(time.Millisecond))
	return nil
}
