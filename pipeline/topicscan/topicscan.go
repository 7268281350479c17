package topicscan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// silence is how long a scan waits for a record before it gives up on the partitions left.
const silence = 15 * time.Second

// MissingError names topics that do not exist.
type MissingError struct{ Topics []string }

func (e *MissingError) Error() string {
	return fmt.Sprintf("topics %s do not exist", strings.Join(e.Topics, ", "))
}

// Exist returns a *MissingError naming those of topics that do not exist, or the error of
// listing them.
func Exist(ctx context.Context, adm *kadm.Client, topics ...string) error {
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("listing topics: %w", err)
	}
	var missing []string
	for _, t := range topics {
		if td, ok := details[t]; !ok || td.Err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return &MissingError{Topics: missing}
	}
	return nil
}

// Spans are what a scan of Topic reads.
type Spans struct {
	Topic string
	// Offsets maps each partition with something to read to its offsets [start, end).
	Offsets map[int32][2]int64
	// Total counts the offsets to read.
	Total int64
	// Err is the error of listing the end offsets of the partitions left out for it, if any.
	Err error
}

// Plan lists the spans of topic: in each partition, from the first offset at or after since
// (the log start when since is zero) to the last stable offset (the end, for read_committed).
func Plan(ctx context.Context, adm *kadm.Client, topic string, since time.Time) (Spans, error) {
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return Spans{}, fmt.Errorf("listing the end offsets of %s: %w", topic, err)
	}
	var starts kadm.ListedOffsets
	if since.IsZero() {
		starts, err = adm.ListStartOffsets(ctx, topic)
	} else {
		starts, err = adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
	}
	if err != nil {
		return Spans{}, fmt.Errorf("listing the start offsets of %s: %w", topic, err)
	}
	s := Spans{Topic: topic, Offsets: map[int32][2]int64{}, Err: ends.Error()}
	ends.Each(func(e kadm.ListedOffset) {
		st, ok := starts.Lookup(topic, e.Partition)
		if !ok || e.Err != nil || st.Err != nil || st.Offset >= e.Offset {
			return
		}
		s.Offsets[e.Partition] = [2]int64{st.Offset, e.Offset}
		s.Total += e.Offset - st.Offset
	})
	return s, nil
}

// Scan reads the spans with a read_committed client of brokers (opts added to its options),
// calling each for every data record and tick (if not nil) with the offsets read so far after
// every fetch. It returns each's first error, ctx's error, or the error that ended the reading.
func (s Spans) Scan(ctx context.Context, brokers []string, opts []kgo.Opt, each func(*kgo.Record) error, tick func(read int64)) error {
	if len(s.Offsets) == 0 {
		return nil
	}
	consume := make(map[int32]kgo.Offset, len(s.Offsets))
	for p, o := range s.Offsets {
		consume[p] = kgo.NewOffset().At(o[0])
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.Topic: consume}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords()}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	return s.read(ctx, cl, each, tick)
}

// read reads each partition from its span's start up to its end (exclusive).
func (s Spans) read(ctx context.Context, cl *kgo.Client, each func(*kgo.Record) error, tick func(int64)) error {
	left := len(s.Offsets)
	var pos int64
	done := map[int32]bool{}
	next := map[int32]int64{}
	for p, o := range s.Offsets {
		next[p] = o[0]
	}
	for left > 0 {
		// A partition whose last offsets are records of a transaction aborted later than the
		// end offsets were taken never reaches its end; a long silence ends the scan.
		pctx, cancel := context.WithTimeout(ctx, silence)
		fetches := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		if pctx.Err() != nil && fetches.NumRecords() == 0 {
			var short []string
			for p, o := range s.Offsets {
				if !done[p] {
					short = append(short, fmt.Sprintf("%d (at %d of %d)", p, next[p], o[1]))
				}
			}
			return fmt.Errorf("%s: nothing more to read for %s from partitions %s; their ends may be aborted transaction records, or the brokers unreachable",
				s.Topic, silence, strings.Join(short, ", "))
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue
			}
			return fmt.Errorf("reading %s partition %d: %w", fe.Topic, fe.Partition, fe.Err)
		}
		var err error
		fetches.EachRecord(func(r *kgo.Record) {
			if err != nil || done[r.Partition] {
				return
			}
			end := s.Offsets[r.Partition][1]
			if r.Offset >= end {
				return
			}
			pos += r.Offset + 1 - next[r.Partition]
			next[r.Partition] = r.Offset + 1
			if !r.Attrs.IsControl() {
				err = each(r)
			}
			if r.Offset >= end-1 {
				done[r.Partition] = true
				left--
			}
		})
		if tick != nil {
			tick(pos)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Record is r as dwell's tools print it, for a JSON encoder: topic, partition, offset, timestamp
// (RFC 3339, UTC), key, the value inline when it is JSON (as a string when it is other UTF-8
// text, as value_base64 otherwise), and the headers (the last value of each).
func Record(r *kgo.Record) any {
	out := map[string]any{
		"topic": r.Topic, "partition": r.Partition, "offset": r.Offset,
		"timestamp": r.Timestamp.UTC().Format(time.RFC3339Nano), "key": string(r.Key),
	}
	if json.Valid(r.Value) {
		out["value"] = json.RawMessage(r.Value)
	} else if utf8.Valid(r.Value) {
		out["value"] = string(r.Value)
	} else {
		out["value_base64"] = r.Value
	}
	if len(r.Headers) > 0 {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		out["headers"] = h
	}
	return out
}
