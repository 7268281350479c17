package deliver

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the deliverers' Prometheus series, on a registry the caller owns, labelled by
// queue so that several deliverers can share a dashboard:
//
//	dwell_deliver_delivered_total{queue}            records a 2xx acknowledged
//	dwell_deliver_failed_total{queue,reason}        records dead-lettered, by reason
//	dwell_deliver_retries_total{queue}              attempts after a record's first
//	dwell_deliver_latency_seconds{queue}            record timestamp to delivered
//	dwell_deliver_attempt_duration_seconds{queue}   one HTTP request
//	dwell_deliver_in_flight{queue}                  deliveries running
//	dwell_deliver_consumer_lag_records{queue,partition}  high watermark minus the lowest
//	                                                unhandled offset: what is left to deliver
type Metrics struct {
	delivered *prometheus.CounterVec
	failed    *prometheus.CounterVec
	retried   *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	attempt   *prometheus.HistogramVec
	inFlight  *prometheus.GaugeVec
	lag       *prometheus.GaugeVec
}

// Dead-letter reasons (the dwell-reason header).
const (
	ReasonRejected      = "webhook-rejected"  // a permanent HTTP status (4xx other than 408/429, 3xx)
	ReasonExhausted     = "webhook-exhausted" // retries used up (attempts or time)
	ReasonNoEndpoint    = "no-endpoint"       // no endpoint for the record's channel and no default
	ReasonMalformedJSON = "malformed-json"    // the value is not a JSON object
)

// Reasons lists the dead-letter reasons.
func Reasons() []string {
	return []string{ReasonRejected, ReasonExhausted, ReasonNoEndpoint, ReasonMalformedJSON}
}

// NewMetrics creates the series and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "dwell", Subsystem: "deliver", Name: name, Help: help, Buckets: buckets,
			NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 160,
		}, []string{"queue"})
	}
	m := &Metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Subsystem: "deliver", Name: "delivered_total",
			Help: "Records delivered (a 2xx response), by queue."}, []string{"queue"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Subsystem: "deliver", Name: "failed_total",
			Help: "Records dead-lettered, by queue and reason."}, []string{"queue", "reason"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dwell", Subsystem: "deliver", Name: "retries_total",
			Help: "Delivery attempts after a record's first, by queue."}, []string{"queue"}),
		latency: hist("latency_seconds", "Wall time from a record's timestamp to its delivery.",
			prometheus.ExponentialBuckets(0.005, 2, 18)),
		attempt: hist("attempt_duration_seconds", "Wall time of one HTTP request.",
			prometheus.ExponentialBuckets(0.001, 2, 16)),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "dwell", Subsystem: "deliver", Name: "in_flight",
			Help: "Deliveries running, retries and their waits included."}, []string{"queue"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "dwell", Subsystem: "deliver", Name: "consumer_lag_records",
			Help: "Records between the partition's lowest unhandled offset and its high watermark."}, []string{"queue", "partition"}),
	}
	reg.MustRegister(m.delivered, m.failed, m.retried, m.latency, m.attempt, m.inFlight, m.lag)
	return m
}

// queueMetrics are one queue's children of Metrics; every method is a no-op on nil.
type queueMetrics struct {
	m                  *Metrics
	queue              string
	delivered, retried prometheus.Counter
	latency, attempt   prometheus.Observer
	inFlight           prometheus.Gauge
}

func (m *Metrics) forQueue(q string) *queueMetrics {
	if m == nil {
		return nil
	}
	qm := &queueMetrics{m: m, queue: q, delivered: m.delivered.WithLabelValues(q), retried: m.retried.WithLabelValues(q),
		latency: m.latency.WithLabelValues(q), attempt: m.attempt.WithLabelValues(q), inFlight: m.inFlight.WithLabelValues(q)}
	for _, r := range Reasons() {
		m.failed.WithLabelValues(q, r)
	}
	return qm
}

func (q *queueMetrics) fail(reason string) {
	if q != nil {
		q.m.failed.WithLabelValues(q.queue, reason).Inc()
	}
}

func (q *queueMetrics) setLag(p int32, lag int64) {
	if q != nil {
		q.m.lag.WithLabelValues(q.queue, strconv.Itoa(int(p))).Set(float64(lag))
	}
}

func (q *queueMetrics) dropLag(p int32) {
	if q != nil {
		q.m.lag.DeleteLabelValues(q.queue, strconv.Itoa(int(p)))
	}
}
