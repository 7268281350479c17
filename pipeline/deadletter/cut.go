package deadletter

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kgo"
)

// batchHeaderBytes is the header of a Kafka record batch (format v2): base offset, length,
// partition leader epoch, magic, CRC, attributes, last offset delta, first and max timestamps,
// producer id and epoch, base sequence, record count.
const batchHeaderBytes = 8 + 4 + 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4

// RecordBatchSize is the size in bytes of a Kafka record batch (format v2, uncompressed)
// holding one record of key, value and headers: what a broker compares with the topic's
// max.message.bytes (and, plus the 4-byte length it has in a produce request, what franz-go
// compares with ProducerBatchMaxBytes). In a batch of its own the record's timestamp and
// offset deltas are 0, one byte each.
func RecordBatchSize(key, value []byte, headers []kgo.RecordHeader) int {
	n := 1 + 1 + 1 + // attributes, timestamp delta, offset delta
		bytesField(len(key)) + bytesField(len(value)) + kbin.VarintLen(int32(len(headers)))
	for _, h := range headers {
		n += bytesField(len(h.Key)) + bytesField(len(h.Value))
	}
	return batchHeaderBytes + kbin.VarintLen(int32(n)) + n
}

// bytesField is the size of a varint-length-prefixed field of n bytes. A nil field is written
// with length -1, which takes one byte like 0.
func bytesField(n int) int { return kbin.VarintLen(int32(n)) + n }

// Cut cuts dead letter r so that, alone in a record batch, it takes at most limit bytes
// (RecordBatchSize): the value first and, only when the key alone is too large, the key; the
// record is marked with the header Truncated. A mark r has already (it was cut before, and
// dead-lettered again) is kept: it gives the sizes before the first cut. Cut reports false when
// nothing fits: the headers alone are over the limit.
func Cut(r *kgo.Record, limit int) bool {
	if RecordBatchSize(r.Key, r.Value, r.Headers) <= limit {
		return true
	}
	i, fresh := -1, true
	for j, h := range r.Headers {
		if h.Key == Truncated {
			i, fresh = j, false
		}
	}
	if fresh {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: Truncated, Value: strconv.AppendInt(nil, int64(len(r.Value)), 10)})
		i = len(r.Headers) - 1
	}
	// Taking n bytes off a field takes at least n off the batch (its length prefixes can only
	// shrink), so one cut of the excess fits.
	over := RecordBatchSize(r.Key, r.Value, r.Headers) - limit
	if over <= len(r.Value) {
		r.Value = r.Value[:len(r.Value)-over]
		return true
	}
	r.Value = r.Value[:0]
	if RecordBatchSize(r.Key, r.Value, r.Headers) <= limit {
		return true
	}
	if fresh {
		r.Headers[i].Value = strconv.AppendInt(append(r.Headers[i].Value, " key "...), int64(len(r.Key)), 10)
	}
	over = RecordBatchSize(r.Key, r.Value, r.Headers) - limit
	if over <= len(r.Key) {
		r.Key = r.Key[:len(r.Key)-over]
		return true
	}
	return false
}
