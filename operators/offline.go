package operators

// Hooks for a caller that drives a sessionizer over a file (pipeline.RunOffline) rather than in
// cycles: it decides when to store changed keys and evict (cold.go) from the counts, and
// dead-letters input it cannot hand over whole.

// Resident reports how many keys are in memory and how many keys have changes not yet drained
// (DrainChanges; forgotten keys among them, which are recycled only once drained).
func (s *Sessionizer) Resident() (keys, undrained int) { return len(s.keys), len(s.dirty) }

// Reject dead-letters rec without decoding it, with reason and detail, counted as Process
// counts a record that fails to decode. The caller uses it for input it had to cut (a line
// longer than MaxEventBytes, of which it kept only the start).
func (s *Sessionizer) Reject(rec *Record, reason Reason, detail string) {
	s.stats.Records++
	s.stats.Dead++
	s.stats.DeadByReason[reason]++
	s.o = Output{Kind: KindDead, Record: rec, Reason: reason, Detail: detail}
	s.out.Emit(&s.o)
}
