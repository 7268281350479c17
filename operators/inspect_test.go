package operators

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

// Inspect gives the same view of a key in memory and, once evicted, from the cold store, and
// leaves the sessionizer as it was: the key stays cold, no load is counted.
func TestInspectInMemoryAndCold(t *testing.T) {
	var out lines
	s, err := NewSessionizer(Config{MaxOutOfOrderness: time.Millisecond}, 3, &out)
	if err != nil {
		t.Fatal(err)
	}
	cold := memCold{}
	s.SetColdStore(cold)
	for i, typ := range []string{"page-view", "click", "page-view"} {
		v := fmt.Sprintf(`{"id":"e%d","type":%q,"time":%d,"profile":"p1","session":"s1","url":"https://x/%d"}`,
			i, typ, base.Add(time.Duration(i)*time.Second).UnixMilli(), i)
		s.Process(&Record{Topic: "in", Offset: int64(i), Value: []byte(v), Timestamp: NoTimestamp})
	}
	later := fmt.Sprintf(`{"id":"x","type":"click","time":%d,"profile":"p2"}`, base.Add(10*time.Second).UnixMilli())
	s.Process(&Record{Topic: "in", Offset: 3, Value: []byte(later), Timestamp: NoTimestamp}) // moves the watermark past p1's events
	if _, ok, err := s.Inspect("pnobody"); ok || err != nil {
		t.Fatalf("unknown key: ok %v, err %v", ok, err)
	}
	hot, ok, err := s.Inspect("pp1")
	if !ok || err != nil {
		t.Fatalf("in memory: ok %v, err %v", ok, err)
	}
	if !hot.InMemory || hot.Visit == nil || len(hot.Sessions) != 1 || hot.Visit.Summary.EventCount != 3 ||
		hot.Visit.Summary.PageViewCount != 2 || hot.Sessions[0].SessionID != "s1" || !hot.HasLastEvent ||
		hot.LastEvent != base.Add(2*time.Second).UnixMilli() || hot.VisitDeadline == 0 || len(hot.Visit.ID) != 32 {
		t.Fatalf("in memory: %+v", hot)
	}
	s.DrainChanges(func(c Change) { cold[c.Key], _ = s.AppendKeySnapshot(nil, c.Key) })
	if n := s.Evict(0); n != 1 {
		t.Fatalf("evicted %d keys, want 1", n)
	}
	got, ok, err := s.Inspect("pp1")
	if !ok || err != nil {
		t.Fatalf("cold: ok %v, err %v", ok, err)
	}
	if got.InMemory {
		t.Fatal("cold key reported in memory")
	}
	got.InMemory = true
	if !reflect.DeepEqual(got, hot) {
		t.Fatalf("cold view differs:\n got %+v\nwant %+v", got, hot)
	}
	if st := s.Stats(); st.Loaded != 0 || st.Keys != 0 {
		t.Fatalf("Inspect changed the sessionizer: loaded %d, keys %d", st.Loaded, st.Keys)
	}
}

// A cold snapshot cut short or corrupted is an error for Inspect, never a panic, and leaves the
// sessionizer without an error of its own (the query failed, not the partition).
func TestInspectCorruptCold(t *testing.T) {
	var out lines
	s, err := NewSessionizer(Config{MaxOutOfOrderness: time.Millisecond}, 0, &out)
	if err != nil {
		t.Fatal(err)
	}
	cold := memCold{}
	s.SetColdStore(cold)
	for i := range 3 {
		v := fmt.Sprintf(`{"id":"e%d","type":"page-view","time":%d,"profile":"p1","session":"s1"}`, i, base.Add(time.Duration(i)*time.Second).UnixMilli())
		s.Process(&Record{Topic: "in", Offset: int64(i), Value: []byte(v), Timestamp: NoTimestamp})
	}
	snap, ok := s.AppendKeySnapshot(nil, "pp1")
	if !ok {
		t.Fatal("no snapshot")
	}
	for n := range len(snap) {
		cold["pcut"] = snap[:n]
		if _, ok, err := s.Inspect("pcut"); ok || err == nil {
			t.Fatalf("snapshot cut at %d of %d: ok %v, err %v", n, len(snap), ok, err)
		}
	}
	if s.Err() != nil {
		t.Fatalf("a failed query failed the sessionizer: %v", s.Err())
	}
}
