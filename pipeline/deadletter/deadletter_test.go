package deadletter_test

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline/deadletter"
)

func TestRoundTrip(t *testing.T) {
	for _, s := range []deadletter.Source{
		{Reason: "invalid-json", Detail: "at 3", Topic: "events", Partition: 7, Offset: 12345},
		{Reason: "rule-failed", Detail: "x", Offset: -1, EventID: "e-1"},
	} {
		got, ok := deadletter.Read(deadletter.AppendHeaders(nil, s))
		if !ok || got != s {
			t.Errorf("Read(AppendHeaders(%+v)) = %+v, %v", s, got, ok)
		}
	}
	if _, ok := deadletter.Read([]kgo.RecordHeader{{Key: "other", Value: []byte("x")}}); ok {
		t.Error("a record without dwell-reason reads as a dead letter")
	}
}

func TestReadRejectsBadNumbers(t *testing.T) {
	h := []kgo.RecordHeader{{Key: deadletter.Reason, Value: []byte("r")}, {Key: deadletter.Topic, Value: []byte("events")},
		{Key: deadletter.Partition, Value: []byte("x")}, {Key: deadletter.Offset, Value: []byte("1")}}
	s, ok := deadletter.Read(h)
	if !ok || s.Topic != "" || s.Offset != -1 {
		t.Errorf("unparseable partition: got %+v; want no input record", s)
	}
}

func TestRewrapReplacesEarlierHeaders(t *testing.T) {
	first := deadletter.AppendHeaders([]kgo.RecordHeader{{Key: "trace", Value: []byte("t")}},
		deadletter.Source{Reason: "a", Topic: "in", Partition: 1, Offset: 2, EventID: "e"})
	second := deadletter.Rewrap(first, deadletter.Source{Reason: "b", Topic: "q", Partition: 3, Offset: 4})
	if len(second) != 7 || second[0].Key != "trace" {
		t.Fatalf("rewrapped headers %v: want trace, the earlier event id and 5 new headers", second)
	}
	s, _ := deadletter.Read(second)
	if s.Reason != "b" || s.Topic != "q" || s.Partition != 3 || s.Offset != 4 || s.EventID != "e" {
		t.Errorf("rewrapped = %+v", s)
	}
	for _, h := range second {
		if h.Key == deadletter.Reason && string(h.Value) != "b" {
			t.Errorf("earlier reason %q kept", h.Value)
		}
	}
}
