// Package topicscan reads a topic once, from a start to a fixed end, as dwell's operating tools
// do (dwell move, dwell log), and gives records the JSON form in which those tools and dwell tail
// print them.
//
// A scan is planned first (Plan): in every partition, from the log start or from the first
// offset at or after a time, up to the end offset listed at planning time, so that a scan ends
// even while the topic is written to. It then reads (Spans.Scan) with a client of its own:
//
//   - read_committed: records of aborted transactions are never passed on, nor are control
//     records; offsets are counted as read all the same.
//   - Within a partition records come in offset order; partitions interleave.
//   - A partition whose last offsets are records of a transaction aborted after the end offsets
//     were listed never reaches its end: 15s without a record ends the scan with an error that
//     names the partitions and how far each got.
//   - A partition whose offsets could not be listed is left out (Spans.Err says so; whether that
//     is an error is the caller's choice).
//
// Nothing here keeps state between calls: the clients are the caller's (Plan, Exist) or made
// and closed by the call (Scan).
package topicscan
