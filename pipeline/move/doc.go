// Package move copies the records of one topic that match a filter to another topic
// (`dwell move`): typically dead letters, once their cause is fixed, back to an input topic for
// reprocessing. cmd/dwell binds its flags to a Config and calls Run.
//
// # What is read
//
// The committed records of Config.From, from the log start (or the first record at or after
// Config.Since) to the end offsets listed when Run starts, as pipeline/topicscan reads them:
// records of aborted transactions are never moved, and records written during the run are not
// read. Records are then selected by timestamp ([Since, Until)) and by Config.Filter, an expr
// expression over a Record; the filter is type-checked before anything is read, and one that
// fails on a record skips that record (counted and reported, never moved).
//
// # What is written
//
// A copy keeps the record's key, value and headers, plus one ReprocessOf header naming the
// record it was copied from (topic/partition/offset; an earlier one is replaced). Its timestamp
// is the time of the move, so retention counts from it, and its key picks its partition. Unless
// Config.EventLogTopic is empty, each copy is logged there as a transferred event-log entry
// (rules.AppendLogJSON). For a dead letter the entry names the input record the dead-letter
// headers point to (deadletter.Read), and the event id is derived from it as the processor
// derives it, so the entry joins that event's earlier ones.
//
// Copies are produced asynchronously, outside any transaction: a move interrupted or failing
// half-way leaves what it wrote, and running it again copies again. An interrupt (ctx) stops the
// scan, but what was matched is still written, flushed (for up to a minute) and counted. The
// first write error stops the scan. With Config.DryRun nothing is written and neither To nor
// the event-log topic need exist.
//
// # Output
//
// Run writes a progress line every Config.Progress and a final count to its stderr writer, and,
// in a dry run, the matching records as JSON lines (topicscan.Record) to its stdout writer. It
// keeps no state between calls; the clock is Config.Now.
package move
