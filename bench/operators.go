package bench

import (
	"fmt"
	"time"

	"github.com/dwellhq/dwell/operators"
)

// OperatorsConfig is the in-process workload: the web stream decoded and sessionized on one
// goroutine, with no Kafka, starting from a warm state of Web.Profiles known profiles.
type OperatorsConfig struct {
	Web       WebConfig
	Operators operators.Config
	// Chunk is how many records are generated ahead, in memory, between timed stretches.
	// Default 65,536.
	Chunk int
	// Warmup is the event time of traffic processed before measuring, so that visits and
	// sessions open and close at their steady-state rate. Default 40m (more than visit_gap).
	Warmup time.Duration
}

// Operators runs the in-process workload. Fill, Warm and the timed Decode/Process calls are
// separate so benchmarks can stop their timer around generation.
type Operators struct {
	cfg  OperatorsConfig
	gen  *Web
	Recs []operators.Record
	Evs  []operators.Event
	// Chunks alternate between two buffers: events still waiting in the sessionizer's reorder
	// buffer point into the previous chunk, which must stay intact.
	bufs  [2][]byte
	flip  int
	offs  []int
	ts    []int64
	S     *operators.Sessionizer
	Dec   *operators.Decoder
	Sink  *CountingSink
	Bytes int64 // input bytes of the current chunk
}

// CountingSink counts outputs by kind and, when Encode is set, encodes each one as JSON into a
// reused buffer, as an output writer would.
type CountingSink struct {
	Encode bool
	Counts [5]int64
	Bytes  int64
	buf    []byte
}

func (c *CountingSink) Emit(o *operators.Output) {
	c.Counts[o.Kind]++
	if c.Encode {
		c.buf = operators.AppendJSON(c.buf[:0], o)
		c.Bytes += int64(len(c.buf))
	}
}

// NewOperators builds the workload and its warm state: every one of cfg.Web.Profiles profiles
// has been seen once, a day before the stream starts, so the state holds that many keys.
func NewOperators(cfg OperatorsConfig) (*Operators, error) {
	cfg.Web.EnsureDefaults()
	if cfg.Chunk == 0 {
		cfg.Chunk = 1 << 16
	}
	if cfg.Warmup == 0 {
		cfg.Warmup = 40 * time.Minute
	}
	cfg.Web.KnownProfiles = cfg.Web.Profiles
	gen, err := NewWeb(cfg.Web)
	if err != nil {
		return nil, err
	}
	w := &Operators{cfg: cfg, gen: gen, Sink: &CountingSink{}}
	opCfg := cfg.Operators
	opCfg.EnsureDefaults()
	if w.S, err = operators.NewSessionizer(opCfg, 0, w.Sink); err != nil {
		return nil, err
	}
	w.Dec = operators.NewDecoder(&opCfg)
	// Warm state: one event per profile, in time order, a day before the stream.
	t := cfg.Web.Start.Add(-24 * time.Hour).UnixMilli()
	var val []byte
	for p := range cfg.Web.Profiles {
		val = append(val[:0], `{"type":"page-view","time":`...)
		val = fmt.Appendf(val, "%d", t+int64(p))
		val = append(val, `,"profile":"`...)
		val = ProfileID(val, p)
		val = append(val, `"}`...)
		w.S.Process(&operators.Record{Topic: "warm", Offset: int64(p), Value: val, Timestamp: operators.NoTimestamp})
	}
	w.S.Process(&operators.Record{Topic: "warm", Value: fmt.Appendf(nil, `{"type":"page-view","time":%d,"profile":"x"}`, cfg.Web.Start.Add(-time.Hour).UnixMilli()), Timestamp: operators.NoTimestamp})
	// Steady state: traffic for longer than visits stay open after their last event.
	for n := int(cfg.Warmup.Seconds() * cfg.Web.Rate); n > 0; n -= cfg.Chunk {
		w.Fill(false)
		for i := range w.Recs {
			w.S.Process(&w.Recs[i])
		}
	}
	w.Sink.Counts = [5]int64{}
	return w, nil
}

// Fill generates the next chunk of records (and decodes them into Evs when decoded is set).
func (w *Operators) Fill(decoded bool) {
	w.flip ^= 1
	buf := w.bufs[w.flip][:0]
	w.Recs = w.Recs[:0]
	offs, ts := w.offs[:0], w.ts[:0]
	for range w.cfg.Chunk {
		r := w.gen.Next(buf)
		buf = append(buf, r.Value...) // a self-copy unless Next had to grow the buffer
		offs = append(offs, len(buf))
		ts = append(ts, r.Timestamp)
	}
	w.bufs[w.flip], w.offs, w.ts = buf, offs, ts
	// Slice after generating: buf may have moved while it grew.
	prev := 0
	w.Bytes = int64(len(buf))
	for i, end := range offs {
		w.Recs = append(w.Recs, operators.Record{Topic: "web", Offset: w.gen.Offset() - int64(len(offs)-i), Value: buf[prev:end:end], Timestamp: ts[i]})
		prev = end
	}
	if decoded {
		w.Evs = w.Evs[:0]
		var ev operators.Event
		for i := range w.Recs {
			if w.Dec.Decode(&w.Recs[i], &ev) == nil {
				w.Evs = append(w.Evs, ev)
			}
		}
	}
}
