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
	"sync/atomic"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline/deadletter"
	"github.com/dwellhq/dwell/pipeline/topicscan"
)

// headerReprocessOf names the record a moved copy was made from: topic/partition/offset.
const headerReprocessOf = "dwell-reprocess-of"

// moveRecord is what a --filter expression sees of a record.
type moveRecord struct {
	Value     map[string]any    `expr:"value"`     // the value's JSON object (nil when it is not one)
	Raw       string            `expr:"raw"`       // the value as text
	Key       string            `expr:"key"`       //
	Headers   map[string]string `expr:"headers"`   // the last value of each header
	Reason    string            `expr:"reason"`    // the dead-letter reason header (deadletter.Reason)
	Topic     string            `expr:"topic"`     //
	Partition int               `expr:"partition"` //
	Offset    int               `expr:"offset"`    //
	Timestamp time.Time         `expr:"timestamp"` // the record timestamp
}

const moveFilterHelp = `expression selecting the records to move (expr language), over:
  value (the JSON object: value.type, value.properties.x), raw, key, headers["name"],
  reason (the dead-letter reason header), topic, partition, offset, timestamp (a time:
  timestamp > now() - duration("2h")); e.g. reason == "invalid-time" && value?.type == "purchase"
  (value?.x: some values may not be JSON objects; a filter that fails on a record skips it)`

