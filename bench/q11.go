package bench

import (
	"time"

	"github.com/dwellhq/dwell/operators"
)

// Q11Config is Nexmark Query 11 run in-process: the Nexmark stream decoded and sessionized on
// one goroutine by the Q11Operators job.
type Q11Config struct {
	Nexmark NexmarkConfig
	// Gap is the session gap. Default 10s (the query's).
	Gap time.Duration
	// MaxOutOfOrderness is how far the watermark trails the largest event time. Default 4s,
	// as in the Flink Nexmark DDL; the generator's stream is in order, so 1ms loses nothing.
	MaxOutOfOrderness time.Duration
	// Chunk is how many events are generated ahead, in memory, between timed stretches.
	// Default 65,536.
	Chunk int
	// Warmup is the number of events processed before measuring, so that windows open and
	// close at their steady rate. Default: twice gap + MaxOutOfOrderness of event time;
	// negative: none.
	Warmup int64
	// Encode encodes every output as JSON, as an output writer would. Default off.
	Encode bool
}

// EnsureDefaults fills zero fields and returns c.
func (c *Q11Config) EnsureDefaults() *Q11Config {
	c.Nexmark.EnsureDefaults()
	if c.Gap == 0 {
		c.Gap = 10 * time.Second
	}
	if c.MaxOutOfOrderness == 0 {
		c.MaxOutOfOrderness = 4 * time.Second
	}
	if c.Chunk == 0 {
		c.Chunk = 1 << 16
	}
	if c.Warmup == 0 {
		c.Warmup = int64(2 * (c.Gap + c.MaxOutOfOrderness).Seconds() * c.Nexmark.Rate)
	}
	return c
}

// Q11 is the in-process Query 11 workload: generate a chunk (Fill), then feed Recs to S.
type Q11 struct {
	cfg Q11Config
	gen *Nexmark
	chunker
	S    *operators.Sessionizer
	Sink *CountingSink
}

// NewQ11 builds the workload and runs its warmup.
func NewQ11(cfg Q11Config) (*Q11, error) {
	cfg.EnsureDefaults()
	gen, err := NewNexmark(cfg.Nexmark)
	if err != nil {
		return nil, err
	}
	q := &Q11{cfg: cfg, gen: gen, Sink: &CountingSink{Encode: cfg.Encode}}
	q.chunker = chunker{next: gen.Next, topic: "nexmark", bufs: make([][]byte, keepChunks(cfg.Chunk, cfg.Nexmark.Rate, cfg.MaxOutOfOrderness))}
	if q.S, err = operators.NewSessionizer(Q11Operators(cfg.Gap, cfg.MaxOutOfOrderness), 0, q.Sink); err != nil {
		return nil, err
	}
	for n := cfg.Warmup; n > 0; n -= int64(cfg.Chunk) {
		q.Fill()
		for i := range q.Recs {
			q.S.Process(&q.Recs[i])
		}
	}
	q.Sink.Counts = [5]int64{}
	q.Sink.Bytes = 0
	return q, nil
}

// Fill generates the next chunk of events into Recs.
func (q *Q11) Fill() { q.fill(q.cfg.Chunk) }
