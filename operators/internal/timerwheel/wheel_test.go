package timerwheel

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

type owner struct {
	id   int
	node Node[*owner]
}

func lessByID(a, b *Node[*owner]) bool { return a.Value.id < b.Value.id }

type fired struct {
	id       int
	deadline int64
}

// TestAgainstModel drives the wheel and a plain map with random schedules, cancels and advances
// over time spans that exercise every level, and checks that the same timers fire in the same
// (deadline, id) order.
func TestAgainstModel(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		start := rng.Int64N(1 << 40)
		w := New(start, lessByID)
		owners := make([]*owner, 200)
		model := map[int]int64{}
		for i := range owners {
			owners[i] = &owner{id: i}
			owners[i].node.Value = owners[i]
		}
		now := start
		spans := []int64{1, 10, 100, 5000, 300_000, 50_000_000, 1 << 35}
		for step := 0; step < 3000; step++ {
			switch r := rng.IntN(10); {
			case r < 6:
				o := owners[rng.IntN(len(owners))]
				d := now + rng.Int64N(spans[rng.IntN(len(spans))]) - 2 // sometimes in the past
				w.Schedule(&o.node, d)
				model[o.id] = d
			case r < 7:
				o := owners[rng.IntN(len(owners))]
				w.Cancel(&o.node)
				delete(model, o.id)
			default:
				target := now + rng.Int64N(spans[rng.IntN(len(spans))])
				var got []fired
				w.Advance(target, func(n *Node[*owner]) {
					got = append(got, fired{n.Value.id, n.deadline})
					if n.Scheduled() {
						t.Fatalf("fired node %d still scheduled", n.Value.id)
					}
				})
				var want []fired
				for id, d := range model {
					if d <= target {
						want = append(want, fired{id, d})
						delete(model, id)
					}
				}
				slices.SortFunc(want, func(a, b fired) int {
					if a.deadline != b.deadline {
						if a.deadline < b.deadline {
							return -1
						}
						return 1
					}
					return a.id - b.id
				})
				// Timers scheduled in the past fire first, in their own deadline order.
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d advance to %d: fired %v, want %v", seed, step, target, got, want)
				}
				now = max(now, target)
				if w.Now() != now {
					t.Fatalf("Now() = %d, want %d", w.Now(), now)
				}
			}
			if w.Len() != len(model) {
				t.Fatalf("seed %d step %d: Len() = %d, model has %d", seed, step, w.Len(), len(model))
			}
			wantNext := int64(math.MaxInt64)
			for _, d := range model {
				wantNext = min(wantNext, d)
			}
			if got := w.Next(); got != wantNext {
				t.Fatalf("seed %d step %d: Next() = %d, want %d", seed, step, got, wantNext)
			}
		}
	}
}

// TestRescheduleFromFire checks that fire can reschedule itself and others, and that a timer it
// schedules at or before the target fires in the same Advance, in deadline order.
func TestRescheduleFromFire(t *testing.T) {
	w := New(0, lessByID)
	a, b, c := &owner{id: 1}, &owner{id: 2}, &owner{id: 3}
	for _, o := range []*owner{a, b, c} {
		o.node.Value = o
	}
	w.Schedule(&a.node, 10)
	w.Schedule(&b.node, 10)
	w.Schedule(&c.node, 50)
	var got []fired
	w.Advance(100, func(n *Node[*owner]) {
		got = append(got, fired{n.Value.id, n.deadline})
		if n.Value.id == 1 && len(got) == 1 {
			w.Cancel(&b.node)       // b shares the batch: it must not fire
			w.Schedule(&a.node, 20) // a fires again at 20
			w.Schedule(&c.node, 30) // c moves earlier
		}
	})
	want := []fired{{1, 10}, {1, 20}, {3, 30}}
	if !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	if w.Len() != 0 {
		t.Fatalf("Len() = %d after everything fired", w.Len())
	}
}

func TestClampAndZero(t *testing.T) {
	var n Node[int]
	if n.Scheduled() || n.Deadline() != 0 {
		t.Fatal("zero node reads as scheduled")
	}
	w := New(5, func(a, b *Node[int]) bool { return a.Value < b.Value })
	w.Schedule(&n, math.MaxInt64)
	if n.Deadline() != MaxDeadline {
		t.Fatalf("deadline %d not clamped to %d", n.Deadline(), MaxDeadline)
	}
	count := 0
	w.Advance(math.MaxInt64, func(*Node[int]) { count++ })
	if count != 1 || w.Now() != MaxDeadline {
		t.Fatalf("count %d now %d", count, w.Now())
	}
}

