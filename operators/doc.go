// Package operators is the deterministic core of dwell: it decodes tracking events, keeps
// per-key profile, visit and session state, fires event-time timers, and emits system events,
// enriched events, late events and dead letters. It knows nothing of Kafka, Pebble or the wall
// clock, and starts no goroutines; the pipeline feeds it records and persists what it reports.
//
// # Ownership
//
// A Sessionizer owns one partition: its keys, its timers and its watermark. It is driven by
// exactly one goroutine and has no locks. Outputs go, in order, to an Emitter, synchronously;
// an Output is valid only during Emit.
//
// # Input
//
// A record is one event, or a batch in Tracardi's /track shape (an object with an events
// array): Decode reports ErrBatch and Decoder.Elements turns each element into a
// self-contained event object (the batch's source, session, profile, context and time, then
// the element's own members; an id derived from the record and the element's index), which
// the Sessionizer processes as a record at the batch's offset. An element that fails is
// dead-lettered alone. Buffered events are persisted by their raw value and decoded again on
// restore, so an element's value must carry everything: that is why it is synthesized.
//
// # Time
//
// The watermark is the largest event time seen minus MaxOutOfOrderness (or, once the partition
// has been idle for IdleTimeout of wall-clock time, the Tick time minus MaxOutOfOrderness). It
// never moves backwards. Events at or ahead of the watermark wait in a reorder buffer and are
// processed in (event time, id, arrival) order once the watermark reaches them, so any arrival
// order within the tolerance gives the same output. Before an event at time t is processed,
// every timer with a deadline before t fires, in (deadline, kind, key) order; a timer never
// fires before the watermark has passed its deadline. Events behind the watermark are handled at
// once. One further behind it than the allowed lateness (Config.AllowedLateness, the visit gap
// by default) is late whatever its key's state, keyless events included (LateBeyondLateness):
// beyond one gap the watermark has passed every end it could belong to, so it could only
// create history an offline run does not have. Within the allowed lateness, an event joins the key's open visit
// when it falls inside it, is late when it predates the open visit or falls into or within
// visit_gap after an ended one (LateBeforeVisit, LateVisitEnded), and otherwise is processed as
// usual (a key with no visit near it starts one). A late event changes no state: it creates no
// key, profile, visit or session, and moves no time, counter or timer of its key, so profile_ttl
// never forgets a profile because of it. Its output (KindLate) still carries the key's open
// visit and extension when the key has state, for the rules flagged late. Flush ends input as
// if the watermark reached +infinity.
//
// Before an event can reach the watermark, the guard (guard.go) dead-letters it with
// ReasonTimeTooFar when its time is more than MaxTimeJump ahead of the watermark, more than
// MaxFutureSkew ahead of a wall clock passed in (Tick, SetWallClock: live only), or after
// LatestEventTime, so that one event cannot end every visit of its partition and no output
// time passes MaxTime (9999-12-31T23:59:59.999Z).
//
// # Invariants
//
//   - Same records in, same bytes out: ids are derived from content (contentID), times from
//     event time, and every ordering decision has a total, content-based tie-break. (Live, the
//     guard's wall-clock bound also depends on the wall clock passed in.)
//   - A buffered event points into its record's value; the value must not change until the
//     event has been processed.
//   - Timers are lazy: a key's pending timer may be earlier than its real deadline (activity
//     moves deadlines later without touching the wheel); when it fires early it re-arms. A
//     timer is never later than the real deadline.
//   - For one key at one instant, session-closed precedes visit-ended; for one input event,
//     profile-created, session-opened and visit-started precede the event.
//   - A key unseen for ProfileTTL is forgotten once nothing of it is open; with change
//     tracking on it is reported Deleted before its state is recycled.
//   - Steady-state processing allocates nothing: key states and key strings are carved from
//     chunks, and visits and sessions are recycled with their buffers.
package operators
