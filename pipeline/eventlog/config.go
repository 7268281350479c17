package eventlog

import (
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline"
)

// Config is a search's settings. Start from DefaultConfig: Limit 0 means no limit, so a zero
// field does not take a default. Empty filters match every entry.
type Config struct {
	// Brokers are the seed brokers.
	Brokers []string
	// ClientOpts are extra franz-go options (TLS, SASL), added to every client.
	ClientOpts []kgo.Opt
	// Topic is the event-log topic. Default "dwell.event-log", the processor's
	// (pipeline.DefaultTopics).
	Topic string
	// Type selects event types: a path.Match pattern (* matches any run of characters:
	// cart-*), normalized as the processor normalizes types (Page View is page-view).
	Type string
	// Profile selects the record key: the profile id (the session id for profile-less events).
	Profile string
	// State selects a state by name: processed, error, ignored, dead-lettered, late or
	// transferred.
	State string
	// ID selects an event id.
	ID string
	// Rule selects the events this rule fired on.
	Rule string
	// Since and Until select the entries whose record timestamp (when it was logged) is in
	// [Since, Until); a zero time bounds nothing.
	Since, Until time.Time
	// JSON prints the entries as logged, one a line, instead of a table.
	JSON bool
	// Limit is how many of the most recent matches are printed; 0 prints all. Default 100.
	Limit int
}

// DefaultConfig returns a Config holding every default. cmd/dwell binds its flags to the
// fields, each with the field's value as the flag's default, so each default is written once.
func DefaultConfig() Config {
	return Config{Topic: pipeline.DefaultTopics().EventLog, Limit: 100}
}

// ErrConfig marks the errors of a Config that cannot work. Their text names the flag that
// fixes it; the CLI exits with its usage status (errors.Is(err, ErrConfig)).
var ErrConfig = errors.New("log: invalid configuration")

// configError marks err with ErrConfig, its text unchanged.
type configError struct{ error }

func (e configError) Unwrap() []error { return []error{e.error, ErrConfig} }

// query is a validated Config's filters, ready to test entries.
type query struct {
	*Config
	typ   string // the normalized Type pattern
	state rules.LogState
}

// validate reports the first setting that cannot work, marked with ErrConfig, and returns the
// filters.
func (c *Config) validate() (query, error) {
	q := query{Config: c}
	if c.Limit < 0 {
		return q, configError{errors.New("log: --limit must not be negative")}
	}
	if c.State != "" {
		var ok bool
		if q.state, ok = rules.ParseLogState(c.State); !ok {
			return q, configError{fmt.Errorf("log: --state %q: use processed, error, ignored, dead-lettered, late or transferred", c.State)}
		}
	}
	if c.Type != "" {
		q.typ = operators.NormalizeType(c.Type)
		if _, err := path.Match(q.typ, ""); err != nil {
			return q, configError{fmt.Errorf("log: --type %q: %w", c.Type, err)}
		}
	}
	return q, nil
}
