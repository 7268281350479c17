package deadletter_test

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dwellhq/dwell/pipeline/deadletter"
)

// encodedBatch is the record batch kmsg (franz-go's wire code) writes for one record.
func encodedBatch(key, value []byte, headers []kgo.RecordHeader) int {
	rec := kmsg.Record{Key: key, Value: value}
	for _, h := range headers {
		rec.Headers = append(rec.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
	}
	rec.Length = int32(len(rec.AppendTo(nil)) - 1) // everything after the (one-byte, zero) length
	b := kmsg.RecordBatch{Magic: 2, NumRecords: 1, Records: rec.AppendTo(nil)}
	return len(b.AppendTo(nil))
}

func TestRecordBatchSizeMatchesKafkaEncoding(t *testing.T) {
	sizes := []int{0, 1, 63, 64, 65, 127, 128, 8191, 8192, 8193, 1 << 20, 2097151, 2097152}
	blob := bytes.Repeat([]byte{'x'}, 2097152+1)
	for _, kn := range []int{-1, 0, 1, 63, 64, 8192} {
		for _, vn := range sizes {
			for _, nh := range []int{0, 1, 5, 64} {
				var key, value []byte
				if kn >= 0 {
					key = blob[:kn]
				}
				value = blob[:vn]
				var headers []kgo.RecordHeader
				for i := range nh {
					h := kgo.RecordHeader{Key: "h" + strconv.Itoa(i)}
					if i%2 == 1 {
						h.Value = blob[:i*37]
					}
					headers = append(headers, h)
				}
				got, want := deadletter.RecordBatchSize(key, value, headers), encodedBatch(key, value, headers)
				if got != want {
					t.Fatalf("key %d, value %d, %d headers: RecordBatchSize = %d, Kafka's encoding %d", kn, vn, nh, got, want)
				}
			}
		}
	}
}

func TestCut(t *testing.T) {
	value := bytes.Repeat([]byte("v"), 5000)
	hdrs := func() []kgo.RecordHeader {
		return deadletter.AppendHeaders(nil, deadletter.Source{Reason: "output-too-large", Detail: "d", Topic: "in", Offset: 7})
	}
	mark := func(r *kgo.Record) (string, int) {
		n, v := 0, ""
		for _, h := range r.Headers {
			if h.Key == deadletter.Truncated {
				n++
				v = string(h.Value)
			}
		}
		return v, n
	}

	r := &kgo.Record{Key: []byte("k"), Value: value, Headers: hdrs()}
	fits := deadletter.RecordBatchSize(r.Key, r.Value, r.Headers)
	if !deadletter.Cut(r, fits) || len(r.Value) != len(value) {
		t.Fatal("a record that fits was cut")
	}
	if _, n := mark(r); n != 0 {
		t.Fatal("a record that fits was marked")
	}

	for _, limit := range []int{fits - 1, fits - 100, 1000, 300} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			r := &kgo.Record{Key: []byte("k"), Value: value, Headers: hdrs()}
			if !deadletter.Cut(r, limit) {
				t.Fatal("Cut failed")
			}
			size := deadletter.RecordBatchSize(r.Key, r.Value, r.Headers)
			if size > limit || size < limit-2 {
				t.Errorf("cut to %d bytes for a limit of %d: want it to fill the limit", size, limit)
			}
			if !bytes.HasPrefix(value, r.Value) || string(r.Key) != "k" {
				t.Errorf("the value is not a prefix of the original, or the key changed")
			}
			if v, n := mark(r); n != 1 || v != "5000" {
				t.Errorf("mark %q (%d headers), want one saying 5000", v, n)
			}
			if s, _ := deadletter.Read(r.Headers); s.Reason != "output-too-large" || s.Offset != 7 {
				t.Errorf("dead-letter headers lost: %+v", s)
			}
			// Cut again (a cut dead letter dead-lettered again): the first mark stays.
			r.Value = append(r.Value, value...)
			if !deadletter.Cut(r, limit) {
				t.Fatal("second Cut failed")
			}
			if v, n := mark(r); n != 1 || v != "5000" {
				t.Errorf("after a second cut: mark %q (%d headers), want the first one", v, n)
			}
		})
	}

	// A key too large alone is cut after the value.
	r = &kgo.Record{Key: bytes.Repeat([]byte("k"), 2000), Value: value, Headers: hdrs()}
	if !deadletter.Cut(r, 1000) {
		t.Fatal("Cut of a large key failed")
	}
	if size := deadletter.RecordBatchSize(r.Key, r.Value, r.Headers); size > 1000 || len(r.Value) != 0 || len(r.Key) == 0 {
		t.Errorf("key %d, value %d bytes, %d in a batch: want the value gone and the key cut to fit 1000", len(r.Key), len(r.Value), size)
	}
	if v, _ := mark(r); v != "5000 key 2000" {
		t.Errorf("mark %q, want 5000 key 2000", v)
	}

	// Headers alone over the limit: nothing fits.
	r = &kgo.Record{Key: []byte("k"), Value: value, Headers: hdrs()}
	if deadletter.Cut(r, 100) {
		t.Error("Cut reported a fit below the size of the headers")
	}
}
