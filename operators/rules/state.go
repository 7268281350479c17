package rules

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/dwellhq/dwell/operators/wire"
)

// ProfileState is what rules keep per key: traits, tags, counters, and scheduled events.
// Every list is sorted by name and has unique names, so that the encoding is canonical. Its
// size is bounded by Limits; an action that would exceed a bound fails (a rule error) and
// leaves the state as it was.
type ProfileState struct {
	Traits   []Trait
	Tags     []string
	Counters []Counter
	Timers   []Timer

	// persisted is the timer deadline last reported by Changes.Drain (or restored by Decode).
	persisted int64
}

// Trait is a named string value of a profile.
type Trait struct{ Name, Value string }

// Counter is a named integer of a profile.
type Counter struct {
	Name  string
	Value int64
}

// Timer is a scheduled event: at Deadline (event time, Unix ms) an event of Type, with the
// Data as its properties (a JSON object, or nil), is processed for the key as if it had
// arrived. A key has at most one timer per Name; scheduling a name again replaces it.
type Timer struct {
	// ID is derived from key, name, deadline and cause, so a replay schedules the same ids.
	ID       [16]byte
	Name     string
	Type     string
	Deadline int64
	Cause    string // the id of the event that scheduled it
	Data     []byte
}

// Limits bound a ProfileState and the work of one evaluation of a template or a condition.
// Zero fields take their defaults (EnsureDefaults, from defaultLimits).
type Limits struct {
	// MaxTraits bounds the traits of one key.
	MaxTraits int `yaml:"max_traits"`
	// MaxTags bounds the tags of one key.
	MaxTags int `yaml:"max_tags"`
	// MaxCounters bounds the counters of one key.
	MaxCounters int `yaml:"max_counters"`
	// MaxTimers bounds the scheduled events of one key.
	MaxTimers int `yaml:"max_timers"`
	// MaxValueBytes bounds a name, a trait value, a tag or a timer's data.
	MaxValueBytes int `yaml:"max_value_bytes"`
	// MaxTemplateSteps is the budget of one template evaluation, in steps of about one
	// command executed: a range charges, as it starts, the commands of its body for each
	// element, key or count it goes over; a call of a defined template, those of its body; a
	// function that formats data (printf, print, json, join, upper, ...), a step per value
	// and per KiB it builds.
	MaxTemplateSteps int `yaml:"max_template_steps"`
	// MaxTemplateBytes bounds the text one template evaluation renders, and what one call of
	// printf or join may build.
	MaxTemplateBytes int `yaml:"max_template_bytes"`
	// MaxConditionBytes is the budget of one condition evaluation: the bytes its contains,
	// startsWith, endsWith and matches read, and those of event.tags that `in` and len read.
	MaxConditionBytes int `yaml:"max_condition_bytes"`
}

// defaultLimits are the limits of a rules file that sets none. The budgets are far above what
// a sane rule uses: a template over a few lists runs tens of steps and renders a few hundred
// bytes; a condition reads its event's strings a few times.
var defaultLimits = Limits{
	MaxTraits:         64,
	MaxTags:           64,
	MaxCounters:       64,
	MaxTimers:         16,
	MaxValueBytes:     1024,
	MaxTemplateSteps:  100_000,
	MaxTemplateBytes:  64 << 10,
	MaxConditionBytes: 16 << 20,
}

// EnsureDefaults sets zero fields to their defaults.
func (l *Limits) EnsureDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	d := &defaultLimits
	def(&l.MaxTraits, d.MaxTraits)
	def(&l.MaxTags, d.MaxTags)
	def(&l.MaxCounters, d.MaxCounters)
	def(&l.MaxTimers, d.MaxTimers)
	def(&l.MaxValueBytes, d.MaxValueBytes)
	def(&l.MaxTemplateSteps, d.MaxTemplateSteps)
	def(&l.MaxTemplateBytes, d.MaxTemplateBytes)
	def(&l.MaxConditionBytes, d.MaxConditionBytes)
}

