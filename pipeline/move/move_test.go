package move

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline/deadletter"
)

// TestConfigErrors: a Config that cannot work is refused before anything is read, with an
// error marked ErrConfig that names the flag.
func TestConfigErrors(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.To = "" }, "name both topics"},
		{func(c *Config) { c.To = c.From }, `--from and --to are both "a"`},
		{func(c *Config) { c.Since, c.Until = now, now.Add(-time.Hour) }, "--until (2026-03-01T11:00:00Z) is not after --since"},
		{func(c *Config) { c.Filter = `reason == 3` }, "--filter: "},
		{func(c *Config) { c.Filter = `offset` }, "expected bool"},
	} {
		cfg := DefaultConfig()
		cfg.From, cfg.To = "a", "b"
		tc.change(&cfg)
		_, err := Run(context.Background(), cfg, nil, nil) // no brokers: never reached
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want ErrConfig and %q", cfg, err, tc.want)
		}
	}
}

func TestCopyRecord(t *testing.T) {
	r := &kgo.Record{Topic: "dwell.dlq", Partition: 1, Offset: 7, Key: []byte("k"), Value: []byte("v"),
		Headers: []kgo.RecordHeader{{Key: ReprocessOf, Value: []byte("old/0/0")}, {Key: "x", Value: []byte("y")}}}
	c := copyRecord(r, "events")
	if c.Topic != "events" || string(c.Key) != "k" || string(c.Value) != "v" || !c.Timestamp.IsZero() {
		t.Errorf("copy %+v", c)
	}
	if len(c.Headers) != 2 || c.Headers[0].Key != "x" || c.Headers[1].Key != ReprocessOf || string(c.Headers[1].Value) != "dwell.dlq/1/7" {
		t.Errorf("headers %v: want x and one %s naming dwell.dlq/1/7", c.Headers, ReprocessOf)
	}
}

// TestTransferLog: a moved dead letter is logged as its input record's event, with the id the
// processor gives that event; the entry reads back with the event log's parser.
func TestTransferLog(t *testing.T) {
	dead := &kgo.Record{Topic: "dwell.dlq", Partition: 0, Offset: 3, Key: []byte("p1"), Timestamp: time.UnixMilli(5000),
		Value:   []byte(`{"type":"Page View","time":"2026-05-01T12:00:00Z"}`),
		Headers: deadletter.AppendHeaders(nil, deadletter.Source{Reason: "invalid-time", Topic: "events", Partition: 2, Offset: 41})}
	rec := transferLog(dead, "dwell.event-log")
	e, err := rules.ParseLogJSON(rec.Value)
	if err != nil {
		t.Fatal(err)
	}
	id := string(operators.AppendEventID(nil, &operators.EventRef{Topic: "events", Partition: 2, Offset: 41}))
	if rec.Topic != "dwell.event-log" || string(rec.Key) != "p1" || e.State != rules.Transferred || e.Type != "page-view" ||
		e.Topic != "events" || e.Partition != 2 || e.Offset != 41 || e.EventID != id ||
		e.Time != time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixMilli() {
		t.Errorf("%s: %+v", rec.Value, e)
	}
	// Not a dead letter, with its own id and an epoch-ms time: the record itself.
	plain := &kgo.Record{Topic: "in", Partition: 1, Offset: 9, Timestamp: time.UnixMilli(5000), Value: []byte(`{"id":"e9","type":"x","time":1234}`)}
	if e, err := rules.ParseLogJSON(transferLog(plain, "l").Value); err != nil || e.Topic != "in" || e.Offset != 9 || e.Time != 1234 || e.EventID != "e9" {
		t.Errorf("%+v, %v", e, err)
	}
}

func TestNewRecord(t *testing.T) {
	r := &kgo.Record{Topic: "t", Value: []byte(`[1]`), Headers: deadletter.AppendHeaders(
		[]kgo.RecordHeader{{Key: deadletter.Reason, Value: []byte("first")}}, deadletter.Source{Reason: "last"})}
	m := newRecord(r)
	if m.Reason != "last" || m.Headers[deadletter.Reason] != "last" || m.Value != nil || m.Raw != "[1]" {
		t.Errorf("%+v", m)
	}
}
