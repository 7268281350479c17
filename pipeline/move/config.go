package move

import (
	"errors"
	"fmt"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline"
)

// Config is a move's settings. Start from DefaultConfig: EventLogTopic and Progress are
// meaningful when empty (no event log, no progress line), so a zero field does not take a
// default.
type Config struct {
	// Brokers are the seed brokers.
	Brokers []string
	// ClientOpts are extra franz-go options (TLS, SASL), added to every client.
	ClientOpts []kgo.Opt
	// From is the topic read, e.g. dwell.dlq. Required.
	From string
	// To is the topic written, e.g. an input topic or dwell.queue.NAME. Required, not From.
	To string
	// Filter is an expr expression over a Record that selects the records to move; "" moves
	// every record.
	Filter string
	// Since and Until select the records whose timestamp is in [Since, Until); a zero time
	// bounds nothing. Until must be after Since.
	Since, Until time.Time
	// DryRun writes nothing: the matching records are printed instead.
	DryRun bool
	// EventLogTopic receives a transferred entry for each copy; "" logs nothing. Default
	// "dwell.event-log", the processor's (pipeline.DefaultTopics).
	EventLogTopic string
	// Progress is the interval of the progress line; 0 writes none. Default 2s.
	Progress time.Duration
	// Now is the clock of the progress line and the final count. Default time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config holding every default. cmd/dwell binds its flags to the
// fields, each with the field's value as the flag's default, so each default is written once.
func DefaultConfig() Config {
	return Config{EventLogTopic: pipeline.DefaultTopics().EventLog, Progress: 2 * time.Second, Now: time.Now}
}

// ErrConfig marks the errors of a Config that cannot work. Their text names the flag that
// fixes it; the CLI exits with its usage status (errors.Is(err, ErrConfig)).
var ErrConfig = errors.New("move: invalid configuration")

// configError marks err with ErrConfig, its text unchanged.
type configError struct{ error }

func (e configError) Unwrap() []error { return []error{e.error, ErrConfig} }

// validate reports the first setting that cannot work, marked with ErrConfig, and returns the
// compiled filter (nil when there is none).
func (c *Config) validate() (*vm.Program, error) {
	if c.From == "" || c.To == "" {
		return nil, configError{errors.New("move: name both topics: dwell move --from TOPIC --to TOPIC")}
	}
	if c.From == c.To {
		return nil, configError{fmt.Errorf("move: --from and --to are both %q", c.From)}
	}
	if !c.Since.IsZero() && !c.Until.IsZero() && !c.Until.After(c.Since) {
		return nil, configError{fmt.Errorf("move: --until (%s) is not after --since (%s)",
			c.Until.Format(time.RFC3339), c.Since.Format(time.RFC3339))}
	}
	if c.Filter == "" {
		return nil, nil
	}
	prog, err := expr.Compile(c.Filter, expr.Env(Record{}), expr.AsBool())
	if err != nil {
		return nil, configError{fmt.Errorf("move: --filter: %w", err)}
	}
	return prog, nil
}
