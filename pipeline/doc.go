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
// point therefore loses and duplicates nothing for read_committed consumers.
//
// Backpressure is structural: a cycle takes at most MaxPollRecords, and nothing more is polled
// until the cycle's transaction has ended.
package pipeline
