// Package state keeps dwell's durable per-partition state in Pebble: a local, rebuildable copy
// of what the changelog topic holds.
//
// # What is stored
//
// For each partition: one snapshot per key (operators.AppendKeySnapshot), a time-ordered timer
// index (partition, deadline, kind, key) so that due timers of keys not in memory are found with
// one ordered scan, the partition snapshot (watermark and reorder buffer), and the changelog
// offset the stored state reflects. Every key starts with a table tag and the partition, so a
// partition is read with one prefix scan and reset with one range deletion per table (for
// reprocessing from a rewound offset).
//
// # Atomicity and durability
//
// A processing cycle's writes for one partition are one Batch, committed after the cycle's
// Kafka transaction commits and discarded when it aborts. Batches are not fsynced: Kafka is the
// source of truth, and because the changelog offset is written in the same batch as the state it
// describes, a partition restored after a crash replays the changelog from exactly where its
// local state ends.
//
// # Invariants
//
//   - The timer index holds exactly each key's current real deadlines: PutKey deletes the
//     entries named by Change.Persisted and writes Change.Deadlines.
//   - Only the partition's owning worker writes its keys; Load runs before that worker
//     processes anything.
//   - The layout has a format version; a store of another version is refused (ErrFormat) rather
//     than misread.
//
// # Changelog and restore
//
// The changelog topic has the input's partition count and is keyed by state key, so compaction
// keeps each key's latest record (ChangeRecord; tombstones for forgotten keys) plus the
// partition snapshot under PartitionRecordKey. A partition restores by Load (which gives the
// changelog offset its local state reflects), Replay of the changelog from there to the end,
// and Load again into a new sessionizer; an empty or lost data dir replays from offset 0, and a
// compacted changelog restores the same state.
//
// pipeline.Live drives it: it produces the changelog records in each cycle's transaction,
// commits the batch after it, and restores a partition this way on assignment.
package state
