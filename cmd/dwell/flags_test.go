package main

import (
	"testing"
	"time"

	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/eventlog"
	"github.com/dwellhq/dwell/pipeline/move"
)

// TestEventLogTopicDefaults: dwell move and dwell log default to the event-log topic dwell run
// writes.
func TestEventLogTopicDefaults(t *testing.T) {
	want := pipeline.DefaultTopics().EventLog
	if got := move.DefaultConfig().EventLogTopic; got != want {
		t.Errorf("dwell move logs to %q by default, dwell run to %q", got, want)
	}
	if got := eventlog.DefaultConfig().Topic; got != want {
		t.Errorf("dwell log searches %q by default, dwell run writes %q", got, want)
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                          {},
		"90m":                       now.Add(-90 * time.Minute),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"2026-02-01T00:00:00+01:00": time.Date(2026, 1, 31, 23, 0, 0, 0, time.UTC),
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1h", "soon", "2026-02-01"} {
		if _, err := parseWhen(bad, now); err == nil {
			t.Errorf("parseWhen(%q): no error", bad)
		}
	}
}
