// Package eventlog searches the event log (`dwell log`): the topic where the processor and dwell
// move write one entry per event (rules.AppendLogJSON). cmd/dwell binds its flags to a Config
// and calls Search.
//
// There is no index: Search reads the whole window, the committed records of Config.Topic whose
// timestamps are in [Config.Since, Config.Until), as pipeline/topicscan reads them (from the
// first offset at or after Since to the end offsets listed when it starts), and parses each
// with rules.ParseLogJSON, the one reader of the entry's schema. It keeps the Config.Limit most
// recent matches (by record timestamp, then partition, then offset) in a heap, so its memory
// is bounded by Limit, not by the window; Limit 0 keeps every match.
//
// Reading is tolerant, so that entries of an older or newer dwell still show: a record that is
// not a JSON object is counted as unreadable and skipped; an entry with fields it cannot read
// shows the others ("-" for those), and a filter on a field it could not read does not match.
//
// The matches are printed oldest first to the stdout writer, as a table or (Config.JSON) as the
// records' values, byte for byte; a count goes to the stderr writer. Nothing is written to
// Kafka, and nothing is kept between calls.
package eventlog
