// Package deliver is dwell's webhook deliverer (`dwell deliver --queue NAME`): it consumes one
// queue topic (dwell.queue.<name>) as a consumer group and POSTs each record's value, a JSON
// object, to an HTTP endpoint. It stands outside the exactly-once processing cycle: delivery
// is at-least-once, made safe to repeat by an Idempotency-Key that every attempt and every
// redelivery of a record carries.
//
// # Endpoints
//
// The URL is operator configuration, never data: a record cannot send requests to a host of
// its choosing. Endpoints maps a notification's `channel` (the field rules' notify actions
// write) to an Endpoint (a URL and extra headers, such as an Authorization); records without a
// channel (emitted or routed events) or with a channel not listed go to the default endpoint.
// A record with no endpoint at all is dead-lettered (no-endpoint).
//
// # Idempotency key
//
// The record value's top-level "id" (rules outputs carry a deterministic one: a replay or a
// crash reproduces the same id), else "topic/partition/offset". The same record therefore
// carries the same key on every attempt, after a restart and after a rebalance.
//
// # Retries
//
// 2xx is delivered. 408, 429, 5xx, timeouts (Config.AttemptTimeout) and connection errors are
// retried with exponential backoff and equal jitter, at least as long as a Retry-After header
// asks, for at most Config.MaxAttempts attempts within Config.MaxElapsed; any other status
// (3xx included: redirects are not followed) is a permanent failure. Permanent failures,
// exhausted retries, malformed values and records with no endpoint go to the dead-letter
// topic with the original key, value and headers plus dwell-reason, dwell-detail,
// dwell-topic, dwell-partition and dwell-offset, like the processor's dead letters.
//
// # Offsets
//
// Up to Config.Concurrency records are delivered at once, in any order. Each partition keeps
// the offsets it has handed out, in order, and commits only up to the lowest one not yet
// handled (delivered or dead-lettered): a crash or a rebalance redelivers, never skips. A
// partition holding Config.MaxPending handled-or-in-flight records behind an unfinished one is
// paused until it drains. Offsets are committed every Config.CommitInterval, when partitions
// are revoked, and at shutdown. Records are delivered in no particular order, even within a
// key: receivers deduplicate by Idempotency-Key and order by the body's time. A dead letter that cannot be written stops Run with an error
// (the record is not committed).
//
// # Goroutines and shutdown
//
// Run owns everything it starts: the poll loop, Concurrency workers and, while draining, one
// waiter; all have ended when Run returns. When its context ends it stops polling, lets the deliveries in flight finish
// for up to Config.DrainTimeout (then cancels them; they stay uncommitted), commits, and
// returns nil. Records fetched but not started are left for the next run. Revoked partitions
// are drained the same way inside the revoke callback, bounded by DrainTimeout.
package deliver
