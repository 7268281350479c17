// Package rules is dwell's deterministic workflow core: rules that run on every event (input
// events, system events, and events a rule scheduled), the event registry, and the per-key
// state rules keep (traits, tags, counters, scheduled events). Like package operators it knows
// nothing of Kafka, Pebble or the wall clock and starts no goroutines.
//
// # Pieces
//
//   - Config (Load): a rules file, compiled. Immutable; one value per version, shared by every
//     partition. A file that fails to load returns a *LoadError (rule name, line, column) and
//     replaces nothing, so the old config stays live.
//   - Registry (LoadRegistry): per event type a description, an optional JSON Schema for
//     `properties`, a queue, enabled and ephemeral flags; and the policy for unregistered
//     types (accept, flag, reject). The queue (and description) applies to every event the
//     rules see; admission (schema, enabled, ephemeral, the policy) only to input events:
//     system events and fired schedules are dwell's own, never flagged, rejected or dropped,
//     and system-event types may be registered with a description and a queue only. Immutable like Config. It is a file of its own
//     or the `registry` section of a rules file (Config.Registry: one version for both).
//   - Engine: one per partition, owned by the partition's goroutine. Admit(type, properties) is
//     the registry's verdict, taken before the event is sessionized; Apply(env, state, outcome)
//     runs the rules on one event and reports everything in the Outcome: rules fired, actions
//     taken, outputs, timer operations, whether the state changed, and the event-log state.
//     SetConfig swaps the config at a cycle boundary.
//   - ProfileState: one per key, with a compact canonical binary encoding (AppendEncode,
//     Decode) for the changelog and the store; Changes collects the keys a cycle changed.
//
// # Order and errors
//
// Rules run in a fixed order: priority descending, then name ascending. Rules whose `on` cannot
// match the event's type cost nothing: exact types are a map lookup, patterns with '*' are
// matched once per type and cached per engine. A rule fires when its `on`, `source` and `when`
// match; its actions then run in order. A `stop` action ends evaluation: no later action or rule
// runs. A run-time error in a condition skips the rule; an error in an action skips the rule's
// remaining actions (those before it took effect); either way the other rules still run and the
// event's state is `error` with the first error as detail (and Outcome.DeadLetter is set when
// the file says `on_error: dead-letter`). Nothing panics and nothing stops the partition.
//
// Late events (behind the watermark; EventView.Late) run only the rules marked `late: true`.
//
// # Conditions
//
// `when` is an expr expression (github.com/expr-lang/expr), type-checked at load against
//
//	event    id, type, time (Unix ms), source, profile, session, late, system, tags (list),
//	         properties.PATH (any depth: event.properties.cart.total), traits.PATH (the input
//	         event's own traits, such as event.traits.email; absent for dwell's events)
//	profile  id, traits.NAME (string; "" when unset), counters.NAME (number; 0 when unset),
//	         tags (list)
//	visit    open, id, started_at, last_activity, duration_ms, event_count, page_view_count,
//	session  entry_url, exit_url (see "What each event sees")
//
// and bounded by a node limit (Options.MaxConditionNodes) and, when it runs, by a budget of
// the bytes its string and list operators read (Limits.MaxConditionBytes; see budget.go). The
// compiled subset has no loops: literals; fields as above; ! not - ; && and || or
// (short-circuit); == != < <= > >= on numbers, strings, booleans, nil; + - * / % on numbers;
// contains, startsWith, endsWith; matches with a constant pattern; `x in [constants]`,
// `s in event.tags`, `s in profile.tags`; len(string or list). Anything else (expr's ranges,
// closures, all, map, filter, ...) is a load error. Properties are read lazily from the raw JSON, only the paths
// conditions (and plain template fields) name, in one scan per event; their type is known only at run time: a missing (or null)
// property makes an ordering comparison, contains/startsWith/endsWith/matches and `in` false
// and equals only nil; a property of the wrong type (a string compared with a number) is a
// run-time error of the rule. Numbers are float64.
//
// # What each event sees
//
// profile is always the key's state (traits, tags, counters; empty for a new key, and for an
// event with neither profile nor session, whose state is not kept). event.system is true for
// system events and fired schedules, event.late for late events. The rest depends on what
// triggered the rules (the pipeline fills the Env with SetEvent, SetSystemOutput and
// SetTimerOutput):
//
//	input event     event.*: the event as decoded; properties its own. visit: the key's open
//	                visit, this event counted (open true). session: the event's session, this
//	                event counted; not set (open false) for an event without a session.
//	late event      event.* as for an input event, late true; only `late: true` rules run.
//	                visit: the key's open visit, if any, without this event; session: not set.
//	profile-created properties {}. visit, session: not set (nothing is open yet).
//	session-opened  properties {visit_id (when a visit is open), started_at}. session: the
//	                new session (open, no events yet); visit: the key's open visit, if any.
//	visit-started   properties {visit_id, started_at, entry_url, device}. visit: the new
//	                visit (open, no events yet); session: the triggering event's session.
//	visit-ended     properties: the summary, as written to dwell.system-events: visit_id,
//	                reason (inactivity, max-duration, shutdown-flush), started_at, ended_at
//	                (RFC 3339), duration_ms, event_count, page_view_count, session_count,
//	                entry_url, exit_url, source, device (null when unknown), event_types (a
//	                map of type to count, capped) and other_types (when over the cap). visit:
//	                the visit that ended, as it ended, open false; session: not set.
//	session-closed  properties: the summary as for visit-ended, without session_count, with
//	                reason also end-event or max-open-sessions. session: the session that
//	                closed, open false; visit: not set.
//	fired schedule  event: id (the schedule's), type, time (its deadline), profile (session
//	                for a profile-less key), session (of the key's session below), properties
//	                (the schedule's), source "". visit: the key's open visit at the deadline
//	                (open false when it has ended: every visit deadline up to the schedule's
//	                fired first); session: the key's open session active last at the deadline.
//
// Counts of an opening event's visit or session do not include the event that opened it (its
// rules run before the input event is counted).
//
// # Actions
//
//	emit:      {type: T, topic: X | queue: Q, key: TEMPLATE, properties: {name: TEMPLATE}}
//	notify:    {channel: C, to: [TEMPLATE], subject: TEMPLATE, body: TEMPLATE,
//	            params: {name: TEMPLATE}, queue: Q}     params render first, visible as .params;
//	                                                    channel and to are required (a load
//	                                                    error), every to rendering empty is a
//	                                                    rule error
//	set_trait: {name: N, value: TEMPLATE}
//	tag: T | [T...]          untag: T | [T...]
//	increment: N | {counter: N, by: INT}
//	schedule:  {name: N, type: T, after: DURATION | at: TEMPLATE, properties: {name: TEMPLATE}}
//	cancel:    N
//	route:     Q
//	stop:      true
//
// Templates are text/template with a small function set (see template.go); a template that
// does not parse is a load error. Each evaluation has a budget of steps and of bytes
// (Limits.MaxTemplateSteps, MaxTemplateBytes; see budget.go): going over it is a rule error,
// and what a template shows going over it, or recursion, is a load error. Ids of derived events, notifications and timers derive from
// the cause event's id, the rule and the action, never from randomness or the clock, so a
// replay produces the same bytes.
//
// # Scheduled events
//
// A schedule is a Timer in the key's ProfileState (at most one per name; scheduling a name
// again replaces it, cancel removes it), reported as TimerOps so that the pipeline can keep its
// time-ordered timer index, whose single deadline per key is ProfileState.NextDeadline. When
// the watermark passes it, the pipeline calls PopDue, fills an Env with SetTimer and Applies
// each fired timer like an event of its type, at its deadline. Deadlines are event time, at
// most operators.MaxTime (9999-12-31T23:59:59.999Z): a later one is a rule error.
//
// Decided: a fired schedule is not activity (it neither extends nor opens a visit or session,
// is not counted in their summaries, and never creates a profile); it sees the key's visit
// and session at its deadline ("What each event sees"); the registry gives it its type's queue
// and description only. At the end of offline input (operators' Flush) schedules fire up to
// the largest event time seen and later ones stay pending (operators.Stats.ExtPending).
//
// # Scheduled jobs
//
// A rules file's `jobs:` (jobs.go) are cron expressions in a time zone, or intervals, that emit
// an event of a type with templated properties. Job.Next and Job.Due say when a job is due
// (daylight saving time as Vixie cron; the catch-up policy for fires missed while nothing ran);
// Engine.JobEvent renders the fired event, with an id from the job's name, scheduled time and
// key (JobID), which the pipeline Applies like a fired schedule. Where and when a job fires,
// and the record that it did, are the pipeline's (pipeline/jobs.go).
//
// # Persistence
//
// Changes is the seam for state/ and the changelog, like operators.Change: the pipeline notes
// each key whose Outcome.StateChanged (or whose timers PopDue took) and drains the cycle's keys
// with their encoded state and their timer deadline, now and as persisted before.
package rules
