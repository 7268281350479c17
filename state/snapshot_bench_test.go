package state_test

import (
	"fmt"
	"testing"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/state"
)

var sink []byte

// BenchmarkSnapshotRead measures what a savepoint costs to read: a Pebble snapshot of a
// partition of 1M keys (the profiles and sessions of a generated web stream, B/key as the
// changelog holds them), on disk, read to the end in 256 KiB shares (the default
// --savepoint-cycle-bytes) with each record copied out as the live processor copies it into
// the record it produces. One op is one whole savepoint; ns/key, keys/s and MB/s are per key
// record.
//
//	go test ./state -run '^$' -bench SnapshotRead -benchtime 3x -count 3
func BenchmarkSnapshotRead(b *testing.B) {
	const n = 1_000_000
	st, err := state.Open(state.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	// The keys of a generated web stream (profiles and sessions with open visits), stored
	// again and again under new names up to n: reading does not look inside them.
	var out collect
	s, _ := operators.NewSessionizer(operators.Config{}, 0, &out)
	s.TrackChanges(true)
	g, err := bench.NewWeb(bench.WebConfig{Profiles: 5000, Rate: 50})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 20_000 {
		r := g.Next(nil)
		s.Process(&operators.Record{Topic: "web", Offset: int64(i), Value: r.Value, Timestamp: r.Timestamp})
	}
	type keyState struct {
		c    operators.Change
		snap []byte
	}
	var fixture []keyState
	s.DrainChanges(func(c operators.Change) {
		if snap, ok := s.AppendKeySnapshot(nil, c.Key); ok {
			fixture = append(fixture, keyState{c, snap})
		}
	})
	var total int64
	for i := 0; i < n; i += 10_000 {
		bt := st.NewBatch(0)
		for j := i; j < i+10_000; j++ {
			f := fixture[j%len(fixture)]
			c := f.c
			c.Key = fmt.Sprintf("%s-%08d", c.Key, j)
			if err := bt.PutKey(c, f.snap); err != nil {
				b.Fatal(err)
			}
			total += int64(len(c.Key) + len(state.AppendKeyRecord(nil, c.Deadlines, f.snap)))
		}
		if i+10_000 >= n {
			if err := bt.PutPartition(state.AppendPartitionRecord(nil, map[string]int64{"web": n}, []byte{1, 0}), n); err != nil {
				b.Fatal(err)
			}
		}
		if err := bt.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(total)
	b.ReportAllocs()
	var keys int64
	for b.Loop() {
		sn, err := st.Snapshot(0)
		if err != nil {
			b.Fatal(err)
		}
		for done := false; !done; {
			done, err = sn.Read(256<<10, func(k, v []byte) error {
				rec := make([]byte, len(k)+len(v)) // as the live processor copies it out
				copy(rec, k)
				copy(rec[len(k):], v)
				sink = rec
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		keys = sn.Keys()
		if err := sn.Close(); err != nil {
			b.Fatal(err)
		}
	}
	if keys != n {
		b.Fatalf("read %d keys, want %d", keys, n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(keys*int64(b.N)), "ns/key")
	b.ReportMetric(float64(keys*int64(b.N))/b.Elapsed().Seconds(), "keys/s")
	b.ReportMetric(float64(total)/float64(n), "B/key")
}
