// Package pipeline moves records between the outside world and the operators: the offline mode
// (RunOffline: JSON Lines in and out) and the live processor (Live: a franz-go consumer group).
//
// # The live processor
//
// Every processing cycle is one Kafka transaction (kgo.GroupTransactSession) holding the cycle's
// outputs, the changelog records of every key it changed plus each partition's snapshot, and the
// consumed offsets. Each assigned partition has one worker goroutine that owns its
// operators.Sessionizer; the main goroutine polls, hands each worker its records, waits for all
// of them, and ends the transaction. Then:
//
//   - committed: each worker commits its Pebble batch, recording the changelog offset after its
//     last changelog record, and evicts cold keys;
//   - not committed (a rebalance, a produce error): every worker is stopped and its partition is
//     rebuilt on next use from Pebble plus the changelog, so in-memory state never runs ahead of
//     what Kafka holds.
//
// A partition is restored before it processes anything: the changelog is read (read_committed,
// control records kept so the end is known) from the offset Pebble reflects to the last stable
// offset and replayed into Pebble, which is then loaded into a new sessionizer. A crash at any
// point therefore loses and duplicates nothing for read_committed consumers. The read starts at
// the changelog's log start when Pebble's offset is below it (its state is then dropped); a
// reset marker that dwell reset wrote (state.ResetRecordKey) drops the state replayed before it.
// The group's committed offsets are then checked against the input the state holds
// (checkOffsets): behind it, Run returns ErrOffsetsBehindState rather than skip the records in
// between. While a partition's input is below the offsets its last reset rewound from, its
// outputs carry the header ReplayHeader.
//
// Backpressure is structural: a cycle takes at most MaxPollRecords, and nothing more is polled
// until the cycle's transaction has ended.
//
// # Savepoints
//
// Every SavepointInterval each partition writes a savepoint (pipeline/savepoint is the format):
// a consistent copy of its state with the input offsets and watermark it reflects, which dwell
// reset rewinds to. It rides on the cycles (savepoints.go): at the end of a committed cycle,
// right after the worker's Pebble batch commits, a Pebble snapshot of the partition
// (state.Snapshot, evicted keys included); in each following cycle, at most SavepointCycleBytes
// of it as data records into the cycle's transaction; once the cycle holding the last of them
// has committed, the descriptor in the next one. Only then does the savepoint count, and its
// time goes into Pebble with that cycle's batch. A cycle that does not commit, a partition that
// stops, or an error abandons it (the snapshot is closed; its data stays without a descriptor,
// which readers never see).
//
// # The cycle
//
// Live.runOnce (cycle.go) reads as Kafka Streams' StreamThread.runOnce does, one method per
// phase: poll (at most MaxPollRecords, at most PollTimeout; workers of partitions revoked
// meanwhile stop), begin (the transaction, exactly-once only), restore (a worker for every
// partition assigned or polled that has none, rebuilt first; restore.go), process (every worker
// runs its job: process its records, punctuate — idle advancement and due timers — and write
// what changed, then its savepoint's share; worker.go), commit (one phase for both guarantees: flush, then end the
// transaction and commit Pebble to match, or, at-least-once, commit Pebble and then the
// offsets). Ownership: Live's parts map and the transaction belong to Run's goroutine; a
// worker's sessionizer, flow and batch belong to the worker while it runs a job and to Run's
// goroutine between jobs; the group's callbacks only note assignments under Live.mu
// (rebalance.go).
//
// # Interactive queries
//
// Live.Profile and Live.Partitions (query.go) are answered by the worker that owns the
// partition, on its goroutine: a query is a job the worker takes between cycle jobs, or between
// two records of a cycle (every 64), never a read of its maps from another goroutine. Between
// jobs, Run's goroutine holds the worker's stateMu while it evicts (the one part of finish that
// changes what a query reads), and the worker holds it while it answers. A key evicted to
// Pebble is decoded from the cold store without being loaded back (Sessionizer.Inspect), so a
// query changes nothing the worker processes. Answers reflect processed input, not yet
// necessarily committed. ErrNotOwner (the partition is not assigned here) and ErrRestoring
// carry the partition; the admin API (pipeline/admin) forwards the former to the owner, found
// with PartitionOwners from the URL each instance puts in its client id.
//
// # Files
//
//	config.go     LiveConfig, DefaultLiveConfig, validation, ErrConfig
//	live.go       Live: construction, rule sets, stats, Close
//	rebalance.go  the group's callbacks and readiness
//	cycle.go      Run, recovery from a failed cycle, and the cycle's phases
//	worker.go     the partition worker
//	restore.go    a partition rebuilt from Pebble plus the changelog
//	savepoints.go a partition's savepoints, written over the cycles after a Pebble snapshot
//	emit.go       a worker's outputs into the cycle's transaction, checked against limits and refusals
//	limits.go     each output topic's max.message.bytes, and the producer's batch limit to match
//	poison.go     records Kafka refuses for good: their inputs dead-lettered at the cycle's retry
//	flow.go       registry admission, rules and the event log around the sessionizer (live and offline)
//	offline.go    RunOffline: JSON Lines through the same operators and flow
//	offline_input.go  bounded lines, reads a cancelled run does not wait for
//	offline_cold.go   the offline key cap: a temporary Pebble store of evicted keys
//	jobs.go       scheduled jobs: the partition that fires each, what is due, the last fired times
//	metrics.go    the processor's Prometheus series
//
// The wire formats the pipeline shares with other tools live once: dead-letter headers in
// pipeline/deadletter, partition and changelog records in state.
package pipeline
