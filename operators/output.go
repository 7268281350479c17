package operators

// Emitter receives the sessionizer's outputs in order. The Output and everything it points to
// are valid only during the call: an emitter that keeps anything copies it (usually by encoding
// it with AppendJSON).
type Emitter interface {
	Emit(o *Output)
}

// OutputKind says which output stream an Output belongs to.
type OutputKind uint8

const (
	// KindSystem is a system event (dwell.system-events).
	KindSystem OutputKind = iota
	// KindEvent is a processed input event, enriched with its visit (dwell.events).
	KindEvent
	// KindLate is an event that arrived behind the watermark and could not join a visit
	// (dwell.late). Rules still see it, flagged late.
	KindLate
	// KindDead is a record that could not be decoded (dwell.dlq).
	KindDead
	// KindPassThrough is an event with neither profile nor session: not sessionized, counted,
	// and written to the events output like any other.
	KindPassThrough
	// KindTimer says that the key's extension timer is due at Due (ext.go); it is for the
	// layer that keeps the extension, never an output record itself.
	KindTimer
)

var kindNames = [...]string{"system", "event", "late", "dead", "pass-through", "timer"}

func (k OutputKind) String() string { return kindNames[k] }

// Output is one item of output.
type Output struct {
	Kind OutputKind
	// Key is the output record's key: the profile id, or the session id of a profile-less key.
	// Nil for dead letters and pass-through events (they keep their record's key).
	Key []byte
	// System is set for KindSystem.
	System *SystemEvent
	// Event is set for KindEvent, KindLate and KindPassThrough. For a system event it is the
	// triggering input event when there is one (nil for timer-fired events).
	Event *Event
	// VisitID is the event's visit (KindEvent; KindLate when the key has an open visit).
	VisitID []byte
	// Visit is the summary so far of that visit, Session of the event's open session (nil
	// when it has none) whose id is SessionID: what rules read as visit.* and session.*. For
	// an opening system event (profile-created, session-opened, visit-started) they are the
	// key's open visit and the triggering event's session as they are when it is emitted; for
	// KindTimer the key's open visit and its session active last, at the deadline.
	Visit, Session *Summary
	SessionID      []byte
	// Due is the deadline of a KindTimer output.
	Due int64
	// Reason is set for KindLate and KindDead; Detail for KindDead.
	Reason Reason
	Detail string
	// Record is the undecodable record (KindDead).
	Record *Record

	k *keyState // the output's key state, for Ext and SetExt
}

// ProfileLess says that the output's key is a session id (a key without a profile).
func (o *Output) ProfileLess() bool { return o.k != nil && o.k.key[0] == 's' }

// CloseReason says why a visit ended or a session closed.
type CloseReason uint8

const (
	ReasonNone CloseReason = iota
	ReasonInactivity
	ReasonMaxDuration
	ReasonEndEvent
	ReasonShutdownFlush
	ReasonMaxOpenSessions
)

var closeReasonNames = [...]string{"", "inactivity", "max-duration", "end-event", "shutdown-flush", "max-open-sessions"}

func (r CloseReason) String() string { return closeReasonNames[r] }

// EventRef identifies an input event: by its own id, or by where it was read.
type EventRef struct {
	ID        []byte
	Topic     string
	Partition int32
	Offset    int64
}

// SystemEvent is an event emitted by dwell.
type SystemEvent struct {
	ID      [16]byte // derived from content: see systemID
	Type    SystemType
	Time    int64
	Profile []byte // nil for profile-less keys
	Session []byte
	Source  []byte
	Cause   EventRef
	// VisitID is the visit the event belongs to (all but profile-created and session-opened
	// of a key without an open visit).
	VisitID []byte
	// Summary is set for visit-ended and session-closed; Started for the others.
	Summary *Summary
	Started int64
}

// Summary describes a visit or session when it ends.
type Summary struct {
	Reason        CloseReason
	StartedAt     int64
	LastActivity  int64 // ended_at: the last event's time
	EventCount    uint32
	PageViewCount uint32
	SessionCount  uint32 // visits only: sessions seen during the visit
	EntryURL      []byte
	ExitURL       []byte
	Source        []byte // of the first event
	Device        []byte // of the first event
	// Types counts events by type, sorted by type, at most Config.MaxTypeCounts entries;
	// OtherTypes counts the rest.
	Types      []TypeCount
	OtherTypes uint32
}

// TypeCount is one entry of Summary.Types.
type TypeCount struct {
	Type  string
	Count uint32
}
