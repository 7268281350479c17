package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
)

// selfRescheduling is the runaway of issue 12: a rule on the fired type schedules it again.
const selfRescheduling = `
version: again-1
rules:
  - name: start
    on: signup
    actions: [{schedule: {name: reminder, type: reminder, after: 1h}}]
  - name: again
    on: reminder
    actions: [{schedule: {name: reminder, type: reminder, after: 1h}}]
`

// cancelWriter cancels a context once more than limit bytes were written to it, and counts.
type cancelWriter struct {
	bytes.Buffer
	limit  int
	cancel context.CancelFunc
	match  string // if set, cancel on the first write holding it instead
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if (w.match != "" && bytes.Contains(p, []byte(w.match))) || (w.limit > 0 && w.Len() > w.limit) {
		w.cancel()
	}
	return n, err
}

// TestOfflineSchedulesEnd runs the self-rescheduling rule: each reminder fires once an hour up
// to the last event time seen, and the next one stays pending and is counted, instead of
// event time running on for ever at the end of input.
func TestOfflineSchedulesEnd(t *testing.T) {
	rs, err := ParseRuleSet([]byte(selfRescheduling), nil, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const hour = 3_600_000
	t0 := int64(1_767_225_600_000)
	var in strings.Builder
	for p := range 3 {
		fmt.Fprintf(&in, `{"id":"s%d","type":"signup","profile":"p%d","time":%d}`+"\n", p, p, t0)
	}
	fmt.Fprintf(&in, `{"id":"last","type":"page-view","profile":"p0","time":%d}`+"\n", t0+5*hour)
	// A profile_ttl shorter than the schedule makes the key's forget timer wait for the pending
	// schedule; it must not wait for ever.
	for _, c := range []struct {
		parts int
		ttl   time.Duration
		cap   int
	}{{1, 0, 0}, {2, 0, 0}, {1, 30 * time.Minute, 0}, {1, 0, 1}, {2, 30 * time.Minute, 1}} {
		parts := c.parts
		ctx, cancel := context.WithCancel(context.Background())
		// A runaway writes without end: stop it (and fail) after a megabyte of events.
		events := &cancelWriter{limit: 1 << 20, cancel: cancel}
		var sum OfflineSummary
		done := make(chan error, 1)
		go func() {
			var err error
			sum, err = RunOffline(ctx, OfflineConfig{Partitions: parts, Rules: rs, Operators: operators.Config{ProfileTTL: c.ttl}, MaxCachedKeys: c.cap},
				strings.NewReader(in.String()), OfflineOutputs{Events: events})
			done <- err
		}()
		select {
		case err = <-done:
		case <-time.After(time.Minute): // a loop that writes nothing
			t.Fatalf("%d partitions, ttl %v: the run did not end", parts, c.ttl)
		}
		cancel()
		if err != nil {
			t.Fatalf("%d partitions: %v (after %d bytes of events)", parts, err, events.Len())
		}
		// Every partition's last event time is what ends its reminders. With one partition that
		// is t0+5h for all three: the reminders at 1h..5h fire (5h is the last event time itself).
		fired := strings.Count(events.String(), `"type":"reminder"`)
		if parts == 1 && (fired != 15 || sum.Totals.ExtPending != 3) {
			t.Fatalf("1 partition: %d reminders fired and %d pending; want 15 and 3", fired, sum.Totals.ExtPending)
		}
		if sum.Totals.ExtPending != 3 {
			t.Fatalf("%d partitions: %d schedules pending, want 3 (one per profile)", parts, sum.Totals.ExtPending)
		}
		t.Logf("%d partitions, ttl %v: %d reminders fired, %d pending", parts, c.ttl, fired, sum.Totals.ExtPending)
	}
}
