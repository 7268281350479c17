package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Health that tells the truth. A partition makes progress when a cycle that includes it
// commits having done work for it (records, timers, a watermark moved), or having nothing to
// do - the cycle ends, and a broker has answered a fetch since the last cycle ended (a cycle
// with nothing to write commits without a broker, so that alone proves nothing) - and while its
// restore reads the changelog. One whose last progress is older than
// StallTimeout is stalled: its cycles are stuck (a broker that does not answer) or keep
// failing (a record no retry can write). Readiness and dwell_partition_stalled read the clock
// when asked, so a cycle that never returns still shows.

// progress is when each assigned partition last made progress.
type progress struct {
	sync.Mutex
	last map[int32]time.Time
}

// noteAssigned starts the clock of partitions new to this instance.
func (l *Live) noteAssigned(ps []int32) {
	now := l.cfg.Now()
	l.progress.Lock()
	defer l.progress.Unlock()
	for _, p := range ps {
		if _, ok := l.progress.last[p]; !ok {
			l.progress.last[p] = now
		}
	}
}

// noteGone forgets partitions this instance no longer owns.
func (l *Live) noteGone(ps []int32) {
	l.progress.Lock()
	defer l.progress.Unlock()
	for _, p := range ps {
		delete(l.progress.last, p)
	}
}

// noteProgress records that partition p made progress now, if it is assigned.
func (l *Live) noteProgress(p int32) {
	now := l.cfg.Now()
	l.progress.Lock()
	defer l.progress.Unlock()
	if _, ok := l.progress.last[p]; ok {
		l.progress.last[p] = now
	}
}

// stalled returns the assigned partitions without progress for StallTimeout, in order, and
// how long the longest has gone without.
func (l *Live) stalled() (ps []int32, longest time.Duration) {
	now := l.cfg.Now()
	l.progress.Lock()
	defer l.progress.Unlock()
	for p, t := range l.progress.last {
		if d := now.Sub(t); d > l.cfg.StallTimeout {
			ps = append(ps, p)
			longest = max(longest, d)
		}
	}
	slices.Sort(ps)
	return ps, longest
}

// errNotReady is Readiness's answer while partitions are restored or none is assigned.
var errNotReady = errors.New("not ready: partitions are being restored or none is assigned yet (no assignment while the brokers are unreachable: see the log)")

// Readiness is nil when this instance is ready (for /readyz): every assigned partition is
// restored and none is stalled; otherwise it says why.
func (l *Live) Readiness() error {
	if ps, longest := l.stalled(); len(ps) > 0 {
		names := make([]string, len(ps))
		for i, p := range ps {
			names[i] = partitionLabel(p)
		}
		return fmt.Errorf("not ready: partition %s made no progress for %s (more than --stall-timeout %s); see the log and dwell_cycle_failures_total",
			strings.Join(names, ", "), longest.Round(time.Second), l.cfg.StallTimeout)
	}
	if !l.ready.Load() {
		return errNotReady
	}
	return nil
}

// stallCollector exports dwell_partition_stalled{partition}, 1 for a stalled partition and 0
// for the others this instance owns, evaluated at each scrape.
type stallCollector struct {
	l    *Live
	desc *prometheus.Desc
}

func newStallCollector(l *Live) stallCollector {
	return stallCollector{l: l, desc: prometheus.NewDesc("dwell_partition_stalled",
		"1 when the partition made no progress (no cycle including it committed) for --stall-timeout.", []string{"partition"}, nil)}
}

func (c stallCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c stallCollector) Collect(ch chan<- prometheus.Metric) {
	l := c.l
	now := l.cfg.Now()
	l.progress.Lock()
	defer l.progress.Unlock()
	for p, t := range l.progress.last {
		v := 0.0
		if now.Sub(t) > l.cfg.StallTimeout {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, partitionLabel(p))
	}
}

// fetchHook counts the fetch responses read from brokers.
type fetchHook struct{ n *atomic.Int64 }

func (h fetchHook) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err == nil && key == int16(kmsg.Fetch) {
		h.n.Add(1)
	}
}
