package pipeline_test

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline"
)

// boundedRules keep state, schedules (one after every visit, left pending at the end for the
// last visits) and outputs of every kind, so that rule state goes through eviction too.
const boundedRules = `
version: bounded-1
rules:
  - name: count
    on: "*"
    actions: [{increment: events}]
  - name: follow-up
    on: visit-ended
    actions:
      - schedule: {name: follow, type: follow-up, after: 30m}
      - notify: {channel: email, to: ["{{.profile.id}}@example.com"], subject: "{{.profile.counters.events}} events"}
  - name: back
    on: page-view
    when: profile.counters.events > 5
    actions: [{cancel: follow}, {route: busy}, {tag: busy}]
`

// TestOfflineKeyCapIsExact runs a generated stream (malformed, late and out-of-order records,
// idle gaps, profiles forgotten after an hour) with rules twice: with a cap far below the
// number of keys, so that keys are evicted to the temporary store and loaded back all the
// time, and without one. Every output stream must be byte-identical.
func TestOfflineKeyCapIsExact(t *testing.T) {
	g, err := bench.NewWeb(bench.WebConfig{Seed: 3, Profiles: 4000, Rate: 20, MalformedShare: 0.003, LateShare: 0.003,
		IdleEvery: 4000, IdleGap: 90 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	var buf []byte
	for range 30_000 {
		r := g.Next(buf[:0])
		buf = append(r.Value, '\n')
		in.Write(buf)
	}
	rs, err := pipeline.ParseRuleSet([]byte(boundedRules), nil, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	run := func(maxKeys int) (pipeline.OfflineSummary, [6][]byte) {
		dir := t.TempDir()
		var outs [6]bytes.Buffer
		sum, err := pipeline.RunOffline(context.Background(), pipeline.OfflineConfig{
			Partitions: 3, Rules: rs, EventLog: "all", MaxCachedKeys: maxKeys, TempDir: dir,
			Operators: operators.Config{ProfileTTL: time.Hour},
		}, bytes.NewReader(in.Bytes()), pipeline.OfflineOutputs{System: &outs[0], Events: &outs[1], Late: &outs[2],
			Dead: &outs[3], Rules: &outs[4], EventLog: &outs[5]})
		if err != nil {
			t.Fatal(err)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Fatalf("left in the temporary directory: %v", left)
		}
		var b [6][]byte
		for i := range outs {
			b[i] = outs[i].Bytes()
		}
		return sum, b
	}
	capped, got := run(50)
	free, want := run(1 << 30)
	if capped.Totals.Evicted < 10_000 || capped.Totals.Loaded < 1_000 || free.Totals.Evicted != 0 {
		t.Fatalf("capped: %d evicted, %d loaded; free: %d evicted: the cap did not bite", capped.Totals.Evicted, capped.Totals.Loaded, free.Totals.Evicted)
	}
	names := [6]string{"system", "events", "late", "dead", "rules", "event log"}
	for i := range got {
		if len(want[i]) == 0 {
			t.Errorf("%s is empty: the stream should produce every output", names[i])
		}
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("%s differs with the cap (%d bytes, %d without)", names[i], len(got[i]), len(want[i]))
		}
	}
	if capped.Totals.ExtPending != free.Totals.ExtPending || capped.Totals.ExtPending == 0 {
		t.Errorf("pending schedules: %d with the cap, %d without", capped.Totals.ExtPending, free.Totals.ExtPending)
	}
	t.Logf("%d keys evicted and %d loaded back with a cap of 50 per partition; %d system events, %d pending schedules",
		capped.Totals.Evicted, capped.Totals.Loaded, bytes.Count(want[0], []byte("\n")), free.Totals.ExtPending)
}