// Validate reports limits out of range. The budgets may be raised, but only so far: a rules
// file must not be able to switch them off.
func (l *Limits) Validate() error {
	for _, f := range []struct {
		name   string
		v, max int
	}{
		{"max_traits", l.MaxTraits, maxStateItems},
		{"max_tags", l.MaxTags, maxStateItems},
		{"max_counters", l.MaxCounters, maxStateItems},
		{"max_timers", l.MaxTimers, maxStateItems},
		{"max_value_bytes", l.MaxValueBytes, maxStateItems},
		{"max_template_steps", l.MaxTemplateSteps, 10 * defaultLimits.MaxTemplateSteps},
		{"max_template_bytes", l.MaxTemplateBytes, 1 << 20},
		{"max_condition_bytes", l.MaxConditionBytes, 4 * defaultLimits.MaxConditionBytes},
	} {
		if f.v < 0 || f.v > f.max {
			return fmt.Errorf("limits: %s must be between 0 and %d", f.name, f.max)
		}
	}
	return nil
}

// ErrLimit is wrapped by the errors of actions that would exceed a Limits bound.
var ErrLimit = errors.New("rules: profile state limit exceeded")

// Empty says the state holds nothing (the key's state can be deleted).
func (s *ProfileState) Empty() bool {
	return len(s.Traits) == 0 && len(s.Tags) == 0 && len(s.Counters) == 0 && len(s.Timers) == 0
}

// Pending is the number of scheduled events (operators.PendingCounter: what the end of input
// leaves pending).
func (s *ProfileState) Pending() int { return len(s.Timers) }

// Reset empties the state, keeping its buffers.
func (s *ProfileState) Reset() {
	s.Traits, s.Tags, s.Counters, s.Timers = s.Traits[:0], s.Tags[:0], s.Counters[:0], s.Timers[:0]
	s.persisted = 0
}

// The searches of the sorted lists, written out: they run in every condition and action that
// reads the state, and slices.BinarySearchFunc with cmp.Compare costs several times as much.
// Small lists (most) are first scanned for equality, which compares lengths first.

