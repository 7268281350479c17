package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// TestLiveBackfillBeyondLateness is the measured bug of issue 18: a live instance sat idle, so
// idle advancement moved its watermark to the wall clock, and then received events dated a
// year back. They created profiles, visits and sessions the watermark had long passed (45
// system events where dwell process gives 15), profile_ttl forgot those profiles at once and
// they were created again, and nothing went to the late topic.
//
// Now every one of them is late (beyond-allowed-lateness) and changes nothing: no system event,
// no counter but the late one, also for the keys the instance already knows (the backfill's
// returning visitors are its current traffic's profiles, some with open visits, and most keys
// are evicted, so the late events look them up in the store). And the same events given to a
// fresh instance give exactly dwell process's output: a backfill gives the offline result or
// late records, never a third result.
func TestLiveBackfillBeyondLateness(t *testing.T) {
	e := newLiveEnv(t)
	// Current traffic, 2026-01-01: 30 profiles, a pause of an hour halfway so that the first
	// half's visits end and the second half's stay open.
	current := produceWeb(t, e.brokers, e.input, bench.WebConfig{Profiles: 30, Rate: 0.5, IdleEvery: 100, IdleGap: time.Hour}, 200)
	end := streamEnd(t, current)
	e.now.Store(end)
	cfg := e.config("data", vfs.NewMem())
	cfg.MaxCachedKeys = 5
	reg := prometheus.NewRegistry()
	cfg.Metrics = pipeline.NewMetrics(reg)
	l, stop := runLive(t, cfg)
	defer stop()
	pipelinetest.WaitFor(t, "the group to consume the current traffic", 60*time.Second,
		func() bool { return pipelinetest.CaughtUp(t, e.brokers, e.group, e.input) })

	// The instance idles: the wall clock moves ten minutes on and every partition's watermark
	// follows it, to exactly the clock less max_out_of_orderness, where it stays while the clock
	// does (so that no timer fires from here on).
	idleTo := end + 10*time.Minute.Milliseconds()
	ooo := (&operators.Config{}).EnsureDefaults().MaxOutOfOrderness.Milliseconds()
	pipelinetest.WaitFor(t, "every partition's watermark to follow the wall clock", 60*time.Second, func() bool {
		if e.now.Load() < idleTo {
			e.now.Add(time.Minute.Milliseconds())
			return false
		}
		wms := l.Watermarks()
		for _, w := range wms {
			if w != e.now.Load()-ooo {
				return false
			}
		}
		return len(wms) == livePartitions
	})
	before := l.Stats()
	if before.OpenVisits == 0 || before.System[operators.VisitEnded] == 0 || before.Evicted == 0 {
		t.Fatalf("open visits %d, ended %d, evicted keys %d: the test wants keys with open and ended visits, evicted",
			before.OpenVisits, before.System[operators.VisitEnded], before.Evicted)
	}

	// The backfill: a year back, the same profiles returning and new ones.
	backfillCfg := bench.WebConfig{Seed: 2, Profiles: 60, KnownProfiles: 30, Rate: 0.5, IdleEvery: 100, IdleGap: time.Hour,
		Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	backfill := produceWeb(t, e.brokers, e.input, backfillCfg, 300)
	ids := map[string]bool{}
	dec := operators.NewDecoder((&operators.Config{}).EnsureDefaults())
	var ev operators.Event
	for _, v := range backfill {
		if dec.Decode(&operators.Record{Value: v, Timestamp: operators.NoTimestamp}, &ev) == nil {
			ids[string(ev.ID)] = true
		}
	}
	pipelinetest.WaitFor(t, "the group to consume the backfill", 60*time.Second, func() bool {
		return pipelinetest.CaughtUp(t, e.brokers, e.group, e.input) && l.Stats().Records == before.Records+uint64(len(backfill))
	})
	after := l.Stats()
	if n := after.Late - before.Late; n != uint64(len(ids)) {
		t.Fatalf("%d late events, want every one of the backfill's %d events", n, len(ids))
	}
	if after.System != before.System || after.OpenVisits != before.OpenVisits || after.OpenSessions != before.OpenSessions ||
		after.Dead-before.Dead != uint64(len(backfill)-len(ids)) {
		t.Fatalf("the backfill changed the state: system events %v -> %v, open visits %d -> %d, sessions %d -> %d, dead %d -> %d",
			before.System, after.System, before.OpenVisits, after.OpenVisits, before.OpenSessions, after.OpenSessions, before.Dead, after.Dead)
	}
	// What the topics hold: every backfill event on the late topic with its reason, and no
	// system event dated in the backfill's year.
	pipelinetest.WaitFor(t, "the late records", 60*time.Second, func() bool {
		return len(pipelinetest.ReadCommitted(t, e.brokers, e.topics.Late)) >= len(ids)
	})
	late := pipelinetest.ReadCommitted(t, e.brokers, e.topics.Late)
	if len(late) != len(ids) {
		t.Fatalf("%d late records, want %d", len(late), len(ids))
	}
	for _, r := range late {
		var v struct {
			ID         string `json:"id"`
			LateReason string `json:"late_reason"`
		}
		if err := json.Unmarshal(r.Value, &v); err != nil || !ids[v.ID] || v.LateReason != string(operators.LateBeyondLateness) {
			t.Fatalf("late record %s: want a backfill event with late_reason %s (%v)", r.Value, operators.LateBeyondLateness, err)
		}
		delete(ids, v.ID)
	}
	// And the metric says why: counted when the cycles commit.
	pipelinetest.WaitFor(t, "the late events counted by reason", 60*time.Second, func() bool {
		return lateMetric(t, reg, operators.LateBeyondLateness) == float64(len(late))
	})
	for _, r := range pipelinetest.ReadCommitted(t, e.brokers, e.topics.System) {
		var v struct{ Time time.Time }
		if err := json.Unmarshal(r.Value, &v); err != nil || v.Time.Year() < 2026 {
			t.Fatalf("system event from the backfill: %s (%v)", r.Value, err)
		}
	}

	// A fresh instance (a new application id, here a Kafka of its own) given the backfill gives
	// dwell process's output.
	fresh := newLiveEnv(t)
	values := produceWeb(t, fresh.brokers, fresh.input, backfillCfg, 300)
	fresh.want, fresh.wantCount = offlineWant(t, values)
	fresh.now.Store(streamEnd(t, values))
	_, stopFresh := runLive(t, fresh.config("fresh", vfs.NewMem()))
	got := drainSystemEvents(t, fresh)
	stopFresh()
	compareWithOffline(t, got, fresh, "a fresh instance's output of the backfill")
	t.Logf("%d backfill events late on the idle instance; a fresh one gives the offline run's %d system events", len(late), len(got))
}

// lateMetric is dwell_late_events_total{reason}.
func lateMetric(t *testing.T, reg *prometheus.Registry, reason operators.Reason) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dwell_late_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == string(reason) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no dwell_late_events_total{reason=%q} series", reason)
	return 0
}

