package operators

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// genStream returns records of a few profiles and anonymous sessions whose event times advance
// with gaps that cross visit_gap and session_timeout, in time order, with distinct ids.
func genStream(rng *rand.Rand, n int) [][]byte {
	t := base.UnixMilli()
	out := make([][]byte, 0, n)
	types := []string{"page-view", "click", "add-to-cart", "logout", "search"}
	for i := range n {
		switch r := rng.IntN(100); {
		case r < 3:
			t += 40 * time.Minute.Milliseconds() // visits and sessions end
		case r < 60:
			t += rng.Int64N(20_000)
		default:
			t += rng.Int64N(3 * time.Minute.Milliseconds())
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, `{"id":"e%05d","type":%q,"time":%d`, i, types[rng.IntN(len(types))], t)
		if rng.IntN(10) > 0 {
			fmt.Fprintf(&b, `,"profile":"p%d"`, rng.IntN(6))
		}
		if rng.IntN(10) > 0 {
			fmt.Fprintf(&b, `,"session":"s%d"`, rng.IntN(9))
		}
		if rng.IntN(5) == 0 {
			fmt.Fprintf(&b, `,"context":{"page":{"url":"/u%d"}}`, rng.IntN(4))
		}
		if rng.IntN(20) == 0 {
			b.WriteString(`,"options":{"ephemeral":true}`)
		}
		b.WriteString("}")
		out = append(out, b.Bytes())
	}
	return out
}

// run processes values (offsets from their index in the unpermuted stream, so derived ids are
// stable) and returns every output line.
func runStream(t *testing.T, cfg Config, values [][]byte, order []int) []string {
	t.Helper()
	var out lines
	out.raw = true
	s, err := NewSessionizer(cfg, 0, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range order {
		s.Process(&Record{Topic: "in", Offset: int64(i), Value: values[i], Timestamp: NoTimestamp})
	}
	s.Flush()
	return splitLines(out.b.String())
}

func splitLines(s string) []string {
	ls := bytes.Split([]byte(s), []byte("\n"))
	out := make([]string, 0, len(ls))
	for _, l := range ls {
		if len(l) > 0 {
			out = append(out, string(l))
		}
	}
	return out
}

// TestPermutationWithinOutOfOrderness is the property behind the reorder buffer: shuffling
// events so that none arrives after an event more than max_out_of_orderness later than itself
// leaves every output, byte for byte and in order, unchanged.
func TestPermutationWithinOutOfOrderness(t *testing.T) {
	cfg := Config{MaxOutOfOrderness: 5 * time.Second}
	ooo := cfg.MaxOutOfOrderness.Milliseconds()
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 99))
		values := genStream(rng, 400)
		inOrder := make([]int, len(values))
		for i := range inOrder {
			inOrder[i] = i
		}
		want := runStream(t, cfg, values, inOrder)
		if len(want) < len(values) {
			t.Fatalf("seed %d: only %d outputs for %d events", seed, len(want), len(values))
		}
		times := make([]int64, len(values))
		for i, v := range values {
			var ev Event
			if err := NewDecoder(new(Config).EnsureDefaults()).Decode(&Record{Value: v, Timestamp: NoTimestamp}, &ev); err != nil {
				t.Fatal(err)
			}
			times[i] = ev.Time
		}
		for trial := range 5 {
			perm := boundedShuffle(rng, times, ooo)
			got := runStream(t, cfg, values, perm)
			if !slices.Equal(got, want) {
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						t.Fatalf("seed %d trial %d: output %d differs\n got: %s\nwant: %s", seed, trial, i, got[i], want[i])
					}
				}
				t.Fatalf("seed %d trial %d: %d outputs, want %d", seed, trial, len(got), len(want))
			}
		}
	}
}

// boundedShuffle returns a random arrival order of events with the given times in which no
// event arrives after one that is more than ooo later: a shuffle the watermark tolerates.
func boundedShuffle(rng *rand.Rand, times []int64, ooo int64) []int {
	// Sort by a jittered key: time minus a random delay in [0, ooo]. An event e arrives after
	// f only if t_e - d_e >= t_f - d_f, so t_f - t_e <= d_f - d_e <= ooo.
	idx := make([]int, len(times))
	key := make([]int64, len(times))
	for i := range idx {
		idx[i] = i
		key[i] = times[i] - rng.Int64N(ooo+1)
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case key[a] < key[b]:
			return -1
		case key[a] > key[b]:
			return 1
		}
		return 0
	})
	return idx
}
