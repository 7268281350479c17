package rules

import (
	"bytes"
	"encoding/hex"
	"encoding/json"

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

	// sysOut is the system event whose properties are rendered into sysProps (and set as
	// Event.Properties) on first use, by loadSystemProps: most rules never read them.
	sysOut   *operators.Output
	sysProps []byte
}

// EventView is the event part of an Env. Time is Unix milliseconds.
type EventView struct {
	ID, Type, Source, Profile, Session string
	Time                               int64
	// Tags is the raw JSON array of tags, Properties the raw JSON object of properties (nil
	// when absent), both valid JSON as the decoder guarantees; conditions decode only the
	// fields they name.
	Tags, Properties []byte
	// Traits is the raw JSON object of the input event's traits (nil when absent).
	Traits []byte
	// Late: the event arrived behind the watermark; System: dwell emitted it (a system event
	// or a fired schedule).
	Late, System bool
}

// ActivityView describes the key's current visit or session, or on visit-ended and
// session-closed the one that ended (then Open is false and the other fields are as it ended).
// Open is false and every field zero when there is none.
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
	props, done, raw, sys := e.props, e.propDone, e.propRaw, e.sysProps
	clear(done)
	*e = Env{props: props, propDone: done, propRaw: raw, sysProps: sys[:0]}
}

// systemPropNames are the names operators.AppendSystemProperties can write.
var systemPropNames = map[string]bool{"visit_id": true, "reason": true, "started_at": true, "ended_at": true,
	"duration_ms": true, "event_count": true, "page_view_count": true, "session_count": true, "entry_url": true,
	"exit_url": true, "source": true, "device": true, "event_types": true, "other_types": true}

// loadSystemProps renders the pending system event's properties (SetSystemOutput).
func (e *Env) loadSystemProps() {
	if o := e.sysOut; o != nil {
		e.sysOut = nil
		e.sysProps = operators.AppendSystemProperties(e.sysProps[:0], o)
		e.Event.Properties = e.sysProps
	}
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
		Session: jsonx.String(ev.Session), Time: ev.Time, Tags: ev.Tags, Properties: ev.Properties, Traits: ev.Traits, Late: late,
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
		// The visit or session that ended, as it ended: open is false.
		if se.Type == operators.VisitEnded {
			e.SetVisit(se.VisitID, sm)
			e.Visit.Open = false
		} else {
			e.SetSession(se.Session, sm)
			e.Session.Open = false
		}
	}
}

