// Package rulesrc brings new versions of the rules (a pipeline.RuleSet: rules plus event
// registry) to a running processor without a restart. A Source reads the version to start with
// (Load) and then follows its origin (Watch), handing each new valid version to an Apply
// callback, which is Live.SetRules in dwell run: every partition switches at its next cycle
// boundary.
//
// Two sources exist:
//
//   - Files (WatchFiles): a rules file and/or a registry file on local disk, reloaded when a
//     file's content changes (its size and mtime are polled at FileConfig.Interval; a file
//     modified within a second or two of being read is read again, as git does for racily clean
//     index entries, so a rewrite within the file system's timestamp granularity is not
//     missed) and on every signal received on FileConfig.Signals (SIGHUP).
//   - Topic (WatchTopic): a compacted Kafka topic, "dwell.config" by default, whose latest
//     record under key "ruleset" is the current version, written by Publish (`dwell config
//     apply`). Every instance reads it from the start, read_committed, runs the newest valid
//     version, and keeps following it, so a fleet converges on one version.
//
// # Invariants
//
// A version that does not parse, or that Apply refuses (its output topics are missing), never
// replaces the one running: it is logged with its position (*rules.LoadError's rule, line and
// column), counted as dwell_rules_reloads_total{result="rejected"}, and the old version stays
// live. A version is applied only when its content differs from the version running, so a
// touched file or a re-published record costs nothing; a signal retries a version Apply
// refused, so an operator who has created the missing topics sends SIGHUP.
//
// Load records the version it returns as running (dwell_rules_version_info): the caller starts
// the processor with it. Watch applies at once whatever changed since Load (or, without Load,
// the current version), so nothing that happens between the two is missed.
//
// With two files a change to both may be seen between the writes and applied in two steps (or
// rejected in between); a rules file with a `registry` section, or the config topic, changes
// both in one step.
//
// Watch runs on the caller's goroutine and starts none of its own; it returns when ctx is done.
// A Topic owns a Kafka client, released by Close.
package rulesrc
