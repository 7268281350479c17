package bench

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dwellhq/dwell/operators"
)

// TestNexmarkGenerator checks the stream's shape: 1:3:46 persons, auctions and bids, valid JSON
// that dwell decodes, event time spaced by the rate, bids keyed by bidder, most bids by the hot
// bidder, and the same bytes for the same seed.
func TestNexmarkGenerator(t *testing.T) {
	const n = 50_000
	gen := func() ([]byte, [3]int, map[int64]int) {
		g, err := NewNexmark(NexmarkConfig{Rate: 1000})
		if err != nil {
			t.Fatal(err)
		}
		cfg := new(operators.Config).EnsureDefaults()
		dec := operators.NewDecoder(cfg)
		var all []byte
		var kinds [3]int
		bidders := map[int64]int{}
		for i := range n {
			r, ev := g.NextEvent(nil)
			if !json.Valid(r.Value) {
				t.Fatalf("event %d is not JSON: %s", i, r.Value)
			}
			var de operators.Event
			if err := dec.Decode(&operators.Record{Value: r.Value, Timestamp: r.Timestamp}, &de); err != nil {
				t.Fatalf("event %d: %v: %s", i, err, r.Value)
			}
			if want := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() + int64(i); de.Time != want || ev.Time != want {
				t.Fatalf("event %d at %d (decoded %d), want %d: 1000 events/s is one per ms", i, ev.Time, de.Time, want)
			}
			if !de.Ephemeral {
				t.Fatalf("event %d is not ephemeral", i)
			}
			kinds[ev.Kind]++
			if ev.Kind == NexBid {
				bidders[ev.Bidder]++
				if string(de.Profile) != strconv.FormatInt(ev.Bidder, 10) || !bytes.Equal(r.Key, de.Profile) {
					t.Fatalf("bid by %d has profile %q and key %q", ev.Bidder, de.Profile, r.Key)
				}
			} else if de.Profile != nil || r.Key != nil {
				t.Fatalf("a %v event has a profile or key", ev.Kind)
			}
			all = append(append(all, r.Value...), '\n')
		}
		return all, kinds, bidders
	}
	a, kinds, bidders := gen()
	if want := [3]int{n / 50, n * 3 / 50, n * 46 / 50}; kinds != want {
		t.Errorf("persons, auctions, bids = %v, want %v", kinds, want)
	}
	// Hot bidders: 3 bids in 4 go to one of n/50/100 = 10 bidders.
	counts := make([]int, 0, len(bidders))
	for _, c := range bidders {
		counts = append(counts, c)
	}
	slices.Sort(counts)
	slices.Reverse(counts)
	hot := 0
	for _, c := range counts[:10] {
		hot += c
	}
	if share := float64(hot) / float64(kinds[NexBid]); share < 0.72 || share > 0.80 {
		t.Errorf("the 10 busiest bidders made %.2f of the bids, want about 0.75 (hot bidder ratio 4)", share)
	}
	if b, _, _ := gen(); !bytes.Equal(a, b) {
		t.Error("two generators with the same config differ")
	}
}

// q11Reference computes Query 11 independently of dwell: a plain map of bidder to its open
// window, in arrival order (the generator's time order). A bid more than gap after the
// bidder's last one closes the window; a bid exactly gap after joins it (dwell's rule).
func q11Reference(events []NexmarkEvent, gap time.Duration) []Q11Row {
	type open struct {
		start, last int64
		n           uint32
	}
	g := gap.Milliseconds()
	windows := map[int64]*open{}
	var rows []Q11Row
	emit := func(b int64, w *open) {
		rows = append(rows, Q11Row{Bidder: strconv.FormatInt(b, 10), Bids: w.n, Start: w.start, Last: w.last})
	}
	for _, ev := range events {
		if ev.Kind != NexBid {
			continue
		}
		w := windows[ev.Bidder]
		if w != nil && ev.Time-w.last > g {
			emit(ev.Bidder, w)
			w = nil
		}
		if w == nil {
			w = &open{start: ev.Time}
			windows[ev.Bidder] = w
		}
		w.last = max(w.last, ev.Time)
		w.n++
	}
	for b, w := range windows {
		emit(b, w)
	}
	sortRows(rows)
	return rows
}

func sortRows(rows []Q11Row) {
	slices.SortFunc(rows, func(a, b Q11Row) int {
		return cmp.Or(cmp.Compare(a.Bidder, b.Bidder), cmp.Compare(a.Start, b.Start))
	})
}

