package rulesrc

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the rule sources' Prometheus series, on a registry the caller owns. A nil
// *Metrics records nothing.
type Metrics struct {
	reloads *prometheus.CounterVec // source, result
	version *versionInfo
}

// Reload results.
const (
	resultApplied  = "applied"
	resultRejected = "rejected"
)

// NewMetrics creates the series and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Name: "rules_reloads_total",
			Help: "New rule-set versions seen, by source (file, topic) and result (applied; rejected: invalid or refused, the running version stayed)."},
			[]string{"source", "result"}),
		version: &versionInfo{desc: prometheus.NewDesc("dwell_rules_version_info",
			"1 for the version of the rules this instance runs (one series at a time).", []string{"version"}, nil)},
	}
	reg.MustRegister(m.reloads, m.version)
	return m
}

// init makes source's series visible at zero.
func (m *Metrics) init(source string) {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues(source, resultApplied)
	m.reloads.WithLabelValues(source, resultRejected)
}

func (m *Metrics) reload(source, result string) {
	if m != nil {
		m.reloads.WithLabelValues(source, result).Inc()
	}
}

func (m *Metrics) running(version string) {
	if m != nil {
		m.version.set(version)
	}
}

// versionInfo is a gauge with one series at most, switched atomically: a GaugeVec would show
// two versions, or none, between setting the new series and deleting the old.
type versionInfo struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	v    string // "" before the first version
}

func (g *versionInfo) set(v string) {
	g.mu.Lock()
	g.v = v
	g.mu.Unlock()
}

func (g *versionInfo) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *versionInfo) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	v := g.v
	g.mu.Unlock()
	if v != "" {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, 1, v)
	}
}
