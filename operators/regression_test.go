package operators

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// rv is a review harness: a Sessionizer with a collecting emitter and a record feeder.
type rv struct {
	t   *testing.T
	s   *Sessionizer
	out lines
	off int64
}

func newRV(t *testing.T, cfg Config) *rv {
	r := &rv{t: t}
	r.out.raw = true
	s, err := NewSessionizer(cfg, 0, &r.out)
	if err != nil {
		t.Fatal(err)
	}
	r.s = s
	return r
}

// ev feeds one record; fields is the JSON body without braces; rel is the time relative to base.
func (r *rv) ev(rel time.Duration, fields string) {
	js := fmt.Sprintf(`{"time":%d,%s}`, base.Add(rel).UnixMilli(), fields)
	r.s.Process(&Record{Topic: "in", Offset: r.off, Value: []byte(js), Timestamp: NoTimestamp})
	r.off++
}

func (r *rv) lines() []string { return splitLines(r.out.b.String()) }

func (r *rv) grep(sub ...string) []string {
	var got []string
	for _, l := range r.lines() {
		ok := true
		for _, s := range sub {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			got = append(got, l)
		}
	}
	return got
}

func (r *rv) dump() { r.t.Log("\n" + r.out.b.String()) }

// Regression: session_count misses a session that was opened in an earlier visit and is still open.
func TestRegressionSessionCountCarriedOverSession(t *testing.T) {
	r := newRV(t, Config{MaxVisitDuration: time.Hour})
	r.ev(0, `"type":"page-view","id":"a","profile":"p1","session":"s1"`)
	r.ev(20*time.Minute, `"type":"page-view","id":"a2","profile":"p1","session":"s1"`)
	r.ev(40*time.Minute, `"type":"page-view","id":"b","profile":"p1","session":"s2"`)
	r.ev(55*time.Minute, `"type":"page-view","id":"c","profile":"p1","session":"s1"`)
	// visit 1 hits its 1h cap at 60m; s1 and s2 stay open.
	r.ev(65*time.Minute, `"type":"page-view","id":"d","profile":"p1","session":"s1"`)
	r.ev(66*time.Minute, `"type":"page-view","id":"e","profile":"p1","session":"s2"`)
	r.s.Flush()
	ended := r.grep(`"type":"visit-ended"`, `"started_at":"2026-01-01T01:05:00.000Z"`)
	if len(ended) != 1 || !strings.Contains(ended[0], `"session_count":2`) {
		r.dump()
		t.Fatalf("second visit saw sessions s1 and s2; want session_count 2, got %q", ended)
	}
}

// Regression: a visit started by a session-less event never counts a still-open session.
func TestRegressionSessionCountVisitStartedWithoutSession(t *testing.T) {
	r := newRV(t, Config{VisitGap: 10 * time.Minute, SessionTimeout: time.Hour})
	r.ev(0, `"type":"page-view","id":"a","profile":"p1","session":"s1"`)
	r.ev(20*time.Minute, `"type":"page-view","id":"b","profile":"p1"`) // new visit (gap 10m)
	r.ev(21*time.Minute, `"type":"page-view","id":"c","profile":"p1","session":"s1"`)
	r.s.Flush()
	ended := r.grep(`"type":"visit-ended"`, `"started_at":"2026-01-01T00:20:00.000Z"`)
	if len(ended) != 1 || !strings.Contains(ended[0], `"session_count":1`) {
		r.dump()
		t.Fatalf("second visit saw session s1; want session_count 1, got %q", ended)
	}
}

// Regression: event time 0 (1970-01-01T00:00:00Z, accepted by the decoder) is the "never seen"
// sentinel of lastSeen, so the profile is created twice.
func TestRegressionEpochZeroProfileCreatedTwice(t *testing.T) {
	r := newRV(t, Config{})
	for i, ts := range []int{0, 1000, 2000} {
		r.s.Process(&Record{Topic: "in", Offset: int64(i), Timestamp: NoTimestamp,
			Value: []byte(fmt.Sprintf(`{"type":"page-view","id":"e%d","profile":"p1","time":%d}`, i, ts))})
	}
	r.s.Flush()
	if got := r.grep(`"type":"profile-created"`); len(got) != 1 {
		r.dump()
		t.Fatalf("want 1 profile-created, got %d", len(got))
	}
}

// Regression: a session closed by an end event and reopened with the same id in the same millisecond
// gets the same content ids as the first: two different session-opened (and session-closed)
// events share an id, and id-based dedup downstream drops one.
func TestRegressionReopenedSessionSameMillisecondIDCollision(t *testing.T) {
	r := newRV(t, Config{})
	r.ev(0, `"type":"logout","id":"a","profile":"p1","session":"s1"`)
	r.ev(0, `"type":"page-view","id":"b","profile":"p1","session":"s1"`)
	r.s.Flush()
	ids := map[string]string{}
	for _, l := range r.grep(`system: `) {
		id := l[len(`system: {"id":"`):][:32]
		if prev, ok := ids[id]; ok {
			r.dump()
			t.Fatalf("duplicate system-event id %s:\n%s\n%s", id, prev, l)
		}
		ids[id] = l
	}
}