// cmdMove copies the records of one topic that match a filter to another topic, from the
// start (or --since) to the end offsets at the time it starts.
func cmdMove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("move", stderr)
	brokers := fs.String("brokers", "localhost:9092", "comma-separated seed brokers")
	from := fs.String("from", "", "topic to read (required), e.g. dwell.dlq")
	to := fs.String("to", "", "topic to write (required), e.g. an input topic or dwell.queue.NAME")
	filter := fs.String("filter", "", moveFilterHelp)
	since := fs.String("since", "", "only records from this time: RFC 3339, or a duration ago (90m, 2h, 7d)")
	until := fs.String("until", "", "only records before this time: RFC 3339, or a duration ago")
	dryRun := fs.Bool("dry-run", false, "write nothing: print the matching records as JSON lines")
	eventLog := fs.String("event-log-topic", "dwell.event-log", "event-log topic: each moved record is logged as transferred (empty: do not log)")
	progressEvery := fs.Duration("progress", 2*time.Second, "interval of the progress line on stderr (0: none)")
	kafka := bindKafka(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *from == "" || *to == "" {
		return usageError{errors.New("move: name both topics: dwell move --from TOPIC --to TOPIC")}
	}
	if *from == *to {
		return usageError{fmt.Errorf("move: --from and --to are both %q", *from)}
	}
	now := time.Now()
	var sinceT, untilT time.Time
	var err error
	if sinceT, err = parseWhen(*since, now); err != nil {
		return usageError{fmt.Errorf("move: --since: %w", err)}
	}
	if untilT, err = parseWhen(*until, now); err != nil {
		return usageError{fmt.Errorf("move: --until: %w", err)}
	}
	if !sinceT.IsZero() && !untilT.IsZero() && !untilT.After(sinceT) {
		return usageError{fmt.Errorf("move: --until (%s) is not after --since (%s)", untilT.Format(time.RFC3339), sinceT.Format(time.RFC3339))}
	}
	var prog *vm.Program
	if *filter != "" {
		if prog, err = expr.Compile(*filter, expr.Env(moveRecord{}), expr.AsBool()); err != nil {
			return usageError{fmt.Errorf("move: --filter: %w", err)}
		}
	}
	kopts, err := kafka.opts()
	if err != nil {
		return usageError{err}
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(splitList(*brokers)...)}, kopts...)...)
	if err != nil {
		return fmt.Errorf("move: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	// Where to start and stop in each partition.
	need := []string{*from}
	if !*dryRun {
		need = append(need, *to)
		if *eventLog != "" {
			need = append(need, *eventLog)
		}
	}
	if err := topicscan.Exist(ctx, adm, need...); err != nil {
		var missing *topicscan.MissingError
		if errors.As(err, &missing) && *eventLog != "" && slices.Contains(missing.Topics, *eventLog) {
			err = fmt.Errorf("%w (or pass --event-log-topic '' to move without logging)", err)
		}
		return fmt.Errorf("move: %w", err)
	}
	spans, err := topicscan.Plan(ctx, adm, *from, sinceT) // read_committed: the last stable offsets
	if err != nil {
		return fmt.Errorf("move: %w", err)
	}
	if spans.Err != nil {
		return fmt.Errorf("move: end offsets of %s: %w", *from, spans.Err)
	}

	st := moveStats{start: time.Now(), total: spans.Total}
	var written, logged atomic.Int64
	var produceErr atomic.Pointer[error]
	promise := func(counter *atomic.Int64) func(*kgo.Record, error) {
		return func(_ *kgo.Record, err error) {
			if err != nil {
				produceErr.CompareAndSwap(nil, &err)
				return
			}
			counter.Add(1)
		}
	}
	onCopy, onLog := promise(&written), promise(&logged)
	enc := json.NewEncoder(stdout)
	runErr := spans.Scan(ctx, splitList(*brokers), kopts, func(r *kgo.Record) error {
		st.scanned++
		if !sinceT.IsZero() && r.Timestamp.Before(sinceT) || !untilT.IsZero() && !r.Timestamp.Before(untilT) {
			return nil
		}
		if prog != nil {
			ok, err := expr.Run(prog, newMoveRecord(r))
			if err != nil {
				st.filterErrs++
				if st.firstFilterErr == "" {
					st.firstFilterErr = fmt.Sprintf("%s/%d/%d: %v", r.Topic, r.Partition, r.Offset, err)
				}
				return nil
			}
			if ok != true {
				return nil
			}
		}
		st.matched++
		if *dryRun {
			return enc.Encode(topicscan.Record(r))
		}
		if p := produceErr.Load(); p != nil {
			return fmt.Errorf("writing to %s: %w", *to, *p)
		}
		// An interrupt stops the scan; what it matched is still written and counted.
		wctx := context.WithoutCancel(ctx)
		cl.Produce(wctx, copyRecord(r, *to), onCopy)
		if *eventLog != "" {
			cl.Produce(wctx, transferLog(r, *eventLog), onLog)
		}
		return nil
	}, func(pos int64) {
		st.pos = pos
		if *progressEvery > 0 && time.Since(st.lastProgress) >= *progressEvery {
			st.lastProgress = time.Now()
			fmt.Fprintln(stderr, st.line(written.Load()))
		}
	})
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		runErr = fmt.Errorf("move: %w", runErr)
	}
	if !*dryRun {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		if err := cl.Flush(fctx); err != nil && runErr == nil {
			runErr = fmt.Errorf("move: flushing writes to %s: %w", *to, err)
		}
		cancel()
		if p := produceErr.Load(); p != nil && runErr == nil {
			runErr = fmt.Errorf("move: writing to %s: %w", *to, *p)
		}
	}
	if *dryRun {
		fmt.Fprintf(stderr, "dwell move: %s: scanned %d records, matched %d, would write %d to %s (dry run)", *from, st.scanned, st.matched, st.matched, *to)
	} else {
		fmt.Fprintf(stderr, "dwell move: %s: scanned %d records, matched %d, wrote %d to %s", *from, st.scanned, st.matched, written.Load(), *to)
	}
	if !*dryRun && *eventLog != "" {
		fmt.Fprintf(stderr, ", logged %d as transferred in %s", logged.Load(), *eventLog)
	}
	fmt.Fprintf(stderr, " in %s\n", time.Since(st.start).Round(time.Millisecond))
	if st.filterErrs > 0 {
		fmt.Fprintf(stderr, "dwell move: the filter failed on %d records (not moved); first: %s\n", st.filterErrs, st.firstFilterErr)
	}
	return runErr
}

