package rules

import (
	"encoding/hex"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/internal/jsonx"
)

// Env is what conditions and templates see: the event, the profile's state, and the key's
// current visit and session. Its strings are views (see SetEvent): an Env is valid only while
// the event it was filled from is, and one Env is reused from event to event by its owner.
type Env struct {
	Event   EventView
	Key     string // the state key: the profile id, or the session id of a profile-less key
	Visit   ActivityView
	Session ActivityView
	// Admitted says the event already passed the registry (Engine.Admit, before it was
	// sessionized): Apply then only looks its type up, without validating it again.
	Admitted bool

	// props caches the property paths that conditions name, extracted from
	// Event.Properties on first use (see Config.paths).
	props        []propSlot
	propDone     []uint64
	propRaw      [][]byte // the raw value of each first name (pathTable.firsts), by scanProps
	propsScanned bool
	propsEscaped uint8 // Properties has a backslash: 0 not known yet, 1 no, 2 yes
	idBuf        [32]byte
}

// EventView is the event part of an Env. Time is Unix milliseconds.
type EventView struct {
	ID, Type, Source, Profile, Session string
	Time                               int64
	// Tags is the raw JSON array of tags, Properties the raw JSON object of properties (nil
	// when absent), both valid JSON as the decoder guarantees; conditions decode only the
	// fields they name.
	Tags, Properties []byte
	// Late: the event arrived behind the watermark; System: dwell emitted it (a system event
	// or a fired schedule).
	Late, System bool
}

// ActivityView describes the key's current visit or session; Open is false when there is
// none (then every field is zero).
type ActivityView struct {
	Open          bool
	ID            string
	StartedAt     int64
	LastActivity  int64
	EventCount    int64
	PageViewCount int64
	EntryURL      string
	ExitURL       string
}

// Reset clears the Env for a new event, keeping its buffers.
func (e *Env) Reset() {
	props, done, raw := e.props, e.propDone, e.propRaw
	clear(done)
	*e = Env{props: props, propDone: done, propRaw: raw}
}

// SetEvent fills the event part from a decoded input event. The Env's strings alias ev's
// buffers; they must not be used after ev changes.
func (e *Env) SetEvent(ev *operators.Event, late bool) {
	e.Reset()
	id := ev.ID
	if id == nil {
		id = operators.AppendEventID(e.idBuf[:0], &operators.EventRef{Topic: ev.Topic, Partition: ev.Partition, Offset: ev.Offset})
	}
	e.Event = EventView{
		ID: jsonx.String(id), Type: ev.Type, Source: jsonx.String(ev.Source), Profile: jsonx.String(ev.Profile),
		Session: jsonx.String(ev.Session), Time: ev.Time, Tags: ev.Tags, Properties: ev.Properties, Late: late,
	}
	if ev.Profile != nil {
		e.Key = jsonx.String(ev.Profile)
	} else {
		e.Key = jsonx.String(ev.Session)
	}
}

// SetSystem fills the event part from a system event, and Visit or Session from its summary
// (visit-ended, session-closed).
func (e *Env) SetSystem(se *operators.SystemEvent) {
	e.Reset()
	hex.Encode(e.idBuf[:], se.ID[:])
	e.Event = EventView{
		ID: jsonx.String(e.idBuf[:]), Type: se.Type.String(), Source: jsonx.String(se.Source), Profile: jsonx.String(se.Profile),
		Session: jsonx.String(se.Session), Time: se.Time, System: true,
	}
	if se.Profile != nil {
		e.Key = jsonx.String(se.Profile)
	} else {
		e.Key = jsonx.String(se.Session)
	}
	if sm := se.Summary; sm != nil {
		if se.Type == operators.VisitEnded {
			e.SetVisit(se.VisitID, sm)
		} else {
			e.SetSession(se.Session, sm)
		}
	}
}

// SetTimer fills the event part for a fired schedule of key: an event of the timer's type at
// its deadline, with the timer's id and properties.
func (e *Env) SetTimer(key string, t *Timer) {
	e.Reset()
	hex.Encode(e.idBuf[:], t.ID[:])
	e.Event = EventView{
		ID: jsonx.String(e.idBuf[:]), Type: t.Type, Profile: key, Time: t.Deadline, Properties: t.Data, System: true,
	}
	e.Key = key
}

// SetVisit fills Visit from the key's open visit (id and summary so far); SetSession likewise
// Session. The pipeline calls them with what the sessionizer knows when it emits the event.
func (e *Env) SetVisit(id []byte, sm *operators.Summary) { e.Visit = activityView(id, sm) }

// SetSession fills Session from the event's open session.
func (e *Env) SetSession(id []byte, sm *operators.Summary) { e.Session = activityView(id, sm) }

func activityView(id []byte, sm *operators.Summary) ActivityView {
	if sm == nil {
		return ActivityView{}
	}
	return ActivityView{
		Open: true, ID: jsonx.String(id), StartedAt: sm.StartedAt, LastActivity: sm.LastActivity, EventCount: int64(sm.EventCount),
		PageViewCount: int64(sm.PageViewCount), EntryURL: jsonx.String(sm.EntryURL), ExitURL: jsonx.String(sm.ExitURL),
	}
}