// Regression: keys are never forgotten: profiles unseen for longer than profile_ttl, and profile-less
// keys (one per anonymous session) whose visits ended, stay in memory forever.
func TestRegressionKeysNeverEvicted(t *testing.T) {
	r := newRV(t, Config{ProfileTTL: time.Hour})
	for i := range 1000 {
		r.ev(time.Duration(i)*time.Millisecond, fmt.Sprintf(`"type":"page-view","profile":"p%d"`, i))
	}
	r.ev(5*time.Hour, `"type":"page-view","profile":"other"`)
	r.ev(5*time.Hour+time.Minute, `"type":"page-view","profile":"other"`)
	if st := r.s.Stats(); st.Keys > 10 {
		t.Fatalf("1000 profiles unseen for 5h with profile_ttl 1h still held: keys=%d open-visits=%d", st.Keys, st.OpenVisits)
	}
}

// Regression: profile-less keys (one per anonymous session) are never forgotten either.
func TestRegressionProfileLessKeysNeverEvicted(t *testing.T) {
	r := newRV(t, Config{})
	for i := range 1000 {
		r.ev(time.Duration(i)*time.Millisecond, fmt.Sprintf(`"type":"page-view","session":"anon%d"`, i))
	}
	r.s.Flush() // every visit and session has ended
	if st := r.s.Stats(); st.Keys != 0 {
		t.Fatalf("after every anonymous visit ended and input ended, keys=%d", st.Keys)
	}
}

// Regression: a late event that joins the open visit with an earlier time than the current entry sets
// nothing (entry_url stays with the later event) while exit_url/cause are chosen by time; and
// the visit's "session" field is taken from the late (older) event.
func TestRegressionLateJoinerEntryURL(t *testing.T) {
	r := newRV(t, Config{})
	r.ev(0, `"type":"page-view","id":"a","profile":"p1","session":"s1"`)
	r.ev(20*time.Minute, `"type":"page-view","id":"c","profile":"p1","session":"s1","context":{"page":{"url":"/late-in-time"}}`)
	r.ev(25*time.Minute, `"type":"x","id":"w","profile":"p2"`) // watermark 25m-5s
	r.ev(10*time.Minute, `"type":"page-view","id":"b","profile":"p1","session":"s2","context":{"page":{"url":"/first-in-time"}}`)
	r.s.Flush()
	ended := r.grep(`"type":"visit-ended"`, `"profile":"p1"`)
	if len(ended) != 1 || !strings.Contains(ended[0], `"entry_url":"/first-in-time"`) || !strings.Contains(ended[0], `"session":"s1"`) {
		r.dump()
		t.Fatalf("want entry_url /first-in-time and session s1 (of the latest event, like cause_event_id c); got %q", ended)
	}
}

// Regression: an out-of-range SystemType in Config.Disabled passes Validate and panics in NewSessionizer.
func TestRegressionDisabledOutOfRangePanics(t *testing.T) {
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("NewSessionizer panicked: %v", p)
		}
	}()
	if _, err := NewSessionizer(Config{Disabled: []SystemType{SystemType(9)}}, 0, &lines{}); err == nil {
		t.Fatal("want a validation error")
	}
}

// A key forgotten (profile_ttl) and seen again before the cycle's changes were stored was
// loaded back from the cold store, which still held its old state: the new event joined the
// visit that had ended, with its old id, unlike the same run without a cold store (offline).
func TestRegressionForgottenKeyNotReloadedFromColdStore(t *testing.T) {
	run := func(withCold bool) string {
		var out lines
		s, err := NewSessionizer(Config{ProfileTTL: time.Hour, MaxOutOfOrderness: time.Millisecond}, 0, &out)
		if err != nil {
			t.Fatal(err)
		}
		cold := memCold{}
		if withCold {
			s.SetColdStore(cold)
		}
		at := func(rel time.Duration, id string) {
			v := fmt.Sprintf(`{"id":%q,"type":"page-view","time":%d,"profile":"p1"}`, id, base.Add(rel).UnixMilli())
			s.Process(&Record{Topic: "in", Value: []byte(v), Timestamp: NoTimestamp})
		}
		at(0, "a")
		at(time.Second, "a2") // moves the watermark past a: p1 exists
		if withCold {
			s.DrainChanges(func(c Change) { cold[c.Key], _ = s.AppendKeySnapshot(nil, c.Key) })
		}
		at(3*time.Hour, "b") // forgets p1 (its ttl passed), then processes b, in one cycle
		at(3*time.Hour+time.Second, "c")
		s.Flush()
		return out.b.String()
	}
	if got, want := run(true), run(false); got != want {
		t.Fatalf("with a cold store:\n%s\nwithout:\n%s", got, want)
	}
}

// memCold is a cold store over a map: the key snapshots a pipeline would have written to Pebble.
type memCold map[string][]byte

func (m memCold) LoadKey(key string) ([]byte, bool, error) {
	b, ok := m[key]
	return b, ok, nil
}
