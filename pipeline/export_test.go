package pipeline

// Hooks for the external tests of package pipeline_test, which live outside the package so that
// they can use bench's generators (bench imports pipeline for its Kafka-level workloads).

var ErrCrashed = errCrashed

const RaceEnabled = raceEnabled

// SetCrashAt makes the processor return ErrCrashed at a named point of a cycle when f says so.
func (l *Live) SetCrashAt(f func(point string) bool) { l.crashAt = f }

// Abandon leaves the processor as a killed process would: no End, no Pebble commit, the
// client and the store closed without flushing anything.
func (l *Live) Abandon() error {
	l.stopWorkers()
	l.cl.Close()
	return l.store.Close()
}

// SetSavepointTaken makes the processor call f with each savepoint's snapshot as it is taken:
// its partition, id, and the changelog offset its state reflects.
func (l *Live) SetSavepointTaken(f func(partition int32, id string, changelogOffset int64)) {
	l.savepointTaken = f
}

// Restores counts the partitions this processor has restored.
func (l *Live) Restores() int64 { return l.restores.Load() }

// Watermarks returns the watermark of each partition this processor owns, as of its last
// cycle.
func (l *Live) Watermarks() map[int32]int64 {
	l.stats.Lock()
	defer l.stats.Unlock()
	w := make(map[int32]int64, len(l.stats.parts))
	for p, st := range l.stats.parts {
		w[p] = st.Watermark
	}
	return w
}