func searchTraits(l []Trait, name string) (int, bool) {
	if len(l) <= 8 {
		for i := range l {
			if l[i].Name == name {
				return i, true
			}
		}
	}
	lo, hi := 0, len(l)
	for lo < hi {
		if m := int(uint(lo+hi) >> 1); l[m].Name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(l) && l[lo].Name == name
}

func searchCounters(l []Counter, name string) (int, bool) {
	if len(l) <= 8 {
		for i := range l {
			if l[i].Name == name {
				return i, true
			}
		}
	}
	lo, hi := 0, len(l)
	for lo < hi {
		if m := int(uint(lo+hi) >> 1); l[m].Name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(l) && l[lo].Name == name
}

func searchTags(l []string, tag string) (int, bool) {
	if len(l) <= 8 {
		for i := range l {
			if l[i] == tag {
				return i, true
			}
		}
	}
	lo, hi := 0, len(l)
	for lo < hi {
		if m := int(uint(lo+hi) >> 1); l[m] < tag {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(l) && l[lo] == tag
}

// Trait returns the value of the named trait.
func (s *ProfileState) Trait(name string) (string, bool) {
	i, ok := searchTraits(s.Traits, name)
	if !ok {
		return "", false
	}
	return s.Traits[i].Value, true
}

// Counter returns the named counter (0 when absent).
func (s *ProfileState) Counter(name string) int64 {
	i, ok := searchCounters(s.Counters, name)
	if !ok {
		return 0
	}
	return s.Counters[i].Value
}

// HasTag says whether the key has the tag.
func (s *ProfileState) HasTag(tag string) bool {
	_, ok := searchTags(s.Tags, tag)
	return ok
}

// Timer returns the scheduled event of that name, or nil.
func (s *ProfileState) Timer(name string) *Timer {
	i, ok := slices.BinarySearchFunc(s.Timers, name, func(t Timer, n string) int { return cmp.Compare(t.Name, n) })
	if !ok {
		return nil
	}
	return &s.Timers[i]
}

// NextDeadline is the earliest timer deadline, or 0 when nothing is scheduled: the one
// deadline a timer index keeps for the key.
func (s *ProfileState) NextDeadline() int64 {
	var d int64
	for i := range s.Timers {
		if t := s.Timers[i].Deadline; d == 0 || t < d {
			d = t
		}
	}
	return d
}

// PopDue removes the timers due at watermark t (Deadline <= t) and appends them to dst in
// (deadline, name) order, the order in which they fire.
func (s *ProfileState) PopDue(t int64, dst []Timer) []Timer {
	n := len(dst)
	s.Timers = slices.DeleteFunc(s.Timers, func(tm Timer) bool {
		if tm.Deadline <= t {
			dst = append(dst, tm)
			return true
		}
		return false
	})
	slices.SortFunc(dst[n:], func(a, b Timer) int {
		return cmp.Or(cmp.Compare(a.Deadline, b.Deadline), cmp.Compare(a.Name, b.Name))
	})
	return dst
}

func checkLen(what, v string, lim *Limits) error {
	if len(v) > lim.MaxValueBytes {
		return fmt.Errorf("%w: %s of %d bytes (max_value_bytes %d)", ErrLimit, what, len(v), lim.MaxValueBytes)
	}
	return nil
}

// setTrait sets a trait; changed is false when it already had that value. The state keeps a
// copy of value (which may be a view of a buffer).
func (s *ProfileState) setTrait(name, value string, lim *Limits) (changed bool, err error) {
	if err := checkLen("trait name", name, lim); err != nil {
		return false, err
	}
	if err := checkLen("trait value", value, lim); err != nil {
		return false, err
	}
	i, ok := searchTraits(s.Traits, name)
	if ok {
		if s.Traits[i].Value == value {
			return false, nil
		}
		s.Traits[i].Value = strings.Clone(value)
		return true, nil
	}
	if len(s.Traits) >= lim.MaxTraits {
		return false, fmt.Errorf("%w: more than %d traits", ErrLimit, lim.MaxTraits)
	}
	s.Traits = slices.Insert(s.Traits, i, Trait{Name: name, Value: strings.Clone(value)})
	return true, nil
}

// addTag adds a tag; changed is false when the key had it.
func (s *ProfileState) addTag(tag string, lim *Limits) (changed bool, err error) {
	if err := checkLen("tag", tag, lim); err != nil {
		return false, err
	}
	i, ok := searchTags(s.Tags, tag)
	if ok {
		return false, nil
	}
	if len(s.Tags) >= lim.MaxTags {
		return false, fmt.Errorf("%w: more than %d tags", ErrLimit, lim.MaxTags)
	}
	s.Tags = slices.Insert(s.Tags, i, tag)
	return true, nil
}

// removeTag removes a tag; changed is false when the key did not have it.
func (s *ProfileState) removeTag(tag string) bool {
	i, ok := searchTags(s.Tags, tag)
	if ok {
		s.Tags = slices.Delete(s.Tags, i, i+1)
	}
	return ok
}

// increment adds by to a counter, failing on overflow.
func (s *ProfileState) increment(name string, by int64, lim *Limits) (int64, error) {
	if err := checkLen("counter name", name, lim); err != nil {
		return 0, err
	}
	i, ok := searchCounters(s.Counters, name)
	if !ok {
		if len(s.Counters) >= lim.MaxCounters {
			return 0, fmt.Errorf("%w: more than %d counters", ErrLimit, lim.MaxCounters)
		}
		s.Counters = slices.Insert(s.Counters, i, Counter{Name: name})
	}
	c := &s.Counters[i]
	if by > 0 && c.Value > math.MaxInt64-by || by < 0 && c.Value < math.MinInt64-by {
		return c.Value, fmt.Errorf("rules: counter %q overflows", name)
	}
	c.Value += by
	return c.Value, nil
}

// schedule adds t, replacing the timer of the same name; old is the replaced one.
func (s *ProfileState) schedule(t Timer, lim *Limits) (old Timer, replaced bool, err error) {
	if err := checkLen("timer name", t.Name, lim); err != nil {
		return Timer{}, false, err
	}
	if len(t.Data) > lim.MaxValueBytes {
		return Timer{}, false, fmt.Errorf("%w: timer data of %d bytes (max_value_bytes %d)", ErrLimit, len(t.Data), lim.MaxValueBytes)
	}
	i, ok := slices.BinarySearchFunc(s.Timers, t.Name, func(x Timer, n string) int { return cmp.Compare(x.Name, n) })
	if ok {
		old = s.Timers[i]
		s.Timers[i] = t
		return old, true, nil
	}
	if len(s.Timers) >= lim.MaxTimers {
		return Timer{}, false, fmt.Errorf("%w: more than %d scheduled events", ErrLimit, lim.MaxTimers)
	}
	s.Timers = slices.Insert(s.Timers, i, t)
	return Timer{}, false, nil
}

// cancel removes the named timer.
func (s *ProfileState) cancel(name string) (Timer, bool) {
	i, ok := slices.BinarySearchFunc(s.Timers, name, func(x Timer, n string) int { return cmp.Compare(x.Name, n) })
	if !ok {
		return Timer{}, false
	}
	t := s.Timers[i]
	s.Timers = slices.Delete(s.Timers, i, i+1)
	return t, true
}

// The encoding: a version byte, then four length-prefixed lists, varints and length-prefixed
// strings, no field names. It is canonical: one state has one encoding, and Decode rejects
// anything else (unsorted or duplicate names, trailing bytes).

const (
	stateVersion = 1
	// maxStateItems bounds counts read by Decode before allocating, whatever the limits are
	// now (a state written under larger limits still decodes).
	maxStateItems = 1 << 16
)

var errState = errors.New("rules: corrupt profile state")

// AppendEncode appends the binary encoding of s to dst.
func (s *ProfileState) AppendEncode(dst []byte) []byte {
	dst = append(dst, stateVersion)
	dst = binary.AppendUvarint(dst, uint64(len(s.Traits)))
	for _, t := range s.Traits {
		dst = wire.AppendString(dst, t.Name)
		dst = wire.AppendString(dst, t.Value)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Tags)))
	for _, t := range s.Tags {
		dst = wire.AppendString(dst, t)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Counters)))
	for _, c := range s.Counters {
		dst = wire.AppendString(dst, c.Name)
		dst = binary.AppendVarint(dst, c.Value)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.Timers)))
	for _, t := range s.Timers {
		dst = append(dst, t.ID[:]...)
		dst = wire.AppendString(dst, t.Name)
		dst = wire.AppendString(dst, t.Type)
		dst = binary.AppendVarint(dst, t.Deadline)
		dst = wire.AppendString(dst, t.Cause)
		dst = wire.AppendBytes(dst, t.Data)
	}
	return dst
}

