// Package reset rewinds a stopped dwell application (`dwell reset`), the counterpart of Kafka
// Streams' kafka-streams-application-reset: the group's input offsets and the partitions'
// state move together, so that what runs next is exactly a replay.
//
// # The plan
//
// Run refuses while the group has members (naming them): a running instance would go on from
// its own state. It computes a target offset per input partition (the earliest offsets, the
// first offsets at or after a time, or offsets from a file; partitions a file leaves out are
// left alone) and then, per partition, where the replay starts:
//
//   - to the earliest offsets: the state is emptied and the offsets go to the log start;
//   - otherwise: the state is the newest savepoint (pipeline/savepoint) whose input offsets are
//     at or before the target, and the offsets are that savepoint's, so the replay from there is
//     exactly the original processing (the same ids and bytes); with no such savepoint, the
//     partition starts over from the earliest offsets, emptied.
//
// The plan is printed (partition, input offsets from -> to, what happens to the state). With
// Config.Execute it is carried out; otherwise nothing changes.
//
// # Carrying it out
//
// In one Kafka transaction (transactional id dwell-reset-<application>): a reset marker
// (state.ResetRecordKey) to each planned partition of the changelog, followed by the
// savepoint's records when the state comes from one, and the group's new offsets
// (TxnOffsetCommit, as a producer's sendOffsetsToTransaction does for a group without members).
// Either all of it commits or none does: a reset killed half-way changes nothing, and running
// it again aborts the transaction it left open. A restore that meets the marker drops the state
// before it, so every instance, whatever its data dir holds, rebuilds the reset state.
//
// Then, best effort, the changelog is truncated up to each marker (DeleteRecords), so that
// restores no longer read the old state; Kafka refuses that on a compact-only changelog (the one
// dwell run --create-topics makes is compact,delete), and the reset is exact either way.
//
// The marker names the reset and the offsets the group had reached; every output a partition
// writes while its input is below them carries the header pipeline.ReplayHeader.
package reset
