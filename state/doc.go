// Package state will hold dwell's durable per-partition state in Pebble: key states, the timer
// index and the changelog offset, with a bounded hot cache in front (the live-processor issue).
//
// Nothing is implemented here yet. The seam it implements is in package operators:
// Sessionizer.TrackChanges and DrainChanges report the keys a processing cycle changed with
// their real timer deadlines, and AppendTimerKey lays out timer keys as (partition, deadline,
// kind, key), big-endian, so that one ordered scan reads due timers in firing order.
package state
