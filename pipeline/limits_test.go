package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline/deadletter"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// TestRecordBatchSizeIsKafkas checks deadletter.RecordBatchSize against what really happens on
// a topic with max.message.bytes = limit: the broker takes a record whose batch is limit bytes
// and refuses one of limit+1, and franz-go with Live's setting (ProducerBatchMaxBytes = limit
// plus the 4 bytes it counts for a batch's length in a produce request) sends the first and
// refuses the second itself. So the emitter's check lets through exactly what can be written.
func TestRecordBatchSizeIsKafkas(t *testing.T) {
	const limit = 5000
	k := pipelinetest.New(t, 1, []string{"limited"}, pipelinetest.TopicConfig("limited", "max.message.bytes", strconv.Itoa(limit)))
	topic := k.Name("limited")
	headers := []kgo.RecordHeader{{Key: "dwell-reason", Value: []byte("x")}, {Key: "empty"}}
	record := func(size int) *kgo.Record {
		key := []byte("key")
		for n := size - 200; n < size; n++ {
			v := bytes.Repeat([]byte{'v'}, n)
			if deadletter.RecordBatchSize(key, v, headers) == size {
				return &kgo.Record{Topic: topic, Key: key, Value: v, Headers: headers}
			}
		}
		t.Fatalf("no value gives a batch of %d bytes", size)
		return nil
	}
	produce := func(batchMax int32, r *kgo.Record) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ProducerBatchMaxBytes(batchMax),
			kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordRetries(2))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		return cl.ProduceSync(context.Background(), r).FirstErr()
	}
	// The broker: limit bytes go in, limit+1 do not.
	if err := produce(1<<20, record(limit)); err != nil {
		t.Fatalf("the broker refused a batch of exactly max.message.bytes: %v", err)
	}
	if err := produce(1<<20, record(limit+1)); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("a batch of max.message.bytes+1: %v, want MESSAGE_TOO_LARGE from the broker", err)
	}
	// franz-go set as Live sets it: the same boundary, the second refused before sending.
	if err := produce(limit+4, record(limit)); err != nil {
		t.Fatalf("franz-go refused a batch of exactly the limit: %v", err)
	}
	if err := produce(limit+4, record(limit+1)); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("franz-go sent a batch over the limit: %v", err)
	}
}
