package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/state"
)

// Bounded memory offline, the live worker's way (worker.go): each partition's sessionizer has a
// cold store and tracks changed keys; when a partition holds more than MaxCachedKeys keys, its
// changes are drained into a Pebble batch and it evicts down to the cap. Offline has no cycles
// and no changelog: RunOffline checks every spillEvery lines, and the store is temporary
// (made under TempDir on the first spill, written without a WAL or fsync, removed at the end).
// A run that never passes the cap writes nothing to disk.

// spillEvery is how many lines pass between checks of the partitions' key counts, so a
// partition holds at most about MaxCachedKeys + spillEvery keys (more while timers due at once
// load many evicted keys back).
const spillEvery = 1024

// spillBatchBytes bounds a Pebble batch of one spill: the first spill of a partition writes
// every key it holds.
const spillBatchBytes = 16 << 20

// coldKeys is the temporary store of a run's evicted keys.
type coldKeys struct {
	parent string          // where to make the store's directory
	max    int             // MaxCachedKeys
	ctx    context.Context // the run's: once it is done, loading panics with interrupted
	dir    string          // the store's directory, once made
	store  *state.Store
	snap   []byte
}

// partition is partition p's cold store, for Sessionizer.SetColdStore.
func (c *coldKeys) partition(p int32) operators.ColdStore { return coldPartition{c, p} }

type coldPartition struct {
	c *coldKeys
	p int32
}

// LoadKey reads an evicted key back. Loading every evicted key is what an end-of-input flush
// does, so it is also where a stopped run is interrupted (see interrupted).
func (cp coldPartition) LoadKey(key string) ([]byte, bool, error) {
	if cp.c.ctx.Err() != nil {
		panic(interrupted{})
	}
	if cp.c.store == nil {
		return nil, false, nil // nothing has been evicted yet
	}
	return cp.c.store.Get(cp.p, key)
}

// open makes the store in a new directory under parent.
func (c *coldKeys) open() error {
	dir, err := os.MkdirTemp(c.parent, "dwell-process-*")
	if err != nil {
		return fmt.Errorf("pipeline: making the store of cold keys: %w (set the temporary directory with --temp-dir)", err)
	}
	st, err := state.Open(state.Options{Dir: dir, CacheBytes: offlineCacheBytes, MemTableBytes: offlineMemTableBytes, DisableWAL: true})
	if err != nil {
		return fmt.Errorf("pipeline: %w", errors.Join(err, os.RemoveAll(dir)))
	}
	c.dir, c.store = dir, st
	return nil
}

// The temporary store's Pebble settings: memory for it is the block cache plus up to four
// memtables (state.Open queues that many before writes stall).
const (
	offlineCacheBytes    = 32 << 20
	offlineMemTableBytes = 16 << 20
)

// spill stores partition p's changed keys and evicts it down to the cap.
func (c *coldKeys) spill(p int32, s *operators.Sessionizer) error {
	if c.store == nil {
		if err := c.open(); err != nil {
			return err
		}
	}
	b := c.store.NewBatch(p)
	var err error
	s.DrainChanges(func(ch operators.Change) {
		if err != nil {
			return
		}
		if b.Len() >= spillBatchBytes {
			if err = b.Commit(); err != nil {
				b = nil
				return
			}
			b = c.store.NewBatch(p)
		}
		var ok bool
		c.snap, ok = s.AppendKeySnapshot(c.snap[:0], ch.Key)
		if !ok && !ch.Deleted {
			err = fmt.Errorf("pipeline: partition %d: changed key %q has no state", p, ch.Key)
			return
		}
		err = b.PutKey(ch, c.snap)
	})
	if err != nil {
		if b != nil {
			b.Discard()
		}
		return err
	}
	if err := b.Commit(); err != nil {
		return err
	}
	s.Evict(c.max)
	return s.Err()
}

// close closes the store and removes its directory.
func (c *coldKeys) close() error {
	if c.store == nil {
		return nil
	}
	err := c.store.Close()
	c.store = nil
	if rerr := os.RemoveAll(c.dir); rerr != nil {
		err = errors.Join(err, fmt.Errorf("pipeline: removing the store of cold keys: %w", rerr))
	}
	return err
}
