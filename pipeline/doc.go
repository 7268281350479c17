// Package pipeline moves records between the outside world and the operators: today the
// offline mode (RunOffline, JSON Lines in and out); with the live-processor issue, the franz-go
// consumer group, one worker goroutine per assigned partition, transactions and metrics.
//
// Whatever the source, the pipeline feeds each partition's records to one
// operators.Sessionizer in offset order, keeps every record's value unchanged until the
// sessionizer has released the event, and routes each output to its stream.
package pipeline
