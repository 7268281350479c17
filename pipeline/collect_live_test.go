package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/collect"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// TestCollectEndToEnd is dwell collect end to end: simulated visitors post /track batches to a
// collector, the live processor turns its input topic into system events, and those equal,
// per key and in order, what dwell process gives on the records read back from the topic. On
// kfake by default, on the real broker under make test-kafka.
//
// Visitors send in parallel (in rounds, each its requests in order), some with a profile id, some
// without (the collector mints one from the session). Every event carries its id and a time
// (its own, or its batch's), so the output does not depend on when the requests arrived.
func TestCollectEndToEnd(t *testing.T) {
	e := newLiveEnv(t)
	ss, err := collect.ParseSources([]byte("sources:\n  - id: web\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := collect.New(collect.Config{Brokers: e.brokers, Topic: e.input, Sources: ss, PingInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		_ = c.Run(ctx)
	}()
	srv := httptest.NewServer(c.Handler())
	defer func() {
		srv.Close()
		cancel()
		<-pinged
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		if err := c.Close(cctx); err != nil {
			t.Error(err)
		}
	}()
	pipelinetest.WaitFor(t, "the collector to be ready", 30*time.Second, func() bool { return c.Ready() == nil })

	const visitors, requestsPerVisitor = 30, 10
	base := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	var end time.Time
	bodies := make([][]string, visitors)
	for v := range visitors {
		t0 := base.Add(time.Duration(v) * 5 * time.Second)
		for r := range requestsPerVisitor {
			visit := r / 4 // every fourth request opens a new visit two hours on
			at := t0.Add(time.Duration(visit)*2*time.Hour + time.Duration(r%4)*3*time.Minute)
			body, last := trackBody(v, r, visit, at)
			bodies[v] = append(bodies[v], body)
			if last.After(end) {
				end = last
			}
		}
	}
	// In rounds: every visitor's r-th request at once, then the next, so that event time moves
	// on together in every partition and no event is late (the comparison would hold anyway:
	// both sides read the same records in the same order).
	profiles := make([]map[string]bool, visitors)
	for v := range profiles {
		profiles[v] = map[string]bool{}
	}
	for r := range requestsPerVisitor {
		var wg sync.WaitGroup
		errs := make(chan error, visitors)
		for v := range visitors {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id, err := postTrack(srv, bodies[v][r])
				if err != nil {
					errs <- fmt.Errorf("visitor %d request %d: %w", v, r, err)
					return
				}
				profiles[v][id] = true
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	minted := 0
	for v := range visitors {
		if v%3 == 2 {
			minted += len(profiles[v])
		}
	}
	if minted == 0 {
		t.Fatal("no profile was minted")
	}

	// dwell process on the records as they are in the topic, partition by partition: each key
	// lives in one partition, in the same order as the live processor reads it.
	recs := pipelinetest.ReadCommitted(t, e.brokers, e.input)
	if len(recs) != visitors*requestsPerVisitor {
		t.Fatalf("%d records in the input, want one per request (%d)", len(recs), visitors*requestsPerVisitor)
	}
	slices.SortStableFunc(recs, func(a, b *kgo.Record) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	values := make([][]byte, len(recs))
	for i, r := range recs {
		values[i] = r.Value
	}
	e.want, e.wantCount = offlineWant(t, values)
	if keys := 20 + minted; len(e.want) != keys {
		t.Fatalf("dwell process gives system events for %d keys, want every profile's (%d): events were late or dead", len(e.want), keys)
	}
	e.now.Store(end.UnixMilli())

	live, err := pipeline.NewLive(e.config("data", vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	lctx, lcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- live.Run(lctx) }()
	got := drainSystemEvents(t, e)
	lcancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	compareWithOffline(t, got, e, "system events of collected requests")
	t.Logf("%d requests (%d minted profiles) -> %d records -> %d system events over %d keys, equal to dwell process's",
		visitors*requestsPerVisitor, minted, len(recs), len(got), len(e.want))
}

// trackBody is visitor v's r-th /track request, in visit visit, at time at: 1 to 10 events,
// each with its id; the time on the batch (every third request) or on each event. A third of
// the visitors send no profile. It returns the body and its last event time.
func trackBody(v, r, visit int, at time.Time) (string, time.Time) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"source":{"id":"web"},"session":{"id":"s-%d-%d"}`, v, visit)
	if v%3 != 2 {
		fmt.Fprintf(&b, `,"profile":{"id":"p-%d"}`, v)
	}
	fmt.Fprintf(&b, `,"context":{"page":{"url":"https://shop.example.com/%d"}}`, r)
	batchTime := r%3 == 0
	if batchTime {
		fmt.Fprintf(&b, `,"time":%q`, at.Format(time.RFC3339Nano))
	}
	n := 1 + (v*7+r*3)%10
	types := []string{"page-view", "product-view", "add-to-cart", "search"}
	b.WriteString(`,"events":[`)
	last := at
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"e-%d-%d-%d","type":%q,"properties":{"i":%d}`, v, r, i, types[(v+r+i)%len(types)], i)
		if !batchTime {
			last = at.Add(time.Duration(i) * 10 * time.Second)
			fmt.Fprintf(&b, `,"time":%q`, last.Format(time.RFC3339Nano))
		}
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return b.String(), last
}

// postTrack posts body to /track and returns the profile id of a 200's answer.
func postTrack(srv *httptest.Server, body string) (string, error) {
	resp, err := srv.Client().Post(srv.URL+"/track", "application/json", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, out)
	}
	var r struct{ Profile struct{ ID string } }
	if err := json.Unmarshal(out, &r); err != nil || r.Profile.ID == "" {
		return "", fmt.Errorf("answer %s: %v", out, err)
	}
	return r.Profile.ID, nil
}
