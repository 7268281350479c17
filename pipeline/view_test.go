package pipeline

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
)

// The profile view copies what Inspect found into its own JSON form: times in UTC, rules'
// state as maps, and empty lists rather than null.
func TestNewProfileView(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	ms := t0.UnixMilli()
	kv := operators.KeyView{
		Key: "pann", LastEvent: ms + 2000, HasLastEvent: true, VisitSeq: 3, SessionSeq: 4, ForgetAt: ms + 1000,
		Visit: &operators.ActivityView{ID: "v1", SessionID: "s1", Deadline: ms + 60_000,
			Cause: operators.EventRefView{ID: "e2", Topic: "events", Partition: 2, Offset: 41},
			Summary: operators.Summary{StartedAt: ms, LastActivity: ms + 2000, EventCount: 3, PageViewCount: 2, SessionCount: 1,
				EntryURL: []byte("https://x/"), Types: []operators.TypeCount{{Type: "click", Count: 1}, {Type: "page-view", Count: 2}}, OtherTypes: 1}},
		Ext: &rules.ProfileState{Traits: []rules.Trait{{Name: "tier", Value: "gold"}}, Tags: []string{"vip"},
			Counters: []rules.Counter{{Name: "orders", Value: 7}},
			Timers:   []rules.Timer{{Name: "nudge", Type: "reminder", Deadline: ms + 3_600_000, Cause: "e2"}}},
	}
	v := newProfileView("ann", kv)
	if v.Visit == nil || v.Visit.ID != "v1" || v.Visit.Events != 3 || v.Visit.Sessions != 1 || v.Visit.LastEventFrom != "events/2@41" ||
		!v.Visit.StartedAt.Equal(t0) || v.Visit.Types["(other)"] != 1 || v.Visit.Types["page-view"] != 2 {
		t.Fatalf("visit: %+v", v.Visit)
	}
	if v.Traits["tier"] != "gold" || v.Counters["orders"] != 7 || len(v.Tags) != 1 || len(v.Schedules) != 1 ||
		!v.Schedules[0].At.Equal(t0.Add(time.Hour)) || v.Visits != 3 || v.SessionsN != 4 || !v.LastEvent.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("view: %+v", v)
	}
	b, err := json.Marshal(newProfileView("bob", operators.KeyView{Key: "pbob"}))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"sessions", "tags", "schedules"} {
		if _, ok := m[f].([]any); !ok {
			t.Errorf("%s: %v, want an empty list", f, m[f])
		}
	}
	if _, ok := m["visit"]; ok {
		t.Errorf("visit present without one: %s", b)
	}
}
