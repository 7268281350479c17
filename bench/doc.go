// Package bench holds dwell's workloads: generators of realistic input and the Run functions
// that measure dwell on them. Workloads are plain Config structs with no package state, so the
// CLI (dwell bench), the demo, the tests and the Go benchmarks all drive the same code.
//
// Workloads: web (the web-tracking generator, Web, against a warm state of known profiles),
// nexmark (Beam's Nexmark generator, Nexmark, and Query 11 as a dwell job, Q11Operators) and
// restore (changelog replay into Pebble, restore into a sessionizer, cold reads). Levels:
// LevelOperators runs decode and sessionize on one goroutine; LevelKfake and LevelBroker run
// the live processor (pipeline.Live) on kfake or on the brokers in DWELL_TEST_BROKERS.
//
// Every run returns a Result: events/s over wall time and over process CPU time (Getrusage),
// allocations and bytes per event, latency quantiles (whose meaning differs by level and is
// stated in the result), peak RSS and heap per active session. Only the processing is
// measured: input is generated ahead, in chunks between measured stretches (in-process), or
// produced before the processor starts (pipeline levels).
//
// Invariants that have caused bugs:
//   - The sessionizer keeps pointers into the bytes of events waiting in its reorder buffer, so
//     a chunk's buffer may be reused only once the watermark has passed all of its events: the
//     chunker rotates through enough buffers to cover max_out_of_orderness at the stream's rate
//     (keepChunks). With two buffers, Query 11 at 100,000 events/s and a 4s delay counted
//     sessions over overwritten bytes (TestQ11Workload pins it).
//   - Sampling latency by offset must match the exact offset fed, not just its ring slot: the
//     warm-up stream and the measured stream reuse offsets.
//   - A runtime.GC for heap figures must run while the measured state is still reachable
//     (runtime.KeepAlive), or the figure is of an empty heap.
//
// The regression gate (bench/gate) compares these benchmarks between a base commit and the
// working tree with benchstat.
package bench