// TestLateRulesBeyondLateness: rules flagged late run on an event beyond the allowed lateness
// as on any late event, with the key's rule state when the key has one, and what they change
// there is kept; a key without state gets none from them (a late event creates nothing).
func TestLateRulesBeyondLateness(t *testing.T) {
	rs, err := pipeline.ParseRuleSet([]byte(`
version: late-1
rules:
  - name: count-late
    on: page-view
    late: true
    when: event.late
    actions:
      - increment: late_seen
  - name: report
    on: page-view
    actions:
      - emit: {type: seen, queue: q, properties: {late_seen: "{{.profile.counters.late_seen}}"}}
`), nil, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(id, profile string, minutes int) string {
		return fmt.Sprintf(`{"id":%q,"type":"page-view","profile":%q,"time":%d}`, id, profile, int64(minutes)*time.Minute.Milliseconds())
	}
	input := strings.Join([]string{
		ev("a1", "known", 0),
		ev("b1", "other", 120),
		ev("late-known", "known", 10), // 1h50m behind the watermark: late, the key has state
		ev("late-new", "new", 10),     // likewise, of a key never seen
		ev("n1", "new", 121),
		ev("a2", "known", 122),
	}, "\n")
	var sys, late, ru bytes.Buffer
	if _, err := pipeline.RunOffline(context.Background(), pipeline.OfflineConfig{Rules: rs}, strings.NewReader(input),
		pipeline.OfflineOutputs{System: &sys, Late: &late, Rules: &ru}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(late.String(), `"late_reason":"beyond-allowed-lateness"`); n != 2 {
		t.Fatalf("%d events late beyond the allowed lateness, want 2:\n%s", n, late.String())
	}
	// new's profile is created by n1, and by nothing before it.
	if created := regexp.MustCompile(`"type":"profile-created","time":"([^"]+)","profile":"new"`).FindAllStringSubmatch(sys.String(), -1); len(created) != 1 || created[0][1] != "1970-01-01T02:01:00.000Z" {
		t.Fatalf("profile new created %v, want once, at 02:01 by n1:\n%s", created, sys.String())
	}
	// The late rule counted known's late event in known's state, and nothing for new.
	for cause, want := range map[string]string{"a1": "0", "n1": "0", "a2": "1"} {
		if !regexp.MustCompile(`"dwell-cause":"` + cause + `".*"late_seen":"` + want + `"`).MatchString(ru.String()) {
			t.Errorf("the rule output caused by %s does not say late_seen %s:\n%s", cause, want, ru.String())
		}
	}
}
