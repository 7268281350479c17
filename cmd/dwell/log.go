package main

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline/topicscan"
)

// logEntry is an event-log record as rules.AppendLogJSON writes it. Decoding is tolerant:
// unknown fields are ignored and a field of an unexpected type leaves its zero value, so
// that records of an older or newer dwell still show.
type logEntry struct {
	EventID       string   `json:"event_id"`
	Type          string   `json:"type"`
	Key           string   `json:"key"`
	Time          string   `json:"time"`
	Topic         string   `json:"topic"`
	Partition     int32    `json:"partition"`
	Offset        int64    `json:"offset"`
	State         string   `json:"state"`
	Rules         []string `json:"rules"`
	Actions       []string `json:"actions"`
	Reason        string   `json:"reason"`
	Detail        string   `json:"detail"`
	Unregistered  bool     `json:"unregistered"`
	ConfigVersion string   `json:"config_version"`
	ProcessingUS  int64    `json:"processing_us"`
}

// decodeLogEntry decodes v; false when v is not a JSON object at all.
func decodeLogEntry(v []byte) (logEntry, bool) {
	var e logEntry
	err := json.Unmarshal(v, &e)
	if err == nil {
		return e, true
	}
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) || te.Field == "" {
		return e, false
	}
	// A field of an unexpected type: decode the fields one by one, keeping those that fit.
	var fields map[string]json.RawMessage
	if json.Unmarshal(v, &fields) != nil {
		return e, false
	}
	e = logEntry{}
	for k, raw := range fields {
		one, _ := json.Marshal(map[string]json.RawMessage{k: raw})
		_ = json.Unmarshal(one, &e)
	}
	return e, true
}

// logHit is a matching entry with where it was read, for ordering.
type logHit struct {
	ts        time.Time
	partition int32
	offset    int64
	raw       []byte
	e         logEntry
}

func (a *logHit) before(b *logHit) bool {
	if !a.ts.Equal(b.ts) {
		return a.ts.Before(b.ts)
	}
	if a.partition != b.partition {
		return a.partition < b.partition
	}
	return a.offset < b.offset
}

// newest keeps the n most recent hits (a min-heap on time).
type newest []*logHit