type moveStats struct {
	start, lastProgress time.Time
	total, pos          int64 // offsets to read, offsets read
	scanned, matched    int64
	filterErrs          int64
	firstFilterErr      string
}

func (s *moveStats) line(written int64) string {
	el := time.Since(s.start).Seconds()
	pct := 100.0
	if s.total > 0 {
		pct = 100 * float64(s.pos) / float64(s.total)
	}
	return fmt.Sprintf("dwell move: %5.1f%% of %d offsets, scanned %d records, matched %d, written %d, %.0f records/s",
		pct, s.total, s.scanned, s.matched, written, float64(s.scanned)/max(el, 1e-3))
}

// copyRecord is r for topic to: key, value and headers kept, plus where it came from. The
// timestamp is the time of the move (retention counts from it); the key picks the partition.
func copyRecord(r *kgo.Record, to string) *kgo.Record {
	h := make([]kgo.RecordHeader, 0, len(r.Headers)+1)
	for _, kv := range r.Headers {
		if kv.Key != headerReprocessOf {
			h = append(h, kv)
		}
	}
	h = append(h, kgo.RecordHeader{Key: headerReprocessOf, Value: []byte(r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10))})
	return &kgo.Record{Topic: to, Key: r.Key, Value: r.Value, Headers: h}
}

// transferLog is the event-log record that says r's event was transferred. A dead letter
// names the input record it came from (dwell-topic, dwell-partition, dwell-offset): the event
// is that record's, and its id derives from it as the processor derives it.
func transferLog(r *kgo.Record, topic string) *kgo.Record {
	var v struct {
		ID   *string         `json:"id"`
		Type string          `json:"type"`
		Time json.RawMessage `json:"time"`
	}
	_ = json.Unmarshal(r.Value, &v) // a malformed value is logged with what is known
	e := rules.LogEntry{Type: operators.NormalizeType(v.Type), Key: string(r.Key), Time: r.Timestamp.UnixMilli(),
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, State: rules.Transferred}
	if src, _ := deadletter.Read(r.Headers); src.Topic != "" {
		e.Topic, e.Partition, e.Offset = src.Topic, src.Partition, src.Offset
	}
	if ms, ok := eventTime(v.Time); ok {
		e.Time = ms
	}
	ref := operators.EventRef{Topic: e.Topic, Partition: e.Partition, Offset: e.Offset}
	if v.ID != nil && *v.ID != "" {
		ref.ID = []byte(*v.ID)
	}
	e.EventID = string(operators.AppendEventID(nil, &ref))
	return &kgo.Record{Topic: topic, Key: r.Key, Value: rules.AppendLogJSON(nil, &e)}
}

// eventTime reads an event's time: RFC 3339 or epoch milliseconds.
func eventTime(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return operators.ParseTime([]byte(s))
	}
	var ms int64
	if json.Unmarshal(raw, &ms) == nil {
		return ms, true
	}
	return 0, false
}

func recordHeader(r *kgo.Record, key string) string {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == key {
			return string(r.Headers[i].Value)
		}
	}
	return ""
}

func newMoveRecord(r *kgo.Record) moveRecord {
	m := moveRecord{Raw: string(r.Value), Key: string(r.Key), Topic: r.Topic, Partition: int(r.Partition),
		Offset: int(r.Offset), Timestamp: r.Timestamp, Headers: make(map[string]string, len(r.Headers))}
	for _, h := range r.Headers {
		m.Headers[h.Key] = string(h.Value)
	}
	m.Reason = m.Headers[deadletter.Reason]
	var v map[string]any
	if json.Unmarshal(r.Value, &v) == nil {
		m.Value = v
	}
	return m
}

// parseWhen reads RFC 3339 or a duration before now (Go durations, plus d for days); "" is
// the zero time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if d, err := strconv.ParseFloat(n, 64); err == nil && d >= 0 {
			return now.Add(-time.Duration(d * 24 * float64(time.Hour))), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2026-01-02T15:04:05Z) nor a duration ago (90m, 2h, 7d)", s)
	}
	return now.Add(-d), nil
}
