// Package savepoint is the format of dwell's savepoints and reads them back: what dwell reset
// rewinds a partition's state to, and dwell savepoints list shows.
//
// A savepoint is a consistent copy of one partition's state, the state after one committed
// cycle, with the input offsets and watermark it reflects. The live processor writes it every
// --savepoint-interval, spread over the cycles that follow (from a Pebble snapshot, so a
// partition with millions of keys never stalls for it), in those cycles' transactions:
//
//   - Data, to partition p of the data topic (<app>.savepoint-data): the partition's changelog
//     records as a full changelog would hold them after compaction, each key's record and then
//     the partition record (and its chunks), with the changelog's keys and values, and the header
//     Header naming the savepoint. A savepoint's data records are contiguous in their partition
//     apart from records of aborted transactions, which read_committed readers never see.
//   - Then a Descriptor, JSON, keyed by the savepoint's id, to partition p of the descriptor
//     topic (<app>.savepoints): it names the data's offsets and says what the savepoint holds. A
//     savepoint counts only once its descriptor is committed: one cut short by a crash or a
//     rebalance has none and is never read.
//
// Both topics delete by time (--savepoint-retention): a descriptor whose data the retention has
// already deleted (its DataStart is below the data partition's log start) is expired.
package savepoint

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline/topicscan"
)

// Header names the savepoint a data record belongs to; its value is the savepoint's id.
const Header = "dwell-savepoint"

// Descriptor says what one savepoint of one partition holds and where its data is.
type Descriptor struct {
	// ID names the savepoint: ID(partition, time).
	ID          string `json:"id"`
	Application string `json:"application"`
	Partition   int32  `json:"partition"`
	// Time is when the cycle the savepoint reflects committed (wall clock).
	Time time.Time `json:"time"`
	// Watermark is the partition's watermark in that state (Unix ms).
	Watermark int64 `json:"watermark"`
	// Next is the next input offset per input topic that the state does not hold: a replay
	// from these offsets on this state is the original processing.
	Next map[string]int64 `json:"next"`
	// Keys, Records and Bytes count the data: state keys, data records (keys, chunks and the
	// partition record), and their keys' and values' bytes.
	Keys    int64 `json:"keys"`
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
	// DataStart and DataEnd are the offsets of the data in its partition of the data topic:
	// the first data record, and one past the last.
	DataStart int64 `json:"data_start"`
	DataEnd   int64 `json:"data_end"`
	// Expired is set by List: the retention has deleted some of the data.
	Expired bool `json:"expired,omitempty"`
}

// ID is the id of the savepoint of partition taken at t.
func ID(partition int32, t time.Time) string {
	return fmt.Sprintf("sp-%d-%s", partition, t.UTC().Format("20060102T150405.000Z"))
}

// Marshal is d's record value.
func (d Descriptor) Marshal() []byte {
	b, _ := json.Marshal(d)
	return b
}

// Covers reports whether d's state holds no input past target (offset per topic): a replay
// from d's offsets reaches target without skipping anything.
func (d Descriptor) Covers(target map[string]int64) bool {
	for t, off := range target {
		if d.Next[t] > off {
			return false
		}
	}
	return true
}

// Topics names a savepoint's two topics.
type Topics struct {
	Descriptors, Data string
}

// List reads every committed descriptor of the descriptor topic, marks those whose data the
// retention has deleted Expired, and returns them by partition, then time. A descriptor that
// does not parse is reported in the error, after the others.
func List(ctx context.Context, adm *kadm.Client, brokers []string, opts []kgo.Opt, t Topics) ([]Descriptor, error) {
	if err := topicscan.Exist(ctx, adm, t.Descriptors, t.Data); err != nil {
		return nil, err
	}
	spans, err := topicscan.Plan(ctx, adm, t.Descriptors, time.Time{})
	if err != nil {
		return nil, err
	}
	if spans.Err != nil {
		return nil, spans.Err
	}
	var out []Descriptor
	var bad error
	err = spans.Scan(ctx, brokers, opts, func(r *kgo.Record) error {
		var d Descriptor
		if err := json.Unmarshal(r.Value, &d); err != nil || d.ID == "" {
			bad = fmt.Errorf("savepoint: %s partition %d offset %d is not a savepoint descriptor", r.Topic, r.Partition, r.Offset)
			return nil
		}
		out = append(out, d)
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	starts, err := adm.ListStartOffsets(ctx, t.Data)
	if err != nil {
		return nil, fmt.Errorf("savepoint: listing %s offsets: %w", t.Data, err)
	}
	for i := range out {
		s, ok := starts.Lookup(t.Data, out[i].Partition)
		out[i].Expired = !ok || s.Err != nil || s.Offset > out[i].DataStart
	}
	slices.SortStableFunc(out, func(a, b Descriptor) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return a.Time.Compare(b.Time)
	})
	return out, bad
}

// Newest returns the newest unexpired savepoint of partition in ds (List's order) that covers
// target, and false if there is none.
func Newest(ds []Descriptor, partition int32, target map[string]int64) (Descriptor, bool) {
	for i := len(ds) - 1; i >= 0; i-- {
		if d := ds[i]; d.Partition == partition && !d.Expired && d.Covers(target) {
			return d, true
		}
	}
	return Descriptor{}, false
}

// Read calls fn with the key and value of each of d's data records, in order (the values are
// the changelog's: key records, tombstones never, partition chunks and record last). It fails
// when the data does not match d (a record of another savepoint in its range, or a count that
// differs), which would mean the data was tampered with or deleted.
func Read(ctx context.Context, brokers []string, opts []kgo.Opt, t Topics, d Descriptor, fn func(key, value []byte) error) error {
	spans := topicscan.Spans{Topic: t.Data, Offsets: map[int32][2]int64{d.Partition: {d.DataStart, d.DataEnd}}}
	var n int64
	err := spans.Scan(ctx, brokers, opts, func(r *kgo.Record) error {
		if id := headerValue(r, Header); id != d.ID {
			return fmt.Errorf("savepoint %s: %s partition %d offset %d belongs to savepoint %q", d.ID, r.Topic, r.Partition, r.Offset, id)
		}
		n++
		return fn(r.Key, r.Value)
	}, nil)
	if err != nil {
		return err
	}
	if n != d.Records {
		return fmt.Errorf("savepoint %s: read %d data records, its descriptor says %d", d.ID, n, d.Records)
	}
	return nil
}

func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
