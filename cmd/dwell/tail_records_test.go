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

	"github.com/dwellhq/dwell/pipeline"
)

type tailed struct {
	Partition int32
	Offset    int64
	Key       string
	Value     json.RawMessage
}

func tailOut(t *testing.T, conn connectOptions, o tailOptions) ([]tailed, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := tailRecords(ctx, conn, o, &out)
	var recs []tailed
	for l := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		if l == "" {
			continue
		}
		var r tailed
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		recs = append(recs, r)
	}
	return recs, err
}

func TestTailRecords(t *testing.T) {
	const partitions = 3
	conn, _ := fakeKafka(t, partitions, "events")
	cl, err := kgo.NewClient(kgo.SeedBrokers(conn.Brokers...), kgo.DefaultProduceTopic("events"), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 60
	perPartition := map[int32]int{}
	for i := range n {
		key := fmt.Sprintf("prof-%d", i%6)
		r := &kgo.Record{Key: []byte(key), Value: fmt.Appendf(nil, `{"i":%d}`, i), Timestamp: base.Add(time.Duration(i) * time.Minute)}
		if err := cl.ProduceSync(t.Context(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		perPartition[pipeline.KafkaPartition(r.Key, partitions)]++
	}

	all, err := tailOut(t, conn, tailOptions{Topic: "events", Offset: "start", Count: n})
	if err != nil || len(all) != n {
		t.Fatalf("from start: %d records, %v", len(all), err)
	}
	got, err := tailOut(t, conn, tailOptions{Topic: "events", Offset: "start", Partitions: []int32{1}, Count: perPartition[1]})
	if err != nil || len(got) != perPartition[1] || got[0].Partition != 1 {
		t.Fatalf("--partition 1: %d records (want %d), %v", len(got), perPartition[1], err)
	}
	got, err = tailOut(t, conn, tailOptions{Topic: "events", Offset: "2", Partitions: []int32{1}, Count: 1})
	if err != nil || len(got) != 1 || got[0].Offset != 2 {
		t.Fatalf("--offset 2: %+v, %v", got, err)
	}
	// --since: the records at or after minute 50, whatever their partition.
	got, err = tailOut(t, conn, tailOptions{Topic: "events", Since: base.Add(50 * time.Minute).Format(time.RFC3339), Count: 10})
	if err != nil || len(got) != 10 {
		t.Fatalf("--since: %d records, %v", len(got), err)
	}
	for _, r := range got {
		var v struct{ I int }
		if json.Unmarshal(r.Value, &v); v.I < 50 {
			t.Errorf("--since printed record %d", v.I)
		}
	}
	// --since as a duration ago.
	got, err = tailOut(t, conn, tailOptions{Topic: "events", Since: "5m", Now: base.Add(60 * time.Minute), Count: 5})
	if err != nil || len(got) != 5 {
		t.Fatalf("--since 5m: %d records, %v", len(got), err)
	}
	// --key: that key's records only, in order, from its partition.
	got, err = tailOut(t, conn, tailOptions{Topic: "events", Offset: "start", Key: "prof-4", KeySet: true, Count: n / 6})
	if err != nil || len(got) != n/6 {
		t.Fatalf("--key: %d records, %v", len(got), err)
	}
	for i, r := range got {
		var v struct{ I int }
		if json.Unmarshal(r.Value, &v); r.Key != "prof-4" || v.I != 4+6*i {
			t.Errorf("--key record %d: %+v", i, r)
		}
	}
	// end: nothing old; the wait ends with ctx, exit 0.
	got, err = tailOut(t, conn, tailOptions{Topic: "events", Count: 1})
	if err != nil || len(got) != 0 {
		t.Fatalf("end: %d records, %v", len(got), err)
	}

	start := time.Now()
	if _, err := tailOut(t, conn, tailOptions{Topic: "nosuch"}); err == nil || !strings.Contains(err.Error(), `topic "nosuch" not found; create it with dwell topics create nosuch`) {
		t.Errorf("nosuch: %v", err)
	}
	if _, err := tailOut(t, conn, tailOptions{Topic: "events", Partitions: []int32{3}}); err == nil || !strings.Contains(err.Error(), "partitions 0 to 2, not 3") {
		t.Errorf("partition 3: %v", err)
	}
	if _, err := tailOut(t, conn, tailOptions{Topic: "events", Offset: "start", Since: "1h"}); err == nil {
		t.Error("--offset with --since accepted")
	}
	closed := connectOptions{Brokers: []string{closedPort(t)}, Timeout: time.Second}
	if _, err := tailOut(t, closed, tailOptions{Topic: "events"}); err == nil || !strings.Contains(err.Error(), "cannot reach Kafka") {
		t.Errorf("closed port: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("the errors took %s", time.Since(start))
	}
}