func (h newest) Len() int           { return len(h) }
func (h newest) Less(i, j int) bool { return h[i].before(h[j]) }
func (h newest) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *newest) Push(x any)        { *h = append(*h, x.(*logHit)) }
func (h *newest) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// cmdLog searches the event log and prints the matching entries, oldest first.
func cmdLog(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("log", stderr)
	brokers := fs.String("brokers", "localhost:9092", "comma-separated seed brokers")
	topic := fs.String("topic", "dwell.event-log", "the event-log topic")
	typ := fs.String("type", "", "event type; * matches any run of characters (cart-*)")
	profile := fs.String("profile", "", "profile id (the record key: the session id for profile-less events)")
	state := fs.String("state", "", "processed, error, ignored, dead-lettered, late or transferred")
	id := fs.String("id", "", "event id")
	rule := fs.String("rule", "", "only events this rule fired on")
	since := fs.String("since", "1h", "entries logged from this time: RFC 3339 or a duration ago (90m, 2h, 7d); empty: the whole log")
	until := fs.String("until", "", "entries logged before this time: RFC 3339 or a duration ago")
	asJSON := fs.Bool("json", false, "print the entries as JSON lines, as logged")
	limit := fs.Int("limit", 100, "print at most the N most recent matches (0: all)")
	kafka := bindKafka(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return usageError{errors.New("log: --limit must not be negative")}
	}
	if *state != "" {
		if _, ok := rules.ParseLogState(*state); !ok {
			return usageError{fmt.Errorf("log: --state %q: use processed, error, ignored, dead-lettered, late or transferred", *state)}
		}
	}
	wantType := ""
	if *typ != "" {
		wantType = operators.NormalizeType(*typ)
		if _, err := path.Match(wantType, ""); err != nil {
			return usageError{fmt.Errorf("log: --type %q: %w", *typ, err)}
		}
	}
	now := time.Now()
	sinceT, err := parseWhen(*since, now)
	if err != nil {
		return usageError{fmt.Errorf("log: --since: %w", err)}
	}
	untilT, err := parseWhen(*until, now)
	if err != nil {
		return usageError{fmt.Errorf("log: --until: %w", err)}
	}
	kopts, err := kafka.opts()
	if err != nil {
		return usageError{err}
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(splitList(*brokers)...)}, kopts...)...)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := topicscan.Exist(ctx, adm, *topic); err != nil {
		return fmt.Errorf("log: %w", err)
	}
	spans, err := topicscan.Plan(ctx, adm, *topic, sinceT) // a partition it cannot list is left out
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}

	var hits newest
	scanned, unreadable := 0, 0
	match := func(r *kgo.Record) error {
		scanned++
		if !sinceT.IsZero() && r.Timestamp.Before(sinceT) || !untilT.IsZero() && !r.Timestamp.Before(untilT) {
			return nil
		}
		e, ok := decodeLogEntry(r.Value)
		if !ok {
			unreadable++
			return nil
		}
		if *profile != "" && e.Key != *profile || *id != "" && e.EventID != *id || *state != "" && e.State != *state ||
			*rule != "" && !slices.Contains(e.Rules, *rule) {
			return nil
		}
		if wantType != "" {
			if ok, _ := path.Match(wantType, e.Type); !ok {
				return nil
			}
		}
		h := &logHit{ts: r.Timestamp, partition: r.Partition, offset: r.Offset, raw: r.Value, e: e}
		switch {
		case *limit == 0 || hits.Len() < *limit:
			heap.Push(&hits, h)
		case hits[0].before(h):
			hits[0] = h
			heap.Fix(&hits, 0)
		}
		return nil
	}
	if err := spans.Scan(ctx, splitList(*brokers), kopts, match, nil); err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("log: %w", err)
	}
	out := []*logHit(hits)
	slices.SortFunc(out, func(a, b *logHit) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
	if *asJSON {
		for _, h := range out {
			if _, err := fmt.Fprintf(stdout, "%s\n", h.raw); err != nil {
				return err
			}
		}
	} else if err := printLogTable(stdout, out); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "dwell log: %d of %d entries matched", hits.Len(), scanned)
	if *limit > 0 && hits.Len() == *limit {
		fmt.Fprintf(stderr, " (the %d most recent shown; --limit 0 for all)", *limit)
	}
	if unreadable > 0 {
		fmt.Fprintf(stderr, "; %d records were not event-log entries (skipped)", unreadable)
	}
	fmt.Fprintln(stderr)
	return nil
}

func printLogTable(w io.Writer, hits []*logHit) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tID\tTYPE\tKEY\tAT\tSTATE\tRULES\tACTIONS\tUS\tDETAIL")
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, h := range hits {
		e := &h.e
		us := "-"
		if e.ProcessingUS > 0 {
			us = strconv.FormatInt(e.ProcessingUS, 10)
		}
		detail := e.Reason
		if e.Detail != "" {
			detail = strings.TrimPrefix(detail+": "+e.Detail, ": ")
		}
		if e.Unregistered {
			detail = strings.TrimPrefix(detail+"; unregistered", "; ")
		}
		if len(detail) > 80 {
			detail = detail[:77] + "..."
		}
		at := "-"
		if e.Topic != "" {
			at = fmt.Sprintf("%s/%d/%d", e.Topic, e.Partition, e.Offset)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(e.Time), dash(e.EventID), dash(e.Type),
			dash(tabSafe(e.Key)), tabSafe(at), dash(e.State),
			dash(strings.Join(e.Rules, ",")), dash(strings.Join(e.Actions, ",")), us, dash(tabSafe(detail)))
	}
	return tw.Flush()
}

// tabSafe keeps a value from breaking the table's columns and lines.
func tabSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
