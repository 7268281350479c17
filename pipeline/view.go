package pipeline

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
)

// The views below are what interactive queries answer (Live.Profile, Live.Partitions, the
// admin API's JSON): copies made on the worker that owns the state, in a form of their own, so
// that the state's layout can change without changing them.

// ProfileView is a profile's live state as its partition's worker held it.
type ProfileView struct {
	Profile   string `json:"profile"`
	Partition int32  `json:"partition"`
	// Offsets are the next input offset per input topic the partition has not received: the
	// answer reflects the records before them, processed but possibly not yet committed (a
	// cycle that then aborts is processed again), except those still waiting in the reorder
	// buffer for the watermark or held while the partition is behind.
	Offsets map[string]int64 `json:"offsets"`
	// Watermark is the partition's event-time watermark (nil before the first event).
	Watermark *time.Time `json:"watermark,omitempty"`
	// InMemory is false for a key read from the state store (evicted from memory).
	InMemory     bool        `json:"in_memory"`
	LastEvent    *time.Time  `json:"last_event,omitempty"`
	Visit        *VisitView  `json:"visit,omitempty"`
	Sessions     []VisitView `json:"sessions"`
	Visits       uint64      `json:"visits"`        // visits the profile has had
	SessionsN    uint64      `json:"sessions_seen"` // sessions the profile has had
	LastVisitEnd *time.Time  `json:"last_visit_end,omitempty"`
	// ForgetAt is when the profile is forgotten (profile_ttl) if no event comes.
	ForgetAt *time.Time `json:"forget_at,omitempty"`
	// Rules' state: traits, tags, counters and the pending scheduled events.
	Traits    map[string]string `json:"traits"`
	Tags      []string          `json:"tags"`
	Counters  map[string]int64  `json:"counters"`
	Schedules []ScheduleView    `json:"schedules"`
	// Rules is the version of the rule set the instance runs.
	Rules string `json:"rules"`
}

// VisitView is an open visit or session.
type VisitView struct {
	ID           string    `json:"id"`
	Session      string    `json:"session,omitempty"`
	StartedAt    time.Time `json:"started_at"`
	LastActivity time.Time `json:"last_activity"`
	// EndsAt is when it ends (inactivity or maximum duration) if nothing more arrives.
	EndsAt        time.Time        `json:"ends_at"`
	Events        uint32           `json:"events"`
	PageViews     uint32           `json:"page_views"`
	Sessions      uint32           `json:"sessions,omitempty"` // visits: sessions seen in it
	EntryURL      string           `json:"entry_url,omitempty"`
	ExitURL       string           `json:"exit_url,omitempty"`
	Source        string           `json:"source,omitempty"`
	Device        string           `json:"device,omitempty"`
	Types         map[string]int64 `json:"types,omitempty"` // events by type
	LastEventID   string           `json:"last_event_id,omitempty"`
	LastEventFrom string           `json:"last_event_from"` // topic/partition@offset
}

// ScheduleView is an event a rule scheduled for the profile.
type ScheduleView struct {
	ID    string    `json:"id"`
	Name  string    `json:"name"`
	Type  string    `json:"type"`
	At    time.Time `json:"at"`
	Cause string    `json:"cause,omitempty"`
}

// PartitionView is one partition this instance owns.
type PartitionView struct {
	Partition int32 `json:"partition"`
	// State is "running" or "restoring".
	State string `json:"state"`
	// Offsets are the next input offset per input topic that the state does not hold yet; Lag,
	// per topic, the records after them up to the high watermark last fetched (absent before
	// the first fetch).
	Offsets   map[string]int64 `json:"offsets,omitempty"`
	Lag       map[string]int64 `json:"lag,omitempty"`
	Watermark *time.Time       `json:"watermark,omitempty"`
	Keys      int              `json:"keys_in_memory"`
	// Behind says the cycle budget stopped work that goes on at the next cycle.
	Behind bool `json:"behind,omitempty"`
}

// PartitionsView is what Live.Partitions answers.
type PartitionsView struct {
	Partitions []PartitionView `json:"partitions"`
	Rules      string          `json:"rules"`
}

const (
	stateRunning   = "running"
	stateRestoring = "restoring"
)

// msTime converts event time in Unix ms; nil for none.
func msTime(ms int64, ok bool) *time.Time {
	if !ok {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

// watermarkTime is the watermark as a time, nil before the first event.
func watermarkTime(w int64) *time.Time {
	return msTime(w, w >= 0)
}

// newProfileView converts kv, a profile's state as the sessionizer's Inspect copied it; it
// must run on the worker that owns the state (kv.Ext is the live rules state).
func newProfileView(profile string, kv operators.KeyView) ProfileView {
	v := ProfileView{
		Profile: profile, InMemory: kv.InMemory, LastEvent: msTime(kv.LastEvent, kv.HasLastEvent),
		Visits: kv.VisitSeq, SessionsN: kv.SessionSeq, LastVisitEnd: msTime(kv.LastVisitEnd, kv.VisitEnded),
		ForgetAt: msTime(kv.ForgetAt, kv.ForgetAt != 0),
		Sessions: []VisitView{}, Traits: map[string]string{}, Tags: []string{}, Counters: map[string]int64{},
		Schedules: []ScheduleView{},
	}
	if kv.Visit != nil {
		vv := newVisitView(*kv.Visit)
		vv.Sessions = kv.Visit.Summary.SessionCount
		v.Visit = &vv
	}
	for _, s := range kv.Sessions {
		v.Sessions = append(v.Sessions, newVisitView(s))
	}
	if ps, ok := kv.Ext.(*rules.ProfileState); ok && ps != nil {
		for _, t := range ps.Traits {
			v.Traits[t.Name] = t.Value
		}
		v.Tags = append(v.Tags, ps.Tags...)
		for _, c := range ps.Counters {
			v.Counters[c.Name] = c.Value
		}
		for _, t := range ps.Timers {
			v.Schedules = append(v.Schedules, ScheduleView{ID: hex.EncodeToString(t.ID[:]), Name: t.Name, Type: t.Type,
				At: time.UnixMilli(t.Deadline).UTC(), Cause: t.Cause})
		}
	}
	return v
}

func newVisitView(a operators.ActivityView) VisitView {
	sm := &a.Summary
	v := VisitView{
		ID: a.ID, Session: a.SessionID,
		StartedAt: time.UnixMilli(sm.StartedAt).UTC(), LastActivity: time.UnixMilli(sm.LastActivity).UTC(),
		EndsAt: time.UnixMilli(a.Deadline).UTC(), Events: sm.EventCount, PageViews: sm.PageViewCount,
		EntryURL: string(sm.EntryURL), ExitURL: string(sm.ExitURL), Source: string(sm.Source), Device: string(sm.Device),
		LastEventID: a.Cause.ID,
	}
	if a.Cause.Topic != "" {
		v.LastEventFrom = fmt.Sprintf("%s/%d@%d", a.Cause.Topic, a.Cause.Partition, a.Cause.Offset)
	}
	if len(sm.Types) > 0 || sm.OtherTypes > 0 {
		v.Types = make(map[string]int64, len(sm.Types)+1)
		for _, tc := range sm.Types {
			v.Types[tc.Type] = int64(tc.Count)
		}
		if sm.OtherTypes > 0 {
			v.Types["(other)"] = int64(sm.OtherTypes)
		}
	}
	return v
}