// TestQ11MatchesReference runs Query 11 as a dwell job on a Nexmark stream and compares every
// session (bidder, first bid, last bid, bid count) with the independent implementation.
func TestQ11MatchesReference(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rate   float64
		active int
		gap    time.Duration
	}{
		// Fewer active people than the default, so that most sessions close within the input.
		{"rate=10k/active=100/gap=2s", 10_000, 100, 2 * time.Second},
		// At 200 events/s, bids of one bidder are often exactly a gap of 1s apart or close to it.
		{"rate=200/gap=1s", 200, 0, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 120_000
			g, err := NewNexmark(NexmarkConfig{Rate: tc.rate, ActivePeople: tc.active})
			if err != nil {
				t.Fatal(err)
			}
			var got []Q11Row
			sink := &CountingSink{OnOutput: func(o *operators.Output) {
				row, ok := Q11RowOf(o)
				if !ok {
					t.Fatalf("Q11 emitted a %v output", o.Kind)
				}
				if want := row.Last + tc.gap.Milliseconds(); o.System.Time != want && o.System.Summary.Reason != operators.ReasonShutdownFlush {
					t.Fatalf("session of %s ends at %d, want last bid + gap = %d", row.Bidder, o.System.Time, want)
				}
				got = append(got, row)
			}}
			s, err := operators.NewSessionizer(Q11Operators(tc.gap, 0), 0, sink)
			if err != nil {
				t.Fatal(err)
			}
			events := make([]NexmarkEvent, 0, n)
			for i := range n {
				r, ev := g.NextEvent(nil) // a fresh value each: buffered events point into it
				events = append(events, ev)
				s.Process(&operators.Record{Topic: "nexmark", Offset: int64(i), Value: r.Value, Timestamp: r.Timestamp})
			}
			closedBeforeEnd := len(got)
			s.Flush()
			st := s.Stats()
			if st.Dead != 0 || st.Late != 0 || st.PassThrough != n/50*4 {
				t.Fatalf("dead %d, late %d, pass-through %d: want none, none, every person and auction (%d)", st.Dead, st.Late, st.PassThrough, n/50*4)
			}
			want := q11Reference(events, tc.gap)
			sortRows(got)
			if closedBeforeEnd < len(want)/4 {
				t.Fatalf("only %d of %d sessions closed before the end of input: the test should exercise timers", closedBeforeEnd, len(want))
			}
			if len(got) != len(want) {
				t.Fatalf("%d sessions, reference %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("session %d: dwell %+v, reference %+v", i, got[i], want[i])
				}
			}
			t.Logf("%d sessions (%d closed by the watermark), %d bidders", len(want), closedBeforeEnd, st.Keys)
		})
	}
}

// TestQ11Workload runs the benchmark's harness (chunks generated ahead, fewer events per chunk
// than wait in the reorder buffer) and compares its sessions with the reference: a harness that
// reused a chunk's bytes while events still pointed into them would count sessions wrongly.
func TestQ11Workload(t *testing.T) {
	const chunks, chunk = 40, 4096
	cfg := Q11Config{Nexmark: NexmarkConfig{Rate: 5000}, Chunk: chunk, Warmup: -1} // 20,000 events buffered
	q, err := NewQ11(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got []Q11Row
	q.Sink.OnOutput = func(o *operators.Output) {
		row, _ := Q11RowOf(o)
		got = append(got, row)
	}
	for range chunks {
		q.Fill()
		for i := range q.Recs {
			q.S.Process(&q.Recs[i])
		}
	}
	q.S.Flush()
	g, _ := NewNexmark(cfg.Nexmark)
	events := make([]NexmarkEvent, chunks*chunk)
	for i := range events {
		_, events[i] = g.NextEvent(nil)
	}
	want := q11Reference(events, 10*time.Second)
	sortRows(got)
	if !slices.Equal(got, want) {
		t.Fatalf("the workload found %d sessions, the reference %d (or they differ)", len(got), len(want))
	}
}

// TestQ11SteadyStateAllocs pins Query 11's allocations: none per event once windows open and
// close at their steady rate.
func TestQ11SteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	q, err := NewQ11(Q11Config{Nexmark: NexmarkConfig{Rate: 20_000}, Chunk: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	q.Fill()
	i := 0
	perBatch := testing.AllocsPerRun(50, func() {
		for range 1000 {
			q.S.Process(&q.Recs[i])
			i++
		}
	})
	if perEvent := perBatch / 1000; perEvent > 0.001 {
		t.Fatalf("%.4f allocations per event in steady state, want none", perEvent)
	}
}

// BenchmarkNexmarkQ11 is Nexmark Query 11 in-process (decode + sessionize, one goroutine) on
// the default stream (100,000 events/s of event time, 10s gap), with windows opening and
// closing at their steady rate. One op is one Nexmark event (persons and auctions included).
//
//	go test ./bench -run '^$' -bench 'BenchmarkNexmarkQ11$' -cpu 1 -count 6 | tee new.txt; benchstat new.txt
func BenchmarkNexmarkQ11(b *testing.B) {
	for _, s := range strings.Split(*benchQ11OOO, ",") {
		ooo, err := time.ParseDuration(s)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("ooo="+ooo.String(), func(b *testing.B) { benchQ11(b, ooo) })
	}
}

var (
	benchQ11Rate = flag.Float64("bench.q11-rate", 100_000, "Nexmark events per second of event time in BenchmarkNexmarkQ11 (warmup grows with it)")
	benchQ11OOO  = flag.String("bench.q11-ooo", "4s,1ms", "max_out_of_orderness values for BenchmarkNexmarkQ11, comma-separated")
)

func benchQ11(b *testing.B, ooo time.Duration) {
	q, err := NewQ11(Q11Config{Nexmark: NexmarkConfig{Rate: *benchQ11Rate}, MaxOutOfOrderness: ooo})
	if err != nil {
		b.Fatal(err)
	}
	q.Fill()
	n, bytes := 0, int64(0)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i == len(q.Recs) {
			b.StopTimer()
			q.Fill()
			i = 0
			b.StartTimer()
		}
		rec := &q.Recs[i]
		q.S.Process(rec)
		bytes += int64(len(rec.Value))
		i++
		n++
	}
	report(b, n, bytes)
	b.ReportMetric(float64(q.Sink.Counts[operators.KindSystem])/float64(n), "sessions/event")
}
