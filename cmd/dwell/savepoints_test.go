package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline/pipelinetest"
	"github.com/dwellhq/dwell/pipeline/savepoint"
)

// TestSavepointsList writes two partitions' savepoints as dwell run does (data records, then a
// descriptor), truncates one partition's data as the retention would, and lists them: as a
// table and as JSON, by --application-id and by --group, the truncated one expired. Missing
// topics name themselves and --create-topics; bad flags exit 2.
func TestSavepointsList(t *testing.T) {
	env := pipelinetest.New(t, 2, []string{"app.savepoints", "app.savepoint-data"})
	app := env.Name("app")
	topics := savepoint.Topics{Descriptors: env.Name("app.savepoints"), Data: env.Name("app.savepoint-data")}
	at := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	var recs []*kgo.Record
	var ds []savepoint.Descriptor
	for p := range int32(2) {
		d := savepoint.Descriptor{ID: savepoint.ID(p, at), Application: app, Partition: p, Time: at, Watermark: at.UnixMilli() - 5000,
			Next: map[string]int64{"events": 100 + int64(p), "clicks": 7}, Keys: 2, Records: 3, Bytes: 42, DataStart: 0, DataEnd: 3}
		ds = append(ds, d)
		for _, k := range []string{"pa", "pb", "\x00partition"} {
			recs = append(recs, &kgo.Record{Topic: topics.Data, Partition: p, Key: []byte(k), Value: []byte("v"),
				Headers: []kgo.RecordHeader{{Key: savepoint.Header, Value: []byte(d.ID)}}})
		}
	}
	for _, d := range ds {
		recs = append(recs, &kgo.Record{Topic: topics.Descriptors, Partition: d.Partition, Key: []byte(d.ID), Value: d.Marshal()})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var trunc kadm.Offsets
	trunc.Add(kadm.Offset{Topic: topics.Data, Partition: 1, At: 1})
	if resp, err := kadm.NewClient(cl).DeleteRecords(ctx, trunc); err != nil || resp.Error() != nil {
		t.Fatalf("deleting records: %v %v", err, resp.Error())
	}
	brokers := strings.Join(env.Brokers, ",")

	for _, by := range [][]string{{"--application-id", app}, {"--group", app}} {
		code, out, stderr := runCLI(t, "", append([]string{"savepoints", "list", "--brokers", brokers}, by...)...)
		if code != exitOK {
			t.Fatalf("%v: exit %d: %s", by, code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "PARTITION") {
			t.Fatalf("%v: want a header and two lines:\n%s", by, out)
		}
		for _, col := range []string{"ID", "TIME", "NEXT", "KEYS", "RECORDS", "BYTES", "EXPIRED"} {
			if !strings.Contains(lines[0], col) {
				t.Errorf("header %q lacks %s", lines[0], col)
			}
		}
		for i, want := range [][]string{
			{"0", ds[0].ID, "2026-04-01T10:00:00Z", "clicks:7,events:100", "2", "3", "42", "no"},
			{"1", ds[1].ID, "2026-04-01T10:00:00Z", "clicks:7,events:101", "2", "3", "42", "yes"},
		} {
			if got := strings.Fields(lines[i+1]); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("%v: line %d = %q, want %q", by, i+1, got, want)
			}
		}
	}

	code, out, stderr := runCLI(t, "", "savepoints", "list", "--brokers", brokers, "--application-id", app, "--json")
	if code != exitOK {
		t.Fatalf("--json: exit %d: %s", code, stderr)
	}
	var got []savepoint.Descriptor
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var d savepoint.Descriptor
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("--json output: %v\n%s", err, out)
		}
		got = append(got, d)
	}
	if len(got) != 2 || got[0].ID != ds[0].ID || got[0].Expired || !got[1].Expired || got[1].Next["events"] != 101 || !got[0].Time.Equal(at) {
		t.Fatalf("--json: %+v", got)
	}

	code, _, stderr = runCLI(t, "", "savepoints", "list", "--brokers", brokers, "--application-id", env.Name("nope"))
	if code != exitFailure || !strings.Contains(stderr, env.Name("nope.savepoints")) || !strings.Contains(stderr, "dwell run --create-topics") {
		t.Fatalf("missing topics: exit %d: %s", code, stderr)
	}
	for _, args := range [][]string{{"savepoints"}, {"savepoints", "frob"}, {"savepoints", "list", "--bogus"}, {"savepoints", "list", "extra"}} {
		if code, _, stderr := runCLI(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitUsage, stderr)
		}
	}
}
