package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"time"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/state"
)

// RestoreConfig is the restore workload: a partition of Keys keys, each a profile with an open
// visit and session, is rebuilt from its changelog into an empty Pebble store (replay), then
// restored from Pebble into a new sessionizer (load), then read back key by key at random from
// a reopened store (cold reads). Zero fields take the defaults given.
type RestoreConfig struct {
	// Keys in the partition. Default 1,000,000.
	Keys int
	// Dir is where the Pebble store lives (on disk, so reads are real). Default: a temporary
	// directory, removed afterwards.
	Dir string `json:",omitempty"`
	// BuildBatch is how many keys are generated (sessionized and snapshotted, untimed) per
	// replayed stretch. Default 100,000.
	BuildBatch int
	// ColdReads is the number of random point reads. Default 1,000,000.
	ColdReads int
	// SkipLoad skips restoring into memory: at 10M keys that needs about 25 GB of heap.
	SkipLoad bool
	// Seed for the cold reads' key order. Default 1.
	Seed uint64
}

// EnsureDefaults fills zero fields and returns c.
func (c *RestoreConfig) EnsureDefaults() *RestoreConfig {
	if c.Keys == 0 {
		c.Keys = 1_000_000
	}
	if c.BuildBatch == 0 {
		c.BuildBatch = 100_000
	}
	if c.ColdReads == 0 {
		c.ColdReads = 1_000_000
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	return c
}

// restoreKey is the state key of fixture key i.
func restoreKey(dst []byte, i int) []byte { return fmt.Appendf(dst, "pprofile-%09d", i) }

// RunRestore runs the restore workload. The result's events/s is the load (sessions restored
// from Pebble per second); replay and cold-read rates are in Extra.
func RunRestore(ctx context.Context, cfg RestoreConfig) (*Result, error) {
	cfg.EnsureDefaults()
	if cfg.Keys < 1 || cfg.BuildBatch < 1 || cfg.ColdReads < 0 {
		return nil, fmt.Errorf("bench: restore keys and build batch must be positive")
	}
	started := time.Now()
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "dwell-bench-restore-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	st, err := state.Open(state.Options{Dir: dir})
	if err != nil {
		return nil, err
	}
	defer func() {
		if st != nil {
			st.Close()
		}
	}()

	replay, records, changelogBytes, err := replayRestore(ctx, &cfg, st)
	if err != nil {
		return nil, err
	}
	r := &Result{Workload: "restore", Level: "state", Config: cfg, Started: started.UTC().Format(time.RFC3339), Extra: map[string]float64{}}
	r.Extra["replay_records"] = float64(records)
	r.Extra["replay_records_per_s"] = float64(records) / replay.wall.Seconds()
	r.Extra["replay_records_per_core_s"] = float64(records) / replay.cpu.Seconds()
	r.Extra["changelog_bytes_per_key"] = float64(changelogBytes) / float64(max(records, 1))

	// Load: reopen (empty block cache), restore every key into a new sessionizer.
	if st, err = reopen(st, dir); err != nil {
		return nil, err
	}
	if !cfg.SkipLoad {
		base := liveHeap()
		s, load, err := loadRestore(st, cfg.Keys)
		if err != nil {
			return nil, err
		}
		r.Events = int64(cfg.Keys)
		load.into(r)
		r.ActiveSessions = int64(cfg.Keys)
		r.HeapPerSession = heapPerActive(base, cfg.Keys)
		runtime.KeepAlive(s)
		r.Extra["load_sessions_per_s"] = float64(cfg.Keys) / load.wall.Seconds()
		r.Notes = append(r.Notes, "events = sessions restored from Pebble into a new sessionizer (the load phase)")
	} else {
		r.Notes = append(r.Notes, "load skipped (SkipLoad)")
	}

	// Cold reads: reopen again and read random keys.
	if st, err = reopen(st, dir); err != nil {
		return nil, err
	}
	if err := coldReads(st, &cfg, r); err != nil {
		return nil, err
	}
	if r.Events == 0 {
		r.LatencyMeaning += "; no load phase"
	}
	r.finish()
	return r, nil
}

// reopen closes st and opens the store in dir again (an empty block cache). On an error it
// returns nil and has closed st.
func reopen(st *state.Store, dir string) (*state.Store, error) {
	if err := st.Close(); err != nil {
		return nil, err
	}
	return state.Open(state.Options{Dir: dir})
}

// replayRestore is the workload's replay phase: the changelog of cfg.Keys keys is generated a
// batch at a time (untimed) and replayed into partition 0 of st (timed by the meter it returns,
// with the records and bytes replayed).
func replayRestore(ctx context.Context, cfg *RestoreConfig, st *state.Store) (replay meter, off, changelogBytes int64, err error) {
	var snap []byte
	for lo := 0; lo < cfg.Keys; lo += cfg.BuildBatch {
		if err := ctx.Err(); err != nil {
			return replay, 0, 0, err
		}
		hi := min(lo+cfg.BuildBatch, cfg.Keys)
		s, err := operators.NewSessionizer(operators.Config{}, 0, discard{})
		if err != nil {
			return replay, 0, 0, err
		}
		s.TrackChanges(true)
		for i := lo; i < hi; i++ {
			// A fresh value each: buffered events point into their record's bytes.
			val := fmt.Appendf(nil, `{"id":"e%d","type":"page-view","profile":"profile-%09d","session":"session-%09d","time":%d,"source":"web","context":{"page":{"url":"https://shop.example.com/p/%d"},"device":"mobile"}}`,
				i, i, i, 1_767_225_600_000+int64(i), i%500)
			s.Process(&operators.Record{Topic: "web", Offset: int64(i), Value: val, Timestamp: operators.NoTimestamp})
		}
		// A later event (past max_out_of_orderness, well within visit_gap) moves the watermark
		// past every key's event, so each has an open visit and session and nothing of theirs
		// waits in the reorder buffer.
		val := fmt.Appendf(nil, `{"type":"page-view","profile":"sentinel","time":%d}`, 1_767_225_600_000+int64(hi)+6000)
		s.Process(&operators.Record{Topic: "web", Offset: int64(hi), Value: val, Timestamp: operators.NoTimestamp})
		var recs []state.ChangelogRecord
		s.DrainChanges(func(c operators.Change) {
			snap, _ = s.AppendKeySnapshot(snap[:0], c.Key)
			k, v := state.ChangeRecord(c, snap)
			recs = append(recs, state.ChangelogRecord{Offset: off, Key: k, Value: v})
			changelogBytes += int64(len(k) + len(v))
			off++
		})
		replay.start()
		err = st.Replay(0, recs)
		replay.stop()
		if err != nil {
			return replay, 0, 0, err
		}
	}
	return replay, off, changelogBytes, nil
}

// loadRestore is the workload's load phase: every key of partition 0 of st restored into a new
// sessionizer, timed by the meter it returns; each key must come back with its open session.
func loadRestore(st *state.Store, keys int) (*operators.Sessionizer, meter, error) {
	var load meter
	s, err := operators.NewSessionizer(operators.Config{}, 0, discard{})
	if err != nil {
		return nil, load, err
	}
	load.start()
	p, err := st.Load(0, s.RestoreKey)
	load.stop()
	if err != nil {
		return nil, load, err
	}
	if stats := s.Stats(); stats.OpenSessions != keys || p.Keys != keys {
		return nil, load, fmt.Errorf("bench: restored %d keys and %d open sessions, want %d", p.Keys, stats.OpenSessions, keys)
	}
	return s, load, nil
}

// coldReads is the workload's cold-read phase: cfg.ColdReads point reads of random keys of
// st, their rate and latencies into r.
func coldReads(st *state.Store, cfg *RestoreConfig, r *Result) error {
	rng := rand.New(rand.NewPCG(cfg.Seed, 7))
	var cold meter
	var h histogram
	var key []byte
	cold.start()
	t0 := time.Now()
	for range cfg.ColdReads {
		key = restoreKey(key[:0], rng.IntN(cfg.Keys))
		v, ok, err := st.Get(0, string(key))
		if err != nil {
			return err
		}
		if !ok || len(v) == 0 {
			return fmt.Errorf("bench: cold read of %s found nothing", key)
		}
		t1 := time.Now()
		h.record(int64(t1.Sub(t0)))
		t0 = t1
	}
	cold.stop()
	if cfg.ColdReads > 0 {
		r.Extra["cold_reads_per_s"] = float64(cfg.ColdReads) / cold.wall.Seconds()
		r.Extra["cold_reads_per_core_s"] = float64(cfg.ColdReads) / cold.cpu.Seconds()
		h.into(r)
		r.LatencyMeaning = "one Pebble point read of a random key (fresh block cache; the OS page cache may hold the files)"
	}
	return nil
}

type discard struct{}

func (discard) Emit(*operators.Output) {}
