package collect

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/dwellhq/dwell/pipeline"
)

// Metrics are the collector's Prometheus series (dwell_collect_*), plus its Kafka client's
// (dwell_kafka_*, as dwell run's). A nil *Metrics counts nothing.
type Metrics struct {
	requests *prometheus.CounterVec   // source, code, reason
	events   *prometheus.CounterVec   // source, result
	latency  prometheus.Histogram     // whole requests
	produce  *prometheus.HistogramVec // result
	reg      prometheus.Registerer
	kafka    *kprom.Metrics
	// ok caches each source's series of an accepted request (source -> *okSeries), and
	// produceOK and produceErr the produce histogram's: a label lookup hashes its values.
	ok                    sync.Map
	produceOK, produceErr prometheus.Observer
}

// MetricsOption changes what NewMetrics registers.
type MetricsOption func(*Metrics)

// WithoutKafkaClient leaves out the Kafka client's dwell_kafka_* series, for a process whose
// other client registers them already (dwell demo hosts a collector beside the processor: the
// registry refuses a second set of the same names).
func WithoutKafkaClient() MetricsOption { return func(m *Metrics) { m.kafka = nil } }

type okSeries struct{ requests, events prometheus.Counter }

// NewMetrics registers the collector's series with reg.
func NewMetrics(reg prometheus.Registerer, opts ...MetricsOption) *Metrics {
	buckets := []float64{.0005, .001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Subsystem: "collect", Name: "requests_total",
			Help: "/track requests answered, by source (unknown until the source is known and valid), HTTP status and reason (ok, or why refused)."},
			[]string{"source", "code", "reason"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Subsystem: "collect", Name: "events_total",
			Help: "Events of /track requests by source and result: accepted (Kafka has them), or the reason they were refused (where the request was read far enough to count them)."},
			[]string{"source", "result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "dwell", Subsystem: "collect", Name: "request_duration_seconds",
			Help: "Time from a /track request's arrival to its answer.", Buckets: buckets}),
		produce: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "dwell", Subsystem: "collect", Name: "produce_duration_seconds",
			Help: "Time from handing a request's record to the producer to Kafka's acknowledgement (or failure), by result.", Buckets: buckets},
			[]string{"result"}),
		reg: reg,
	}
	m.kafka = pipeline.KafkaClientMetrics(reg) // registers on the client's creation
	for _, o := range opts {
		o(m)
	}
	reg.MustRegister(m.requests, m.events, m.latency, m.produce)
	m.produceOK = m.produce.WithLabelValues("ok")
	m.produceErr = m.produce.WithLabelValues("error")
	return m
}

// attach registers the gauges that read c's state.
func (m *Metrics) attach(c *Collector) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "dwell", Subsystem: "collect", Name: "inflight_requests",
			Help: "/track requests being handled."}, func() float64 { return float64(c.inflight.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "dwell", Subsystem: "collect", Name: "ready",
			Help: "1 while the brokers answer (/readyz), else 0: requests get 503 with Retry-After."}, func() float64 {
			if c.Ready() == nil {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "dwell", Subsystem: "collect", Name: "sources",
			Help: "Event sources configured."}, func() float64 { return float64(len(c.Sources().ids)) }),
	)
}

func (m *Metrics) request(source string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if code == http.StatusOK {
		m.okSeries(source).requests.Inc()
	} else {
		m.requests.WithLabelValues(source, strconv.Itoa(code), "ok").Inc()
	}
	m.latency.Observe(d.Seconds())
}

func (m *Metrics) accepted(source string, n int) {
	if m == nil {
		return
	}
	m.okSeries(source).events.Add(float64(n))
}

// okSeries returns source's series of an accepted request. Sources are few (a reload may add
// some; a removed one's series stay, as its counts do).
func (m *Metrics) okSeries(source string) *okSeries {
	if s, ok := m.ok.Load(source); ok {
		return s.(*okSeries)
	}
	s := &okSeries{requests: m.requests.WithLabelValues(source, "200", "ok"), events: m.events.WithLabelValues(source, "accepted")}
	m.ok.Store(source, s)
	return s
}

func (m *Metrics) refused(source string, code int, reason string, events int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(source, strconv.Itoa(code), reason).Inc()
	m.latency.Observe(d.Seconds())
	if events > 0 {
		m.events.WithLabelValues(source, reason).Add(float64(events))
	}
}

func (m *Metrics) produced(d time.Duration, ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.produceOK.Observe(d.Seconds())
	} else {
		m.produceErr.Observe(d.Seconds())
	}
}
