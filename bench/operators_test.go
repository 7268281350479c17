package bench

import (
	"encoding/json"
	"flag"
	"testing"

	"github.com/dwellhq/dwell/operators"
)

var (
	benchProfiles = flag.Int("bench.profiles", 1_000_000, "profiles known to the warm state in the operators benchmarks")
	benchRate     = flag.Float64("bench.rate", 250, "events per second of event time in the operators benchmarks")
)

func newOperatorsBench(b *testing.B, decoded, encode bool) *Operators {
	b.Helper()
	w, err := NewOperators(OperatorsConfig{Web: WebConfig{Profiles: *benchProfiles, Rate: *benchRate}})
	if err != nil {
		b.Fatal(err)
	}
	w.Sink.Encode = encode
	w.Fill(decoded)
	return w
}

// report adds events/s and bytes per event; b.SetBytes counts input bytes.
func report(b *testing.B, events int, bytes int64) {
	b.SetBytes(bytes / int64(max(events, 1)))
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecode decodes web-tracking events (about 480 bytes each).
//
//	go test ./bench -run '^$' -bench 'BenchmarkDecode$' -cpu 1 -count 6 | tee new.txt; benchstat new.txt
func BenchmarkDecode(b *testing.B) {
	w := newOperatorsBench(b, false, false)
	var ev operators.Event
	n, bytes := eachRecord(b, w, func(rec *operators.Record) { w.Dec.Decode(rec, &ev) })
	report(b, n, bytes)
}

// eachRecord calls fn for one generated record per benchmark iteration, generating the next
// chunk with the timer stopped, and returns the records and bytes processed.
func eachRecord(b *testing.B, w *Operators, fn func(rec *operators.Record)) (n int, bytes int64) {
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		if i == len(w.Recs) {
			b.StopTimer()
			w.Fill(false)
			i = 0
			b.StartTimer()
		}
		rec := &w.Recs[i]
		fn(rec)
		bytes += int64(len(rec.Value))
		i++
		n++
	}
	return n, bytes
}

// BenchmarkDecodeStdlib decodes the same events with encoding/json into a struct of the same
// fields, for comparison.
//
//	go test ./bench -run '^$' -bench 'BenchmarkDecodeStdlib$' -cpu 1 -count 6
func BenchmarkDecodeStdlib(b *testing.B) {
	w, err := NewOperators(OperatorsConfig{Web: WebConfig{Profiles: 1000}})
	if err != nil {
		b.Fatal(err)
	}
	w.Fill(false)
	type ref struct {
		ID string `json:"id"`
	}
	var ev struct {
		ID         string          `json:"id"`
		Type       string          `json:"type"`
		Time       string          `json:"time"`
		Profile    ref             `json:"profile"`
		Session    ref             `json:"session"`
		Source     ref             `json:"source"`
		Context    json.RawMessage `json:"context"`
		Properties json.RawMessage `json:"properties"`
		Tags       []string        `json:"tags"`
	}
	i, n, bytes := 0, 0, int64(0)
	b.ReportAllocs()
	for b.Loop() {
		if i == len(w.Recs) {
			i = 0
		}
		rec := &w.Recs[i]
		_ = json.Unmarshal(rec.Value, &ev)
		bytes += int64(len(rec.Value))
		i++
		n++
	}
	report(b, n, bytes)
}

// BenchmarkSessionize sessionizes pre-decoded events against a warm state of 1M profiles.
//
//	go test ./bench -run '^$' -bench 'BenchmarkSessionize$' -cpu 1 -count 6
func BenchmarkSessionize(b *testing.B) {
	w := newOperatorsBench(b, true, false)
	i, n := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		if i == len(w.Evs) {
			b.StopTimer()
			w.Fill(true)
			i = 0
			b.StartTimer()
		}
		w.S.ProcessEvent(&w.Evs[i])
		i++
		n++
	}
	report(b, n, 0)
	b.ReportMetric(float64(w.Sink.Counts[operators.KindSystem])/float64(n), "system/event")
}

// BenchmarkDecodeSessionize decodes and sessionizes records against a warm state of 1M profiles:
// the per-partition work of the live pipeline without Kafka and without encoding outputs.
//
//	go test ./bench -run '^$' -bench 'BenchmarkDecodeSessionize$' -cpu 1 -count 6
func BenchmarkDecodeSessionize(b *testing.B) {
	benchProcess(b, false)
}

// BenchmarkProcess is BenchmarkDecodeSessionize plus encoding every output as JSON.
//
//	go test ./bench -run '^$' -bench 'BenchmarkProcess$' -cpu 1 -count 6
func BenchmarkProcess(b *testing.B) {
	benchProcess(b, true)
}

func benchProcess(b *testing.B, encode bool) {
	w := newOperatorsBench(b, false, encode)
	n, bytes := eachRecord(b, w, w.S.Process)
	report(b, n, bytes)
	b.ReportMetric(float64(w.Sink.Counts[operators.KindSystem])/float64(n), "system/event")
}