// SetSystemOutput fills the Env for the system event o as the pipeline does: SetSystem, the
// event's properties (operators.AppendSystemProperties: rendered when a condition or template
// first reads them, so o must stay valid until Apply returns), and, for an opening event, the
// key's open visit and session that o carries.
func (e *Env) SetSystemOutput(o *operators.Output) {
	e.SetSystem(o.System)
	e.sysOut = o
	if o.System.Summary == nil {
		if o.Visit != nil {
			e.SetVisit(o.VisitID, o.Visit)
		}
		if o.Session != nil {
			e.SetSession(o.SessionID, o.Session)
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

// SetTimerOutput fills the Env for the schedule t fired by o (operators.KindTimer) as the
// pipeline does: SetTimer, and the key's open visit and session at the deadline, which o
// carries. A profile-less key's schedule has session, not profile, set to the key.
func (e *Env) SetTimerOutput(o *operators.Output, key string, t *Timer) {
	e.SetTimer(key, t)
	if o.ProfileLess() {
		e.Event.Profile, e.Event.Session = "", key
	} else if o.Session != nil {
		e.Event.Session = jsonx.String(o.SessionID)
	}
	if o.Visit != nil {
		e.SetVisit(o.VisitID, o.Visit)
	}
	if o.Session != nil {
		e.SetSession(o.SessionID, o.Session)
	}
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

// prop returns the value of path slot in the event's properties, decoding it on first use.
func (e *Env) prop(pt *pathTable, slot int) jval {
	if e.propDone[slot/64]&(1<<(slot%64)) != 0 {
		return e.props[slot].v
	}
	return e.loadProp(pt, slot)
}

func (e *Env) loadProp(pt *pathTable, slot int) jval {
	if e.sysOut != nil {
		if !pt.system[pt.slotFirst[slot]] {
			// Not a name a system event's properties ever have: absent, nothing rendered.
			e.props[slot].v = jval{}
			e.propDone[slot/64] |= 1 << (slot % 64)
			return jval{}
		}
		e.loadSystemProps()
	}
	if !e.propsScanned && len(e.Event.Properties) <= 64 {
		// Before scanning small properties: a property whose name does not occur in them at
		// all is absent, and most events lack most of the properties that rules name (those
		// of other types). Without escapes in the bytes, a key is its name quoted, literally.
		// (bytes.Contains is fast in up to 64 bytes; in more, a name starting with '"' makes
		// it slower than the scan.)
		if e.propsEscaped == 0 {
			e.propsEscaped = 1
			if bytes.IndexByte(e.Event.Properties, '\\') >= 0 {
				e.propsEscaped = 2
			}
		}
		if e.propsEscaped == 1 && !bytes.Contains(e.Event.Properties, pt.quoted[pt.slotFirst[slot]]) {
			e.props[slot].v = jval{}
			e.propDone[slot/64] |= 1 << (slot % 64)
			return jval{}
		}
	}
	if !e.propsScanned {
		e.scanProps(pt)
	}
	var v jval
	if raw := e.propRaw[pt.slotFirst[slot]]; raw != nil {
		if path := pt.paths[slot]; len(path) == 1 {
			v = parseScalar(raw)
		} else {
			v = lookup(raw, path[1:])
		}
	}
	e.props[slot].v = v
	e.propDone[slot/64] |= 1 << (slot % 64)
	return v
}

// scanProps finds, in one pass over the event's properties, the raw value of every top-level
// property that a path of pt starts at (nil: absent). As lookup does, it takes the first of
// duplicate keys and stops at anything malformed (what follows is absent).
func (e *Env) scanProps(pt *pathTable) {
	e.propsScanned = true
	raw := e.propRaw[:len(pt.firsts)]
	clear(raw)
	obj := e.Event.Properties
	i := jsonx.SkipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return
	}
	left := len(raw)
	for i++; left > 0; i++ {
		i = jsonx.SkipWS(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return
		}
		end, esc := jsonx.SkipString(obj, i)
		if end < 0 {
			return
		}
		var f int
		if esc {
			f = -1
			var k string
			if json.Unmarshal(obj[i:end], &k) == nil {
				f = pt.first(k)
			}
		} else {
			f = pt.first(jsonx.String(obj[i+1 : end-1]))
		}
		i = jsonx.SkipWS(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return
		}
		start := jsonx.SkipWS(obj, i+1)
		j := jsonx.SkipValue(obj, start)
		if j < 0 {
			return
		}
		if f >= 0 && raw[f] == nil {
			raw[f] = obj[start:j]
			left--
		}
		i = jsonx.SkipWS(obj, j)
		if i >= len(obj) || obj[i] != ',' {
			return
		}
	}
}

type propSlot struct{ v jval }

// ensureSlots sizes the property cache for the paths of pt.
func (e *Env) ensureSlots(pt *pathTable) {
	if n := len(pt.paths); len(e.props) < n {
		e.props = make([]propSlot, n)
		e.propDone = make([]uint64, (n+63)/64)
	}
	if n := len(pt.firsts); len(e.propRaw) < n {
		e.propRaw = make([][]byte, n)
	}
}

// resetProps forgets the properties read so far (Reset does it for a new event).
func (e *Env) resetProps() {
	clear(e.propDone)
	e.propsScanned, e.propsEscaped = false, 0
}
