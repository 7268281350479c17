package bench

import (
	"time"

	"github.com/dwellhq/dwell/operators"
)

// Latency samples in-process event-to-output latency: the wall time from feeding a record to
// the sessionizer to the emission of an output derived from it. An output derives from its
// source record: the event itself for an event, late event, pass-through or dead letter; the
// triggering event for profile-created, session-opened and visit-started; and, for visit-ended
// and session-closed, the visit's or session's last event — so for those it includes waiting
// for event time to pass the gap (and max_out_of_orderness), which at full speed takes
// gap × event rate / throughput of wall time. One record in 64 (by offset) is sampled.
type Latency struct {
	base time.Time
	fed  []fedSample
	hist histogram
}

type fedSample struct{ off, ns int64 } // off+1, so that the zero value matches nothing

const (
	latencyEvery = 64
	latencyRing  = 1 << 16 // samples kept: the last 4M records
)

// NewLatency returns a recorder; only records fed after this call are sampled.
func NewLatency() *Latency {
	return &Latency{base: time.Now(), fed: make([]fedSample, latencyRing)}
}

// feed notes that the record at offset off is fed now.
func (l *Latency) feed(off int64) {
	if off%latencyEvery == 0 {
		l.fed[(off/latencyEvery)&(latencyRing-1)] = fedSample{off + 1, int64(time.Since(l.base))}
	}
}

func (l *Latency) emitted(o *operators.Output) {
	var off int64
	switch {
	case o.Kind == operators.KindDead:
		off = o.Record.Offset
	case o.Event != nil:
		off = o.Event.Offset
	case o.System != nil:
		off = o.System.Cause.Offset
	default:
		return
	}
	if off%latencyEvery != 0 {
		return
	}
	if s := l.fed[(off/latencyEvery)&(latencyRing-1)]; s.off == off+1 {
		l.hist.record(int64(time.Since(l.base)) - s.ns)
	}
}

const latencyInProcess = "in-process: wall time from feeding a record to the emission of each output derived from it " +
	"(visit-ended and session-closed: from the visit's or session's last event, so it includes the event-time gap)"
