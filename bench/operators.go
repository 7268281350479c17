package bench

import (
	"fmt"
	"math"
	"time"
	"unsafe"

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
	cfg OperatorsConfig
	gen *Web
	chunker
	Evs  []operators.Event
	S    *operators.Sessionizer
	Dec  *operators.Decoder
	Sink *CountingSink
}

// chunker generates records a chunk at a time into memory. Chunks rotate through buffers:
// events still waiting in the sessionizer's reorder buffer point into earlier chunks, which
// must stay intact, so there must be enough buffers to cover max_out_of_orderness of event
// time (see keepChunks).
type chunker struct {
	next  func(dst []byte) Record
	topic string
	n     int64 // records generated so far: the next record's offset
	Recs  []operators.Record
	bufs  [][]byte // at least 2
	flip  int
	offs  []int
	ts    []int64
	Bytes int64 // input bytes of the current chunk
}

// keepChunks is how many chunk buffers a stream of rate events/s needs so that no buffered
// event's record is overwritten while it waits for a watermark ooo behind.
func keepChunks(chunk int, rate float64, ooo time.Duration) int {
	return 2 + int(math.Ceil(ooo.Seconds()*rate/float64(chunk)))
}

// fill generates the next size records into Recs.
func (c *chunker) fill(size int) {
	if len(c.bufs) < 2 {
		c.bufs = make([][]byte, 2)
	}
	c.flip = (c.flip + 1) % len(c.bufs)
	buf := c.bufs[c.flip][:0]
	c.Recs = c.Recs[:0]
	offs, ts := c.offs[:0], c.ts[:0]
	for range size {
		r := c.next(buf)
		buf = append(buf, r.Value...) // a self-copy unless next had to grow the buffer
		offs = append(offs, len(buf))
		ts = append(ts, r.Timestamp)
	}
	c.bufs[c.flip], c.offs, c.ts = buf, offs, ts
	// Slice after generating: buf may have moved while it grew.
	prev := 0
	c.Bytes = int64(len(buf))
	for i, end := range offs {
		c.Recs = append(c.Recs, operators.Record{Topic: c.topic, Offset: c.n + int64(i), Value: buf[prev:end:end], Timestamp: ts[i]})
		prev = end
	}
	c.n += int64(len(offs))
}

// footprint is the memory the chunker holds, to leave out of heap-per-session figures.
func (c *chunker) footprint() int64 {
	n := int64(cap(c.offs)+cap(c.ts)) * 8
	for _, b := range c.bufs {
		n += int64(cap(b))
	}
	return n + int64(cap(c.Recs))*int64(unsafe.Sizeof(operators.Record{}))
}

// CountingSink counts outputs by kind and, when Encode is set, encodes each one as JSON into a
// reused buffer, as an output writer would. With Latency set it samples event-to-output
// latency; OnOutput, if set, sees every output.
type CountingSink struct {
	Encode   bool
	Counts   [5]int64
	Bytes    int64
	buf      []byte
	Latency  *Latency
	OnOutput func(o *operators.Output)
}

func (c *CountingSink) Emit(o *operators.Output) {
	c.Counts[o.Kind]++
	if c.Encode {
		c.buf = operators.AppendJSON(c.buf[:0], o)
		c.Bytes += int64(len(c.buf))
	}
	if c.Latency != nil {
		c.Latency.emitted(o)
	}
	if c.OnOutput != nil {
		c.OnOutput(o)
	}
}

// Outputs is the number of outputs counted.
func (c *CountingSink) Outputs() int64 {
	var n int64
	for _, v := range c.Counts {
		n += v
	}
	return n
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
	w.chunker = chunker{next: gen.Next, topic: "web"}
	opCfg := cfg.Operators
	opCfg.EnsureDefaults()
	w.bufs = make([][]byte, keepChunks(cfg.Chunk, cfg.Web.Rate, opCfg.MaxOutOfOrderness))
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
	w.fill(w.cfg.Chunk)
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
