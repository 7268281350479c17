package pipeline

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRenamingRegisterer: kprom's _total gauges come out renamed with their values, and the
// client's close (Unregister with kprom's own collector) removes them, so that the next
// client (a rebuilt one) registers them again without a duplicate-registration panic.
func TestRenamingRegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newRenamingRegisterer(reg)
	names := func() map[string]float64 {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, f := range fams {
			out[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
		}
		return out
	}
	for range 2 {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dwell_kafka_buffered_fetch_records_total", Help: "Total number of records buffered"},
			func() float64 { return 7 })
		other := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dwell_kafka_buffered_fetch_bytes", Help: "bytes"}, func() float64 { return 3 })
		r.MustRegister(g, other)
		got := names()
		if got["dwell_kafka_buffered_fetch_records"] != 7 || got["dwell_kafka_buffered_fetch_bytes"] != 3 || len(got) != 2 {
			t.Fatalf("gathered %v", got)
		}
		if !r.Unregister(g) || !r.Unregister(other) {
			t.Fatal("Unregister did not find the collectors")
		}
		if got := names(); len(got) != 0 {
			t.Fatalf("after Unregister: %v", got)
		}
	}
}
