package bench

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline"
)

// WebRunConfig is the web workload at one level.
type WebRunConfig struct {
	// Level is LevelOperators (default), LevelKfake or LevelBroker.
	Level string
	// Events is the number of records measured. Default 1,000,000.
	Events int64
	// Operators is the in-process setup (warm state of Web.Profiles known profiles, warmup
	// traffic); at the pipeline levels only Web and Operators.Operators apply, and state
	// starts empty.
	Operators OperatorsConfig
	// Encode encodes every output as JSON at the operators level (bytes out). Default off:
	// decode + sessionize only.
	Encode   bool
	Pipeline PipelineConfig
}

// NexmarkRunConfig is Nexmark Query 11 at one level.
type NexmarkRunConfig struct {
	Level    string
	Events   int64 // default 10,000,000
	Q11      Q11Config
	Pipeline PipelineConfig
}

// RunWeb runs the web workload and reports it.
func RunWeb(ctx context.Context, cfg WebRunConfig) (*Result, error) {
	if cfg.Level == "" {
		cfg.Level = LevelOperators
	}
	if cfg.Events == 0 {
		cfg.Events = 1_000_000
	}
	cfg.Operators.Web.EnsureDefaults()
	if err := cfg.Operators.Web.Validate(); err != nil {
		return nil, err
	}
	started := time.Now()
	var r *Result
	if cfg.Level == LevelOperators {
		base := liveHeap()
		w, err := NewOperators(cfg.Operators)
		if err != nil {
			return nil, err
		}
		w.Sink.Encode = cfg.Encode
		lat := NewLatency()
		w.Sink.Latency = lat
		m, n, bytes, err := inProcess(ctx, cfg.Events, &w.chunker, w.cfg.Chunk, w.S, lat)
		if err != nil {
			return nil, err
		}
		r = &Result{Level: LevelOperators, Events: n, Outputs: w.Sink.Outputs(), LatencyMeaning: latencyInProcess}
		m.into(r)
		lat.hist.into(r)
		r.BytesInPerEvent = float64(bytes) / float64(n)
		if cfg.Encode {
			r.BytesOutPerEvent = float64(w.Sink.Bytes) / float64(n)
		} else {
			r.Notes = append(r.Notes, "outputs not encoded (--encode=false): bytes out not measured")
		}
		st := w.S.Stats()
		r.ActiveSessions = int64(st.OpenSessions)
		r.HeapPerSession = heapPerActive(base+w.footprint(), st.OpenSessions)
		runtime.KeepAlive(w)
		r.Extra = map[string]float64{"system_per_event": float64(w.Sink.Counts[operators.KindSystem]) / float64(n),
			"keys": float64(st.Keys), "open_visits": float64(st.OpenVisits)}
		r.Notes = append(r.Notes, "heap per active session: the whole live heap less the input buffers, keys without an open session included")
	} else {
		gen, err := NewWeb(cfg.Operators.Web)
		if err != nil {
			return nil, err
		}
		var st pipeline.LiveStats
		r, st, err = runPipeline(ctx, cfg.Level, cfg.Pipeline, cfg.Operators.Operators, cfg.Events, gen.Next,
			func(st pipeline.LiveStats) int { return st.OpenSessions })
		if err != nil {
			return nil, err
		}
		r.Extra = map[string]float64{"system_events": float64(sumSystem(st.System[:]))}
		r.Notes = append(r.Notes, "state starts empty at the pipeline levels; heap per session is the whole live heap at the end of the run")
	}
	r.Workload = "web"
	r.Config = cfg
	r.Started = started.UTC().Format(time.RFC3339)
	r.finish()
	return r, nil
}

// RunNexmark runs Nexmark Query 11 and reports it. Throughput counts every Nexmark event
// (persons and auctions too), as Nexmark does.
func RunNexmark(ctx context.Context, cfg NexmarkRunConfig) (*Result, error) {
	if cfg.Level == "" {
		cfg.Level = LevelOperators
	}
	if cfg.Events == 0 {
		cfg.Events = 10_000_000
	}
	cfg.Q11.EnsureDefaults()
	if err := cfg.Q11.Nexmark.Validate(); err != nil {
		return nil, err
	}
	started := time.Now()
	var r *Result
	if cfg.Level == LevelOperators {
		base := liveHeap()
		q, err := NewQ11(cfg.Q11)
		if err != nil {
			return nil, err
		}
		lat := NewLatency()
		q.Sink.Latency = lat
		m, n, bytes, err := inProcess(ctx, cfg.Events, &q.chunker, q.cfg.Chunk, q.S, lat)
		if err != nil {
			return nil, err
		}
		r = &Result{Level: LevelOperators, Events: n, Outputs: q.Sink.Outputs(), LatencyMeaning: latencyInProcess}
		m.into(r)
		lat.hist.into(r)
		r.BytesInPerEvent = float64(bytes) / float64(n)
		if cfg.Q11.Encode {
			r.BytesOutPerEvent = float64(q.Sink.Bytes) / float64(n)
		} else {
			r.Notes = append(r.Notes, "outputs not encoded: bytes out not measured")
		}
		st := q.S.Stats()
		r.ActiveSessions = int64(st.OpenVisits)
		r.HeapPerSession = heapPerActive(base+q.footprint(), st.OpenVisits)
		runtime.KeepAlive(q)
		r.Extra = map[string]float64{"sessions_per_event": float64(q.Sink.Counts[operators.KindSystem]) / float64(n), "keys": float64(st.Keys)}
	} else {
		gen, err := NewNexmark(cfg.Q11.Nexmark)
		if err != nil {
			return nil, err
		}
		var st pipeline.LiveStats
		r, st, err = runPipeline(ctx, cfg.Level, cfg.Pipeline, Q11Operators(cfg.Q11.Gap, cfg.Q11.MaxOutOfOrderness), cfg.Events, gen.Next,
			func(st pipeline.LiveStats) int { return st.OpenVisits })
		if err != nil {
			return nil, err
		}
		r.Notes = append(r.Notes, "heap per session is the whole live heap at the end of the run")
		r.Extra = map[string]float64{"sessions": float64(st.System[operators.VisitEnded])}
	}
	r.Workload = "nexmark-q11"
	r.Config = cfg
	r.Started = started.UTC().Format(time.RFC3339)
	r.Notes = append(r.Notes, "Q11 outputs are the closed bidder sessions (visit-ended); every Nexmark event is ephemeral, so nothing else is written")
	r.finish()
	return r, nil
}

// inProcess feeds generated chunks to s until events records have been processed, measuring
// only the processing: generation happens between measured stretches.
func inProcess(ctx context.Context, events int64, c *chunker, chunk int, s *operators.Sessionizer, lat *Latency) (m meter, n, bytes int64, err error) {
	for n < events {
		if err := ctx.Err(); err != nil {
			return m, n, bytes, err
		}
		c.fill(int(min(int64(chunk), events-n)))
		m.start()
		for i := range c.Recs {
			lat.feed(c.Recs[i].Offset)
			s.Process(&c.Recs[i])
		}
		m.stop()
		if err := s.Err(); err != nil {
			return m, n, bytes, fmt.Errorf("bench: %w", err)
		}
		n += int64(len(c.Recs))
		bytes += c.Bytes
	}
	return m, n, bytes, nil
}

func sumSystem(s []uint64) uint64 {
	var n uint64
	for _, v := range s {
		n += v
	}
	return n
}
