package state

// Hooks for the external tests of package state_test, which live outside the package so that
// they can use bench's generators (bench imports state for its restore workload).

const NumTimers = numTimers

// CorruptFormat overwrites the stored format version, as a store written by another version
// of dwell would have it.
func (s *Store) CorruptFormat() error { return s.db.Set([]byte{tagFormat}, []byte{99}, nil) }
