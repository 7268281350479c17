package operators

// Hooks for a caller that drives a sessionizer over a file (pipeline.RunOffline): it
// dead-letters input it cannot hand over whole.

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
