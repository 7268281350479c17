package operators

import (
	"container/heap"
	"fmt"
)

// Bounded memory. A sessionizer with a ColdStore keeps only some keys in memory: Evict drops
// clean keys (their state is already in the store), a lookup that misses loads the key back,
// and the earliest deadline of every evicted key waits in a small heap so that its timers still
// fire in order: before the wheel passes a cold deadline, that key is loaded and its timers are
// re-armed. Output is the same as with every key in memory.

// ColdStore gives back the snapshots of evicted keys. state/ implements it over Pebble.
type ColdStore interface {
	// LoadKey returns the key's snapshot (AppendKeySnapshot), or ok false if none is stored.
	LoadKey(key string) (snapshot []byte, ok bool, err error)
}

// SetColdStore enables Evict and loading keys back from cs. It requires change tracking: only
// keys whose changes have been drained (and, by the caller, stored) are evicted.
func (s *Sessionizer) SetColdStore(cs ColdStore) {
	s.cold = cs
	s.track = true
}

// Err reports the first error loading a cold key. After it the sessionizer processes nothing
// more; the pipeline aborts the cycle and rebuilds the partition.
func (s *Sessionizer) Err() error { return s.err }

type coldEntry struct {
	deadline int64
	key      string
}

type coldHeap []coldEntry

func (h coldHeap) Len() int           { return len(h) }
func (h coldHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h coldHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *coldHeap) Push(x any)        { *h = append(*h, x.(coldEntry)) }
func (h *coldHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// Evict drops clean keys from memory, least recently used first (CLOCK: a key used since the
// hand last passed gets a second chance), until at most maxKeys remain or every remaining key
// is dirty. It returns how many it evicted. Call it after the cycle's changes are stored.
func (s *Sessionizer) Evict(maxKeys int) int {
	if s.cold == nil {
		return 0
	}
	evicted := 0
	total := 0
	for _, slab := range s.slabs {
		total += len(slab)
	}
	// Two sweeps at most: the first may only clear reference bits.
	for step := 0; step < 2*total && len(s.keys) > maxKeys; step++ {
		slab := s.slabs[s.hand.slab]
		k := &slab[s.hand.i]
		if s.hand.i++; s.hand.i == len(slab) {
			s.hand.i = 0
			s.hand.slab = (s.hand.slab + 1) % len(s.slabs)
		}
		if k.key == "" || k.deleted || s.keys[k.key] != k {
			continue // free, forgotten or never used
		}
		if k.ref {
			k.ref = false
			continue
		}
		if k.dirty {
			continue
		}
		s.evict(k)
		evicted++
	}
	s.stats.Evicted += uint64(evicted)
	return evicted
}

func (s *Sessionizer) evict(k *keyState) {
	first := int64(0)
	ds := s.deadlines(k)
	if s.extLeftPending(ds[timerExt]) {
		// A schedule the final flush has already left pending (fireExt, counted there) and the
		// forget timer that waits for it: neither may wake the key again.
		ds[timerExt], ds[timerForget] = 0, 0
	}
	for _, d := range ds {
		if d != 0 && (first == 0 || d < first) {
			first = d
		}
	}
	if first != 0 {
		heap.Push(&s.coldTimers, coldEntry{deadline: first, key: k.key})
	}
	// Open visits and sessions stay counted: they are open, only not in memory.
	visits, sessions := s.stats.OpenVisits, s.stats.OpenSessions
	s.dropKeyState(k)
	s.stats.OpenVisits, s.stats.OpenSessions = visits, sessions
	delete(s.keys, k.key)
	s.release(k)
}

// loadCold brings an evicted key back from the cold store; nil if it is not stored.
func (s *Sessionizer) loadCold(key []byte) *keyState {
	if s.cold == nil || s.err != nil {
		return nil
	}
	if _, gone := s.forgotten[string(key)]; gone {
		return nil // forgotten this cycle: what the store holds is stale
	}
	b, ok, err := s.cold.LoadKey(string(key))
	if err != nil {
		s.err = fmt.Errorf("operators: partition %d: loading key %q: %w", s.partition, key, err)
		return nil
	}
	if !ok {
		return nil
	}
	if err := s.restoreKey(b, false); err != nil {
		s.err = fmt.Errorf("operators: partition %d: restoring key %q: %w", s.partition, key, err)
		return nil
	}
	s.stats.Loaded++
	return s.keys[string(key)]
}

// wakeCold loads every evicted key with a deadline at or before target, so that the wheel
// fires its timers in order, each load a unit of the budget; false when the budget (or an
// error) stopped it.
func (s *Sessionizer) wakeCold(target int64) bool {
	for len(s.coldTimers) > 0 && s.coldTimers[0].deadline <= target && s.err == nil {
		if _, hot := s.keys[s.coldTimers[0].key]; hot {
			heap.Pop(&s.coldTimers) // loaded since; its timers are in the wheel
			continue
		}
		if !s.moreLoads() {
			return false
		}
		e := heap.Pop(&s.coldTimers).(coldEntry)
		s.loadCold([]byte(e.key))
	}
	return s.err == nil
}

// extLeftPending reports whether an extension deadline d is one the final flush has passed and
// left pending: after the last event time seen, at or before where the wheel stands.
func (s *Sessionizer) extLeftPending(d int64) bool {
	return s.flushing && d != 0 && d > s.maxSeen && d <= s.wheel.Now()
}
