package operators

import (
	"errors"
	"fmt"
	"time"
)

// SystemType is the type of an event that dwell emits itself.
type SystemType uint8

// The system-event types, in the order they are emitted for one input event.
const (
	ProfileCreated SystemType = iota
	SessionOpened
	VisitStarted
	VisitEnded
	SessionClosed
	numSystemTypes
)

var systemTypeNames = [numSystemTypes]string{"profile-created", "session-opened", "visit-started", "visit-ended", "session-closed"}

func (t SystemType) String() string { return systemTypeNames[t] }

// SystemTypes lists every system-event type.
func SystemTypes() []SystemType {
	return []SystemType{ProfileCreated, SessionOpened, VisitStarted, VisitEnded, SessionClosed}
}

// ParseSystemType returns the system-event type named s.
func ParseSystemType(s string) (SystemType, bool) {
	for i, n := range systemTypeNames {
		if n == s {
			return SystemType(i), true
		}
	}
	return 0, false
}

// Config holds the sessionizer's settings. The zero value of every field means its default;
// call EnsureDefaults, then Validate.
type Config struct {
	// VisitGap ends a visit after this much event time without activity. Default 30m.
	VisitGap time.Duration
	// SessionTimeout closes a session after this much event time without activity. Default 30m.
	SessionTimeout time.Duration
	// MaxVisitDuration caps a visit; it ends with reason max-duration. Default 12h.
	MaxVisitDuration time.Duration
	// MaxSessionDuration caps a session; it closes with reason max-duration. Default 12h.
	MaxSessionDuration time.Duration
	// ProfileTTL is how long an unseen profile is remembered; after it, the profile's next
	// event emits profile-created again. Default 400 days.
	ProfileTTL time.Duration
	// MaxOutOfOrderness is how far behind the largest event time seen the watermark trails.
	// Events within it are reordered by event time before they are processed. Default 5s.
	MaxOutOfOrderness time.Duration
	// AllowedLateness: an event further behind its partition's watermark than this is late
	// (LateBeyondLateness), whatever its key's state: it creates no profile, visit or session and
	// changes no state. Zero, the default, means VisitGap (see Lateness): within one gap of the
	// watermark an event can still belong to a visit that may be open; beyond it, it could only
	// create history the watermark has already passed. It is not filled in by EnsureDefaults, so
	// that it follows VisitGap set afterwards. Negative is invalid.
	AllowedLateness time.Duration
	// IdleTimeout: once a partition has received nothing for this long (wall clock), its
	// watermark follows the wall clock. Default 30s. Negative disables idle advancement.
	IdleTimeout time.Duration
	// MaxFutureSkew: an event time more than this after the record timestamp is replaced by the
	// record timestamp and flagged time_adjusted. Default 5m. Live, it also bounds event times
	// against the wall clock of the last Tick or SetWallClock: an event more than this ahead of
	// it is dead-lettered (ReasonTimeTooFar).
	MaxFutureSkew time.Duration
	// MaxTimeJump: an event more than this ahead of its partition's watermark is dead-lettered
	// (ReasonTimeTooFar) instead of moving the watermark, so that one absurd time cannot end
	// every visit of the partition. Default 24h. Negative disables the check.
	MaxTimeJump time.Duration
	// SessionEndTypes are event types that close their session at once (reason end-event).
	// Default: logout. Normalised like input types.
	SessionEndTypes []string
	// Disabled switches system-event types off; all are on by default.
	Disabled []SystemType
	// MaxEventBytes is the largest record value accepted. Default 1 MiB.
	MaxEventBytes int
	// MaxDepth is the deepest JSON nesting accepted. Default 64.
	MaxDepth int
	// MaxIDBytes is the longest id, profile, session or source accepted. Default 512.
	MaxIDBytes int
	// MaxTypeCounts caps the distinct event types counted per visit or session summary; further
	// types are counted under "other". Default 32.
	MaxTypeCounts int
	// MaxOpenSessions caps the sessions open at once for one key; opening one more closes the
	// least recently active with reason max-open-sessions. Default 64.
	MaxOpenSessions int
}

