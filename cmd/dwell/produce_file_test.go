package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/pipeline"
)

// TestProduceFile replays a generated file (with malformed lines, profile-less events and a
// batch) and reads it back: every line once, on the partition murmur2 gives its key, in file
// order per key, with the event time as timestamp.
func TestProduceFile(t *testing.T) {
	const partitions = 3
	conn, _ := fakeKafka(t, partitions, "events")
	var file bytes.Buffer
	if err := writeWeb(t.Context(), bench.WebConfig{Profiles: 40, MalformedShare: 0.05, ProfilelessShare: 0.2}, 2000, &file); err != nil {
		t.Fatal(err)
	}
	file.WriteString("\n") // a blank line: skipped
	file.WriteString(`{"profile":{"id":"batch-profile"},"time":"2026-01-01T00:00:00Z","events":[{"type":"page-view"}]}` + "\n")
	file.WriteString(`not json at all`) // no final newline
	lines := strings.Split(strings.TrimRight(file.String(), "\n"), "\n")
	var want []string
	notJSON := 0
	for _, l := range lines {
		if l == "" {
			continue
		}
		want = append(want, l)
		if !json.Valid([]byte(l)) {
			notJSON++
		}
	}

	var stderr bytes.Buffer
	st, err := produceFile(t.Context(), conn, produceFileOptions{Topic: "events", Name: "events.jsonl"}, bytes.NewReader(file.Bytes()), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(stderr.String())
	if st.Records != int64(len(want)) || st.NotJSON != int64(notJSON) || st.Blank != 1 || notJSON == 0 || st.BySession == 0 {
		t.Errorf("stats %+v; want %d records, %d not JSON", st, len(want), notJSON)
	}
	if !strings.Contains(stderr.String(), fmt.Sprintf("produced %d records", len(want))) || !strings.Contains(stderr.String(), fmt.Sprintf("%d lines not JSON (line ", notJSON)) {
		t.Errorf("summary %q", stderr.String())
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(conn.Brokers...), kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []*kgo.Record
	for len(got) < len(want) && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, r) })
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	// Per key, the values in file order.
	wantByKey := map[string][]string{}
	keyOf := map[string]string{}
	for _, r := range got {
		keyOf[string(r.Value)] = string(r.Key)
	}
	for _, l := range want {
		wantByKey[keyOf[l]] = append(wantByKey[keyOf[l]], l)
	}
	gotByKey := map[string][]string{}
	for _, r := range got {
		k := string(r.Key)
		gotByKey[k] = append(gotByKey[k], string(r.Value))
		if len(r.Key) > 0 && r.Partition != pipeline.KafkaPartition(r.Key, partitions) {
			t.Fatalf("key %q on partition %d, murmur2 says %d", r.Key, r.Partition, pipeline.KafkaPartition(r.Key, partitions))
		}
		if string(r.Value) == lines[len(lines)-2] && (k != "batch-profile" || !r.Timestamp.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))) {
			t.Errorf("batch: key %q timestamp %s", k, r.Timestamp)
		}
	}
	for k, w := range wantByKey {
		if k == "" {
			continue // unkeyed lines spread over partitions: no order among them
		}
		if strings.Join(gotByKey[k], "\n") != strings.Join(w, "\n") {
			t.Fatalf("key %q: order differs", k)
		}
	}
	// A generated event's timestamp is its event time.
	var ev struct{ Time time.Time }
	if err := json.Unmarshal(got[0].Value, &ev); err == nil && !ev.Time.IsZero() && !got[0].Timestamp.Equal(ev.Time.Truncate(time.Millisecond)) {
		t.Errorf("timestamp %s, event time %s", got[0].Timestamp, ev.Time)
	}

	// An unknown topic and unreachable brokers are errors at once.
	if _, err := produceFile(t.Context(), conn, produceFileOptions{Topic: "nosuch", Name: "-"}, strings.NewReader("{}\n"), &stderr); err == nil || !strings.Contains(err.Error(), "dwell topics create nosuch") {
		t.Errorf("unknown topic: %v", err)
	}
	closed := connectOptions{Brokers: []string{closedPort(t)}, Timeout: time.Second}
	if _, err := produceFile(t.Context(), closed, produceFileOptions{Topic: "events", Name: "-"}, strings.NewReader("{}\n"), &stderr); err == nil || !strings.Contains(err.Error(), "cannot reach Kafka") {
		t.Errorf("closed port: %v", err)
	}
}

func TestProduceGenerated(t *testing.T) {
	conn, _ := fakeKafka(t, 2, "events")
	g, err := bench.NewWeb(bench.WebConfig{Profiles: 10})
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if err := produceGenerated(t.Context(), conn, produceGeneratedOptions{Topic: "events", Count: 100}, g, &stderr); err != nil || !strings.Contains(stderr.String(), "produced 100 records to events") {
		t.Fatalf("%v %s", err, stderr.String())
	}
	start := time.Now()
	if err := produceGenerated(t.Context(), conn, produceGeneratedOptions{Topic: "nosuch", Count: 1}, g, &stderr); err == nil || !strings.Contains(err.Error(), `topic "nosuch" not found`) {
		t.Errorf("unknown topic: %v", err)
	}
	closed := connectOptions{Brokers: []string{closedPort(t)}, Timeout: time.Second}
	if err := produceGenerated(t.Context(), closed, produceGeneratedOptions{Topic: "events", Count: 1}, g, &stderr); err == nil || !strings.Contains(err.Error(), "cannot reach Kafka") {
		t.Errorf("closed port: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("the errors took %s", time.Since(start))
	}
}
