package pipeline

import (
	"regexp"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/plugin/kprom"
)

// kpromRenames are franz-go's kprom gauges whose names end in _total, which Prometheus
// reserves for counters (promtool and the OpenMetrics parser complain, and rate() on them is
// a trap): they are registered as dwell_kafka_buffered_{produce,fetch}_records instead.
var kpromRenames = map[string]string{
	"dwell_kafka_buffered_produce_records_total": "dwell_kafka_buffered_produce_records",
	"dwell_kafka_buffered_fetch_records_total":   "dwell_kafka_buffered_fetch_records",
}

// renamingRegisterer registers kprom's collectors, the gauges of kpromRenames under their new
// names; Unregister finds the renamed ones again (kprom unregisters all when its client closes).
type renamingRegisterer struct {
	prometheus.Registerer
	mu struct {
		sync.Mutex
		wrapped map[prometheus.Collector]prometheus.Collector
	}
}

var _ prometheus.Registerer = (*renamingRegisterer)(nil)

func newRenamingRegisterer(reg prometheus.Registerer) *renamingRegisterer {
	r := &renamingRegisterer{Registerer: reg}
	r.mu.wrapped = map[prometheus.Collector]prometheus.Collector{}
	return r
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *renamingRegisterer) Register(c prometheus.Collector) error {
	descs := make(chan *prometheus.Desc, 4)
	go func() { c.Describe(descs); close(descs) }()
	var all []*prometheus.Desc
	for d := range descs {
		all = append(all, d)
	}
	if len(all) == 1 {
		if m := fqNameRE.FindStringSubmatch(all[0].String()); m != nil {
			if to, ok := kpromRenames[m[1]]; ok {
				help := strings.Replace(descHelp(all[0]), "Total number", "Number", 1)
				w := renamedGauge{c: c, desc: prometheus.NewDesc(to, help, nil, nil)}
				if err := r.Registerer.Register(w); err != nil {
					return err
				}
				r.mu.Lock()
				r.mu.wrapped[c] = w
				r.mu.Unlock()
				return nil
			}
		}
	}
	return r.Registerer.Register(c)
}

func (r *renamingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *renamingRegisterer) Unregister(c prometheus.Collector) bool {
	r.mu.Lock()
	w, ok := r.mu.wrapped[c]
	delete(r.mu.wrapped, c)
	r.mu.Unlock()
	if ok {
		return r.Registerer.Unregister(w)
	}
	return r.Registerer.Unregister(c)
}

var helpRE = regexp.MustCompile(`help: "([^"]*)"`)

func descHelp(d *prometheus.Desc) string {
	if m := helpRE.FindStringSubmatch(d.String()); m != nil {
		return m[1]
	}
	return ""
}

// renamedGauge reports a label-less gauge collector's value under desc.
type renamedGauge struct {
	c    prometheus.Collector
	desc *prometheus.Desc
}

func (g renamedGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g renamedGauge) Collect(ch chan<- prometheus.Metric) {
	in := make(chan prometheus.Metric, 1)
	go func() { g.c.Collect(in); close(in) }()
	for m := range in {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, pb.GetGauge().GetValue())
	}
}

// KafkaClientMetrics is franz-go's kprom plugin under the names dwell's dashboards and alerts
// use (dwell_kafka_*, the gauges of kpromRenames renamed), for a Kafka client of any dwell
// command: pass it to kgo.WithHooks.
func KafkaClientMetrics(reg prometheus.Registerer) *kprom.Metrics {
	return kprom.NewMetrics("dwell_kafka", kprom.Registerer(newRenamingRegisterer(reg)))
}