// EnsureDefaults fills zero fields with their defaults and returns c.
func (c *Config) EnsureDefaults() *Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.VisitGap, 30*time.Minute)
	def(&c.SessionTimeout, 30*time.Minute)
	def(&c.MaxVisitDuration, 12*time.Hour)
	def(&c.MaxSessionDuration, 12*time.Hour)
	def(&c.ProfileTTL, 400*24*time.Hour)
	def(&c.MaxOutOfOrderness, 5*time.Second)
	def(&c.IdleTimeout, 30*time.Second)
	def(&c.MaxFutureSkew, 5*time.Minute)
	def(&c.MaxTimeJump, 24*time.Hour)
	if c.SessionEndTypes == nil {
		c.SessionEndTypes = []string{"logout"}
	}
	defInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defInt(&c.MaxEventBytes, 1<<20)
	defInt(&c.MaxDepth, 64)
	defInt(&c.MaxIDBytes, 512)
	defInt(&c.MaxTypeCounts, 32)
	defInt(&c.MaxOpenSessions, 64)
	return c
}

// Lateness is the allowed lateness in force: AllowedLateness, or VisitGap when it is zero.
func (c *Config) Lateness() time.Duration {
	if c.AllowedLateness == 0 {
		return c.VisitGap
	}
	return c.AllowedLateness
}

// maxDuration bounds every duration so that deadlines stay far inside the timer range.
const maxDuration = 100 * 365 * 24 * time.Hour

// Validate reports every setting that is out of range.
func (c *Config) Validate() error {
	var errs []error
	pos := func(name string, d time.Duration) {
		if d <= 0 || d > maxDuration {
			errs = append(errs, fmt.Errorf("operators: %s must be between 1ms and 100 years, got %s", name, d))
		}
	}
	pos("visit_gap", c.VisitGap)
	pos("session_timeout", c.SessionTimeout)
	pos("max_visit_duration", c.MaxVisitDuration)
	pos("max_session_duration", c.MaxSessionDuration)
	pos("profile_ttl", c.ProfileTTL)
	pos("max_future_skew", c.MaxFutureSkew)
	if c.MaxTimeJump >= 0 && (c.MaxTimeJump < time.Millisecond || c.MaxTimeJump > maxDuration) {
		errs = append(errs, fmt.Errorf("operators: max_time_jump must be between 1ms and 100 years, or negative to disable the check, got %s", c.MaxTimeJump))
	}
	if c.AllowedLateness < 0 || c.AllowedLateness > maxDuration {
		errs = append(errs, fmt.Errorf("operators: allowed_lateness must be between 1ms and 100 years, or 0 for the visit gap, got %s", c.AllowedLateness))
	}
	if c.MaxOutOfOrderness < 0 || c.MaxOutOfOrderness > maxDuration {
		errs = append(errs, fmt.Errorf("operators: max_out_of_orderness must be between 0 and 100 years, got %s", c.MaxOutOfOrderness))
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"visit_gap", c.VisitGap}, {"session_timeout", c.SessionTimeout}, {"max_visit_duration", c.MaxVisitDuration},
		{"max_session_duration", c.MaxSessionDuration}, {"max_out_of_orderness", c.MaxOutOfOrderness},
		{"allowed_lateness", c.AllowedLateness}} {
		if d.d%time.Millisecond != 0 {
			errs = append(errs, fmt.Errorf("operators: %s must be a whole number of milliseconds, got %s", d.name, d.d))
		}
	}
	if c.MaxEventBytes < 64 {
		errs = append(errs, fmt.Errorf("operators: max_event_bytes must be at least 64, got %d", c.MaxEventBytes))
	}
	if c.MaxDepth < 2 {
		errs = append(errs, fmt.Errorf("operators: max_depth must be at least 2, got %d", c.MaxDepth))
	}
	if c.MaxIDBytes < 1 || c.MaxTypeCounts < 1 || c.MaxOpenSessions < 1 {
		errs = append(errs, errors.New("operators: max_id_bytes, max_type_counts and max_open_sessions must be positive"))
	}
	for _, t := range c.Disabled {
		if t >= numSystemTypes {
			errs = append(errs, fmt.Errorf("operators: disabled system-event type %d does not exist", t))
		}
	}
	for _, t := range c.SessionEndTypes {
		if NormalizeType(t) == "" {
			errs = append(errs, fmt.Errorf("operators: session end type %q is empty after normalisation", t))
		}
	}
	return errors.Join(errs...)
}
