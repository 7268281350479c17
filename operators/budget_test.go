package operators

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// genStorm returns records over many profiles with long silences, so that one record can pass
// the deadlines of most keys at once (a timer storm), and a few late and out-of-order ones.
func genStorm(rng *rand.Rand, n, profiles int) [][]byte {
	t := base.UnixMilli()
	out := make([][]byte, 0, n)
	types := []string{"page-view", "click", "add-to-cart", "logout"}
	for i := range n {
		switch r := rng.IntN(200); {
		case r < 3:
			t += 3 * time.Hour.Milliseconds() // every visit and session ends
		case r < 6:
			t -= rng.Int64N(20 * time.Minute.Milliseconds()) // late
		default:
			t += rng.Int64N(4_000)
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, `{"id":"e%05d","type":%q,"time":%d`, i, types[rng.IntN(len(types))], t)
		if rng.IntN(10) > 0 {
			fmt.Fprintf(&b, `,"profile":"p%d"`, rng.IntN(profiles))
		}
		fmt.Fprintf(&b, `,"session":"s%d"}`, rng.IntN(profiles*2))
		if rng.IntN(50) == 0 {
			b.Reset()
			b.WriteString(`{"type":`) // a dead letter, held like any record
		}
		out = append(out, b.Bytes())
	}
	return out
}

// TestBudgetMatchesUnbounded is the property behind bounded work: a partition run in cycles
// with tiny random budgets, its keys evicted to a cold store after every cycle, and now and
// then restored from its snapshots while behind (held records, a trailing watermark, a timer
// storm half fired), emits exactly the outputs, in the same order, of one unbounded run.
func TestBudgetMatchesUnbounded(t *testing.T) {
	cfg := Config{ProfileTTL: 6 * time.Hour}
	for seed := range uint64(25) {
		rng := rand.New(rand.NewPCG(seed, 5))
		values := genStorm(rng, 600, 60)
		order := make([]int, len(values))
		for i := range order {
			order[i] = i
		}
		want := runStream(t, cfg, values, order)

		var out lines
		out.raw = true
		cold := memCold{}
		newS := func() *Sessionizer {
			s, err := NewSessionizer(cfg, 0, &out)
			if err != nil {
				t.Fatal(err)
			}
			s.SetColdStore(cold)
			return s
		}
		s := newS()
		commit := func() { // what a live cycle's end does: store the changes, evict
			s.DrainChanges(func(c Change) {
				if c.Deleted {
					delete(cold, c.Key)
					return
				}
				b, _ := s.AppendKeySnapshot(nil, c.Key)
				cold[c.Key] = b
			})
			s.Evict(rng.IntN(8))
		}
		behindSeen, heldSeen, restores, restoresBehind := 0, 0, 0, 0
		budget := func() Budget { return Budget{Work: 1 + rng.IntN(12), Loads: rng.IntN(4)} }
		next := 0
		for next < len(values) || s.Behind() {
			s.SetBudget(budget())
			s.Continue()
			for range rng.IntN(6) {
				if next < len(values) {
					s.Process(&Record{Topic: "in", Offset: int64(next), Value: values[next], Timestamp: NoTimestamp})
					next++
				}
			}
			if err := s.Err(); err != nil {
				t.Fatal(err)
			}
			if s.Behind() {
				behindSeen++
			}
			if s.Held() > 0 {
				heldSeen++
			}
			commit()
			if rng.IntN(10) == 0 { // restart: restore from the stored keys and the partition
				if s.Held() > 0 {
					restoresBehind++
				}
				part := s.AppendPartitionSnapshot(nil)
				s = newS()
				for _, b := range cold {
					if err := s.RestoreKey(b); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.RestorePartition(part); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				s.Evict(rng.IntN(8))
				restores++
			}
		}
		for first := true; first || s.Behind(); first = false {
			s.SetBudget(budget())
			s.Flush()
			commit()
		}
		got := splitLines(out.b.String())
		if !slices.Equal(got, want) {
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Fatalf("seed %d: output %d differs\n got: %s\nwant: %s", seed, i, got[i], want[i])
				}
			}
			t.Fatalf("seed %d: %d outputs, want %d", seed, len(got), len(want))
		}
		if behindSeen == 0 || heldSeen == 0 || restoresBehind == 0 {
			t.Fatalf("seed %d: the run never fell behind (%d), held (%d) or restored while holding records (%d of %d)",
				seed, behindSeen, heldSeen, restoresBehind, restores)
		}
	}
}
