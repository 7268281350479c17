package eventlog

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline/topicscan"
)

// Result counts what a search read.
type Result struct {
	// Shown counts the matches printed (at most Config.Limit), Matched all the matches,
	// Scanned the records read in the window's offsets, Unreadable those that were not
	// event-log entries.
	Shown, Matched, Scanned, Unreadable int
}

// Search prints the entries of the event log that match cfg, oldest first; see the package
// documentation. An error of cfg is marked with ErrConfig, and nothing is read.
func Search(ctx context.Context, cfg Config, stdout, stderr io.Writer) (Result, error) {
	q, err := cfg.validate()
	if err != nil {
		return Result{}, err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)...)
	if err != nil {
		return Result{}, fmt.Errorf("log: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := topicscan.Exist(ctx, adm, cfg.Topic); err != nil {
		return Result{}, fmt.Errorf("log: %w", err)
	}
	spans, err := topicscan.Plan(ctx, adm, cfg.Topic, cfg.Since) // a partition it cannot list is left out
	if err != nil {
		return Result{}, fmt.Errorf("log: %w", err)
	}

	var hits newest
	var res Result
	match := func(r *kgo.Record) error {
		res.Scanned++
		if !cfg.Since.IsZero() && r.Timestamp.Before(cfg.Since) || !cfg.Until.IsZero() && !r.Timestamp.Before(cfg.Until) {
			return nil
		}
		e, err := rules.ParseLogJSON(r.Value)
		var lacks *rules.LogFieldsError
		if err != nil && !errors.As(err, &lacks) {
			res.Unreadable++
			return nil
		}
		if !q.matches(&e, lacks) {
			return nil
		}
		res.Matched++
		h := &hit{ts: r.Timestamp, partition: r.Partition, offset: r.Offset, raw: r.Value, e: e, lacks: lacks}
		switch {
		case cfg.Limit == 0 || hits.Len() < cfg.Limit:
			heap.Push(&hits, h)
		case hits[0].before(h):
			hits[0] = h
			heap.Fix(&hits, 0)
		}
		return nil
	}
	if err := spans.Scan(ctx, cfg.Brokers, cfg.ClientOpts, match, nil); err != nil {
		if errors.Is(err, context.Canceled) {
			return res, err
		}
		return res, fmt.Errorf("log: %w", err)
	}
	out := []*hit(hits)
	slices.SortFunc(out, func(a, b *hit) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
	res.Shown = len(out)
	if cfg.JSON {
		for _, h := range out {
			if _, err := fmt.Fprintf(stdout, "%s\n", h.raw); err != nil {
				return res, err
			}
		}
	} else if err := printTable(stdout, out); err != nil {
		return res, err
	}
	fmt.Fprintf(stderr, "dwell log: %d entries matched of %d read", res.Matched, res.Scanned)
	if res.Shown < res.Matched {
		fmt.Fprintf(stderr, "; the %d most recent shown (--limit 0 for all)", res.Shown)
	}
	if res.Unreadable > 0 {
		fmt.Fprintf(stderr, "; %d records were not event-log entries (skipped)", res.Unreadable)
	}
	fmt.Fprintln(stderr)
	return res, nil
}

// matches reports whether e passes the filters; a filter on a field lacked does not match.
func (q *query) matches(e *rules.LogEntry, lacks *rules.LogFieldsError) bool {
	if q.Profile != "" && e.Key != q.Profile || q.ID != "" && e.EventID != q.ID ||
		q.State != "" && (lacks.Lacks("state") || e.State != q.state) {
		return false
	}
	if q.Rule != "" && (e.Outcome == nil || !slices.Contains(e.Outcome.Fired, q.Rule)) {
		return false
	}
	if q.typ != "" {
		if ok, _ := path.Match(q.typ, e.Type); !ok {
			return false
		}
	}
	return true
}

// hit is a matching entry with where it was read, for ordering.
type hit struct {
	ts        time.Time
	partition int32
	offset    int64
	raw       []byte
	e         rules.LogEntry
	lacks     *rules.LogFieldsError // the fields of e not read, if any
}

func (a *hit) before(b *hit) bool {
	if !a.ts.Equal(b.ts) {
		return a.ts.Before(b.ts)
	}
	if a.partition != b.partition {
		return a.partition < b.partition
	}
	return a.offset < b.offset
}

// newest keeps the n most recent hits (a min-heap on time).
type newest []*hit

func (h newest) Len() int           { return len(h) }
func (h newest) Less(i, j int) bool { return h[i].before(h[j]) }
func (h newest) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *newest) Push(x any)        { *h = append(*h, x.(*hit)) }
func (h *newest) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Validate reports what Search would refuse in cfg (marked with ErrConfig), reading nothing.
func (c Config) Validate() error {
	_, err := c.validate()
	return err
}