// BenchmarkReschedule measures moving one of n pending timers to a later deadline, as every event
// does for its key's inactivity timer.
//
//	go test ./operators/internal/timerwheel -run '^$' -bench Reschedule -cpu 1 -count 6 | tee new.txt; benchstat new.txt
func BenchmarkReschedule(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		b.Run("impl=wheel/timers="+itoa(n), func(b *testing.B) {
			w := New(0, lessByID)
			os := make([]owner, n)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range os {
				os[i].id = i
				os[i].node.Value = &os[i]
				w.Schedule(&os[i].node, 1_800_000+rng.Int64N(1_800_000))
			}
			idx := make([]int32, 1<<16)
			for i := range idx {
				idx[i] = int32(rng.IntN(n))
			}
			now := int64(0)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				o := &os[idx[i&(len(idx)-1)]]
				now++
				w.Schedule(&o.node, now+1_800_000)
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reschedules/s")
		})
		b.Run("impl=heap/timers="+itoa(n), func(b *testing.B) {
			h := make(refHeap, n)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range h {
				h[i] = &refItem{deadline: 1_800_000 + rng.Int64N(1_800_000), index: i}
			}
			heap.Init(&h)
			items := slices.Clone(h)
			idx := make([]int32, 1<<16)
			for i := range idx {
				idx[i] = int32(rng.IntN(n))
			}
			now := int64(0)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				it := items[idx[i&(len(idx)-1)]]
				now++
				it.deadline = now + 1_800_000
				heap.Fix(&h, it.index)
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reschedules/s")
		})
	}
}

// BenchmarkAdvance measures firing: n timers spread over 30 minutes, fired by advancing in 1 s
// steps; the metric is per fired timer.
//
//	go test ./operators/internal/timerwheel -run '^$' -bench Advance -cpu 1 -count 6
func BenchmarkAdvance(b *testing.B) {
	const n = 100_000
	os := make([]owner, n)
	for i := range os {
		os[i].id = i
		os[i].node.Value = &os[i]
	}
	rng := rand.New(rand.NewPCG(3, 4))
	b.ReportAllocs()
	firedTotal := 0
	for b.Loop() {
		w := New(0, lessByID)
		for i := range os {
			w.Schedule(&os[i].node, 1+rng.Int64N(1_800_000))
		}
		for t := int64(0); t <= 1_800_000; t += 1000 {
			w.Advance(t, func(*Node[*owner]) { firedTotal++ })
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(firedTotal), "ns/timer")
}

type refItem struct {
	deadline int64
	index    int
}
type refHeap []*refItem

func (h refHeap) Len() int           { return len(h) }
func (h refHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h refHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *refHeap) Push(x any) { *h = append(*h, x.(*refItem)) }
func (h *refHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func itoa(n int) string {
	switch n {
	case 1_000:
		return "1k"
	case 1_000_000:
		return "1M"
	}
	return "n"
}

// TestAdvanceWhileResumes checks that a budgeted advance, stopped and resumed any number of
// times, fires the same timers in the same order as one unbounded Advance, fires that schedule
// timers again included.
func TestAdvanceWhileResumes(t *testing.T) {
	for seed := range uint64(30) {
		run := func(budgeted bool) []fired {
			rng := rand.New(rand.NewPCG(seed, 3)) // the same schedule for both runs
			w := New(0, lessByID)
			owners := make([]*owner, 300)
			for i := range owners {
				owners[i] = &owner{id: i}
				owners[i].node.Value = owners[i]
				w.Schedule(&owners[i].node, rng.Int64N(50)) // many share a deadline
			}
			var got []fired
			fire := func(n *Node[*owner]) {
				got = append(got, fired{n.Value.id, n.deadline})
				if n.Value.id%3 == 0 && n.deadline < 400 {
					w.Schedule(n, n.deadline+1+int64(n.Value.id%7)) // again
				}
			}
			if !budgeted {
				w.Advance(1000, fire)
				return got
			}
			for {
				left := 1 + rng.IntN(5)
				if w.AdvanceWhile(1000, fire, func() bool { left--; return left >= 0 }) {
					return got
				}
			}
		}
		want, got := run(false), run(true)
		if !slices.Equal(want, got) {
			t.Fatalf("seed %d: budgeted firing differs:\nwant %v\ngot  %v", seed, want[:min(20, len(want))], got[:min(20, len(got))])
		}
		if len(want) < 300 {
			t.Fatalf("seed %d: only %d fired", seed, len(want))
		}
	}
}
