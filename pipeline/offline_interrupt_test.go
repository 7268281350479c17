package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
)

// endlessInput yields page views for ever, calling onLine (once) after n lines.
type endlessInput struct {
	i, n   int
	onLine func()
	buf    []byte
}

func (r *endlessInput) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) {
		r.i++
		r.buf = fmt.Appendf(r.buf, `{"id":"e%d","type":"page-view","profile":"p%d","session":"s%d","time":%d}`+"\n", r.i, r.i%1000, r.i%1000, 1_700_000_000_000+int64(r.i)*1000)
		if r.i == r.n && r.onLine != nil {
			r.onLine()
			r.onLine = nil
		}
		if r.i > 10_000_000 {
			return 0, io.EOF // not interrupted: the test fails
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[:copy(r.buf, r.buf[n:])]
	return n, nil
}

// checkWholeLines requires every line of out to be a whole JSON object.
func checkWholeLines(t *testing.T, what, out string) {
	t.Helper()
	for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l != "" && !json.Valid([]byte(l)) {
			t.Fatalf("%s line %d is not whole: %.200s", what, i, l)
		}
	}
	if out != "" && !strings.HasSuffix(out, "\n") {
		t.Fatalf("%s ends mid-line", what)
	}
}

// TestOfflineInterrupt cancels runs at the points that used to keep dwell process going: while
// reading endless input, while a read blocks, in the middle of a run of timers in one call
// (a rule that reschedules itself every second over years of event time), and in the
// end-of-input flush. Each run returns context.Canceled with its outputs flushed: whole lines,
// as many as Written says.
func TestOfflineInterrupt(t *testing.T) {
	t.Run("reading", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var sys bytes.Buffer
		sum, err := RunOffline(ctx, OfflineConfig{}, &endlessInput{n: 5000, onLine: cancel}, OfflineOutputs{System: &sys})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
		checkWholeLines(t, "system events", sys.String())
		if int64(strings.Count(sys.String(), "\n")) != sum.Written.System || sum.Written.System == 0 {
			t.Fatalf("%d system events written, summary says %d", strings.Count(sys.String(), "\n"), sum.Written.System)
		}
		t.Logf("%v after %d lines, %d system events", err, sum.Lines, sum.Written.System)
	})
	t.Run("blocked read", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		blocked, release := make(chan struct{}), make(chan struct{})
		defer close(release) // lets the reading goroutine end
		r := io.MultiReader(strings.NewReader(`{"type":"a","profile":"p","time":0}`+"\n"), &blockingReader{blocked: blocked, release: release})
		done := make(chan error)
		go func() {
			_, err := RunOffline(ctx, OfflineConfig{}, r, OfflineOutputs{})
			done <- err
		}()
		<-blocked
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err %v, want context.Canceled", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the run waits for a read that blocks") // until release
		}
	})
	t.Run("timers in one call", func(t *testing.T) {
		rs, err := ParseRuleSet([]byte(strings.ReplaceAll(selfRescheduling, "1h", "1s")), nil, rules.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// The second event moves the watermark 70 years on (the guard off): billions of
		// reminders are due in the one call that processes it.
		in := `{"id":"a","type":"signup","profile":"p","time":"2026-01-01T00:00:00Z"}` + "\n" +
			`{"id":"b","type":"page-view","profile":"q","time":"2096-01-01T00:00:00Z"}` + "\n" +
			`{"id":"c","type":"page-view","profile":"q","time":"2096-01-01T00:00:10Z"}` + "\n"
		events := &cancelWriter{limit: 1, cancel: cancel}
		sum, err := RunOffline(ctx, OfflineConfig{Rules: rs, Operators: operators.Config{MaxTimeJump: -1}}, strings.NewReader(in), OfflineOutputs{Events: events})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
		checkWholeLines(t, "events", events.String())
		if n := int64(strings.Count(events.String(), "\n")); n != sum.Written.Events || n < 100 {
			t.Fatalf("%d events written, summary says %d", n, sum.Written.Events)
		}
		t.Logf("%v with %d events written", err, sum.Written.Events)
	})
	t.Run("flush", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var in strings.Builder
		for i := range 20_000 {
			fmt.Fprintf(&in, `{"id":"e%d","type":"page-view","profile":"p%d","session":"s%d","time":%d}`+"\n", i, i, i, 1_700_000_000_000+int64(i))
		}
		sys := &cancelWriter{match: "shutdown-flush", cancel: cancel}
		// With a key cap, the flush loads evicted keys back; the store goes all the same.
		dir := t.TempDir()
		sum, err := RunOffline(ctx, OfflineConfig{MaxCachedKeys: 500, TempDir: dir}, strings.NewReader(in.String()), OfflineOutputs{System: sys})
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "flush") {
			t.Fatalf("err %v, want context.Canceled in the flush", err)
		}
		checkWholeLines(t, "system events", sys.String())
		if ended := sum.Totals.System[operators.VisitEnded]; ended >= 20_000 {
			t.Fatalf("the flush ended all %d visits: it was not interrupted", ended)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 || sum.Totals.Evicted == 0 {
			t.Fatalf("%d keys evicted; left in the temporary directory: %v", sum.Totals.Evicted, left)
		}
	})
}

// blockingReader signals blocked and then blocks until release is closed.
type blockingReader struct {
	blocked chan<- struct{}
	release <-chan struct{}
	once    sync.Once
}

func (r *blockingReader) Read([]byte) (int, error) {
	r.once.Do(func() { close(r.blocked) })
	<-r.release
	return 0, io.EOF
}