// Decode replaces s with the state encoded in b (by AppendEncode). b is not retained. On error
// s is empty.
func (s *ProfileState) Decode(b []byte) error {
	s.Reset()
	if err := s.decode(b); err != nil {
		s.Reset()
		return err
	}
	s.persisted = s.NextDeadline()
	return nil
}

func (s *ProfileState) decode(b []byte) error {
	if len(b) == 0 {
		return errState
	}
	if b[0] != stateVersion {
		return fmt.Errorf("rules: profile state version %d is not supported", b[0])
	}
	r := wire.NewCanonicalReader(b[1:])
	n := r.UvarintMax(maxStateItems)
	for i := uint64(0); i < n && r.Ok(); i++ {
		t := Trait{Name: r.String(), Value: r.String()}
		if len(s.Traits) > 0 && s.Traits[len(s.Traits)-1].Name >= t.Name {
			r.Fail()
		}
		s.Traits = append(s.Traits, t)
	}
	n = r.UvarintMax(maxStateItems)
	for i := uint64(0); i < n && r.Ok(); i++ {
		t := r.String()
		if len(s.Tags) > 0 && s.Tags[len(s.Tags)-1] >= t {
			r.Fail()
		}
		s.Tags = append(s.Tags, t)
	}
	n = r.UvarintMax(maxStateItems)
	for i := uint64(0); i < n && r.Ok(); i++ {
		c := Counter{Name: r.String(), Value: r.Varint()}
		if len(s.Counters) > 0 && s.Counters[len(s.Counters)-1].Name >= c.Name {
			r.Fail()
		}
		s.Counters = append(s.Counters, c)
	}
	n = r.UvarintMax(maxStateItems)
	for i := uint64(0); i < n && r.Ok(); i++ {
		var t Timer
		copy(t.ID[:], r.Span(len(t.ID)))
		t.Name, t.Type, t.Deadline, t.Cause = r.String(), r.String(), r.Varint(), r.String()
		if d := r.Bytes(); len(d) > 0 {
			t.Data = append([]byte(nil), d...)
		}
		if t.Deadline <= 0 || t.Type == "" || len(s.Timers) > 0 && s.Timers[len(s.Timers)-1].Name >= t.Name {
			r.Fail()
		}
		s.Timers = append(s.Timers, t)
	}
	if !r.Complete() {
		return errState
	}
	return nil
}
