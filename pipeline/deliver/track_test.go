package deliver

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestTrackCommitsOnlyTheHandledPrefix(t *testing.T) {
	tr := newTrack()
	for _, o := range []int64{10, 11, 13, 14} { // 12: a gap (a transaction marker)
		if !tr.add(o) {
			t.Fatalf("add %d refused", o)
		}
	}
	if tr.add(11) || tr.add(9) {
		t.Error("a repeated or older offset was tracked again")
	}
	steps := []struct {
		done      int64
		next, low int64
		nPending  int
	}{
		{13, -1, 10, 4}, // out of order: nothing committable
		{11, -1, 10, 4},
		{10, 14, 14, 1}, // 10, 11 and 13 handled: commit up to 14
		{14, 15, 15, 0},
		{99, 15, 15, 0}, // unknown: ignored
	}
	for _, s := range steps {
		tr.done(s.done)
		if tr.next != s.next || tr.lowest() != s.low || len(tr.pending) != s.nPending {
			t.Fatalf("after done(%d): next %d lowest %d pending %d; want %d %d %d",
				s.done, tr.next, tr.lowest(), len(tr.pending), s.next, s.low, s.nPending)
		}
	}
	if tr.add(14) {
		t.Error("an offset below next was tracked")
	}
}

func TestBackoff(t *testing.T) {
	for n := 1; n < 40; n++ {
		want := min(100*time.Millisecond<<min(n-1, 20), 2*time.Second)
		for range 50 {
			d := backoff(n, 100*time.Millisecond, 2*time.Second)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %s, want in [%s, %s]", n, d, want/2, want)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		" 0 ":                           0,
		"-5":                            0,
		"soon":                          0,
		"Thu, 01 Jan 2026 00:00:30 GMT": 30 * time.Second,
		"Wed, 31 Dec 2025 23:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestEnvelope(t *testing.T) {
	for _, bad := range []string{"", "not json", "[1]", `"s"`, `{"id":`, `{"id":3}`} {
		if _, err := parseEnvelope([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	env, err := parseEnvelope([]byte(` {"id":"x","channel":"email","to":["a"]}`))
	if err != nil || *env.ID != "x" || *env.Channel != "email" {
		t.Errorf("%+v %v", env, err)
	}
}

// FuzzEnvelope: any record value is parsed or rejected without a panic, and the idempotency
// key is never empty.
func FuzzEnvelope(f *testing.F) {
	f.Add([]byte(`{"id":"x","channel":"email"}`))
	f.Add([]byte(`{"id":""}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, v []byte) {
		env, err := parseEnvelope(v)
		if err != nil {
			return
		}
		if idempotencyKey(&kgo.Record{Topic: "q", Value: v}, &env) == "" {
			t.Fatal("empty idempotency key")
		}
	})
}
