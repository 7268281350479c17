package move

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
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

// ReprocessOf is the header naming the record a copy was made from: topic/partition/offset.
const ReprocessOf = "dwell-reprocess-of"

// flushTimeout bounds the wait for the copies in flight at the end, interrupted or not.
const flushTimeout = time.Minute

// Record is what a Config.Filter expression sees of a record.
type Record struct {
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

// Result counts what a move did.
type Result struct {
	Scanned, Matched int64
	// Written and Logged count the copies and event-log entries the brokers acknowledged.
	Written, Logged int64
	// FilterErrors counts the records the filter failed on (not moved).
	FilterErrors int64
}

// Run copies the records of cfg.From that match to cfg.To, from the start (or cfg.Since) to the
// end offsets at the time it starts; see the package documentation. An error of cfg is marked
// with ErrConfig, and nothing is read.
func Run(ctx context.Context, cfg Config, stdout, stderr io.Writer) (Result, error) {
	prog, err := cfg.validate()
	if err != nil {
		return Result{}, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)...)
	if err != nil {
		return Result{}, fmt.Errorf("move: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	// Where to start and stop in each partition.
	need := []string{cfg.From}
	if !cfg.DryRun {
		need = append(need, cfg.To)
		if cfg.EventLogTopic != "" {
			need = append(need, cfg.EventLogTopic)
		}
	}
	if err := topicscan.Exist(ctx, adm, need...); err != nil {
		var missing *topicscan.MissingError
		if errors.As(err, &missing) && cfg.EventLogTopic != "" && slices.Contains(missing.Topics, cfg.EventLogTopic) {
			err = fmt.Errorf("%w (or pass --event-log-topic '' to move without logging)", err)
		}
		return Result{}, fmt.Errorf("move: %w", err)
	}
	spans, err := topicscan.Plan(ctx, adm, cfg.From, cfg.Since) // read_committed: the last stable offsets
	if err != nil {
		return Result{}, fmt.Errorf("move: %w", err)
	}
	if spans.Err != nil {
		return Result{}, fmt.Errorf("move: end offsets of %s: %w", cfg.From, spans.Err)
	}

	st := stats{now: cfg.Now, start: cfg.Now(), total: spans.Total}
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
	runErr := spans.Scan(ctx, cfg.Brokers, cfg.ClientOpts, func(r *kgo.Record) error {
		st.Scanned++
		if !cfg.Since.IsZero() && r.Timestamp.Before(cfg.Since) || !cfg.Until.IsZero() && !r.Timestamp.Before(cfg.Until) {
			return nil
		}
		if prog != nil && !st.selects(prog, r) {
			return nil
		}
		st.Matched++
		if cfg.DryRun {
			return enc.Encode(topicscan.Record(r))
		}
		if p := produceErr.Load(); p != nil {
			return fmt.Errorf("writing to %s: %w", cfg.To, *p)
		}
		// An interrupt stops the scan; what it matched is still written and counted.
		wctx := context.WithoutCancel(ctx)
		cl.Produce(wctx, copyRecord(r, cfg.To), onCopy)
		if cfg.EventLogTopic != "" {
			cl.Produce(wctx, transferLog(r, cfg.EventLogTopic), onLog)
		}
		return nil
	}, func(pos int64) {
		st.pos = pos
		if cfg.Progress > 0 && cfg.Now().Sub(st.lastProgress) >= cfg.Progress {
			st.lastProgress = cfg.Now()
			fmt.Fprintln(stderr, st.line(written.Load()))
		}
	})
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		runErr = fmt.Errorf("move: %w", runErr)
	}
	if !cfg.DryRun {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		if err := cl.Flush(fctx); err != nil && runErr == nil {
			runErr = fmt.Errorf("move: flushing writes to %s: %w", cfg.To, err)
		}
		cancel()
		if p := produceErr.Load(); p != nil && runErr == nil {
			runErr = fmt.Errorf("move: writing to %s: %w", cfg.To, *p)
		}
	}
	st.Written, st.Logged = written.Load(), logged.Load()
	if cfg.DryRun {
		fmt.Fprintf(stderr, "dwell move: %s: scanned %d records, matched %d, would write %d to %s (dry run)", cfg.From, st.Scanned, st.Matched, st.Matched, cfg.To)
	} else {
		fmt.Fprintf(stderr, "dwell move: %s: scanned %d records, matched %d, wrote %d to %s", cfg.From, st.Scanned, st.Matched, st.Written, cfg.To)
	}
	if !cfg.DryRun && cfg.EventLogTopic != "" {
		fmt.Fprintf(stderr, ", logged %d as transferred in %s", st.Logged, cfg.EventLogTopic)
	}
	fmt.Fprintf(stderr, " in %s\n", cfg.Now().Sub(st.start).Round(time.Millisecond))
	if st.FilterErrors > 0 {
		fmt.Fprintf(stderr, "dwell move: the filter failed on %d records (not moved); first: %s\n", st.FilterErrors, st.firstFilterErr)
	}
	return st.Result, runErr
}

// stats are a run's counts and progress.
type stats struct {
	Result
	now                 func() time.Time
	start, lastProgress time.Time
	total, pos          int64 // offsets to read, offsets read
	firstFilterErr      string
}

// selects runs the filter on r; a failure counts, and does not select r.
func (s *stats) selects(prog *vm.Program, r *kgo.Record) bool {
	ok, err := expr.Run(prog, newRecord(r))
	if err != nil {
		s.FilterErrors++
		if s.firstFilterErr == "" {
			s.firstFilterErr = fmt.Sprintf("%s/%d/%d: %v", r.Topic, r.Partition, r.Offset, err)
		}
		return false
	}
	return ok == true
}

func (s *stats) line(written int64) string {
	el := s.now().Sub(s.start).Seconds()
	pct := 100.0
	if s.total > 0 {
		pct = 100 * float64(s.pos) / float64(s.total)
	}
	return fmt.Sprintf("dwell move: %5.1f%% of %d offsets, scanned %d records, matched %d, written %d, %.0f records/s",
		pct, s.total, s.Scanned, s.Matched, written, float64(s.Scanned)/max(el, 1e-3))
}

// copyRecord is r for topic to: key, value and headers kept, plus where it came from. The
// timestamp is the time of the move (retention counts from it); the key picks the partition.
func copyRecord(r *kgo.Record, to string) *kgo.Record {
	h := make([]kgo.RecordHeader, 0, len(r.Headers)+1)
	for _, kv := range r.Headers {
		if kv.Key != ReprocessOf {
			h = append(h, kv)
		}
	}
	h = append(h, kgo.RecordHeader{Key: ReprocessOf, Value: []byte(r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "/" + strconv.FormatInt(r.Offset, 10))})
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

// newRecord is what the filter sees of r.
func newRecord(r *kgo.Record) Record {
	m := Record{Raw: string(r.Value), Key: string(r.Key), Topic: r.Topic, Partition: int(r.Partition),
		Offset: int(r.Offset), Timestamp: r.Timestamp, Headers: make(map[string]string, len(r.Headers))}
	for _, h := range r.Headers {
		m.Headers[h.Key] = string(h.Value)
	}
	src, _ := deadletter.Read(r.Headers)
	m.Reason = src.Reason
	var v map[string]any
	if json.Unmarshal(r.Value, &v) == nil {
		m.Value = v
	}
	return m
}

// Validate reports what Run would refuse in cfg (marked with ErrConfig), reading nothing.
func (c Config) Validate() error {
	_, err := c.validate()
	return err
}
