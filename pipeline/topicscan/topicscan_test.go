package topicscan

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// TestScan: a scan reads every record from the start, or from a time, to the ends listed when
// it was planned, and counts the offsets read.
func TestScan(t *testing.T) {
	env := pipelinetest.New(t, 2, []string{"scan"})
	topic := env.Name("scan")
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	old, recent := time.Now().Add(-time.Hour).Truncate(time.Millisecond), time.Now().Truncate(time.Millisecond)
	var recs []*kgo.Record
	for i := range 6 {
		ts := old
		if i >= 4 {
			ts = recent
		}
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 2), Value: []byte{byte('a' + i)}, Timestamp: ts})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	var missing *MissingError
	if err := Exist(ctx, adm, topic, env.Name("nosuch")); !errors.As(err, &missing) ||
		!reflect.DeepEqual(missing.Topics, []string{env.Name("nosuch")}) || err.Error() != "topics "+env.Name("nosuch")+" do not exist" {
		t.Errorf("Exist: %v", err)
	}
	if err := Exist(ctx, adm, topic); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		since time.Time
		want  int
	}{{time.Time{}, 6}, {recent.Add(-time.Minute), 3}} { // the 2 recent ones and the first "after"
		s, err := Plan(ctx, adm, topic, c.since)
		if err != nil || s.Err != nil || s.Total != int64(c.want) {
			t.Fatalf("Plan since %v: %+v, %v", c.since, s, err)
		}
		// Written after planning: not read.
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("after")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		var got []string
		var read int64
		err = s.Scan(ctx, env.Brokers, nil, func(r *kgo.Record) error {
			got = append(got, string(r.Value))
			return nil
		}, func(n int64) { read = n })
		if err != nil || len(got) != c.want || read != s.Total {
			t.Errorf("since %v: read %q (%d offsets), %v; want %d records", c.since, got, read, err, c.want)
		}
	}
	stop := errors.New("stop")
	s, _ := Plan(ctx, adm, topic, time.Time{})
	if err := s.Scan(ctx, env.Brokers, nil, func(*kgo.Record) error { return stop }, nil); !errors.Is(err, stop) {
		t.Errorf("Scan returned %v, not each's error", err)
	}
}

func TestRecord(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	for _, c := range []struct {
		value []byte
		want  string
	}{
		{[]byte(`{"a":1}`), `"value":{"a":1}`},
		{[]byte("text"), `"value":"text"`},
		{[]byte{0xff}, `"value_base64":"/w=="`},
	} {
		b, err := json.Marshal(Record(&kgo.Record{Topic: "t", Partition: 1, Offset: 2, Key: []byte("k"), Value: c.value, Timestamp: ts,
			Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("1")}, {Key: "h", Value: []byte("2")}}}))
		want := `{"headers":{"h":"2"},"key":"k","offset":2,"partition":1,"timestamp":"2026-01-02T02:04:05Z","topic":"t",` + c.want + `}`
		if err != nil || string(b) != want { // a map: encoding/json sorts the keys
			t.Errorf("%s, %v\nwant %s", b, err, want)
		}
	}
}
