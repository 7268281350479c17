package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline"
)

// PipelineConfig configures the pipeline levels (LevelKfake, LevelBroker): the live processor
// consuming pre-produced input. Zero fields take the defaults given.
type PipelineConfig struct {
	// Partitions of the input and output topics. Default 4.
	Partitions int
	// Guarantee: exactly-once (default) or at-least-once.
	Guarantee string
	// Compression of produced batches (input and output). Default lz4.
	Compression string
	// MaxPollRecords per cycle (one transaction). Default 20,000.
	MaxPollRecords int
	// Brokers for LevelBroker; default from DWELL_TEST_BROKERS. Topics and the group get
	// unique names and are deleted afterwards.
	Brokers []string `json:",omitempty"`
	// Logger for the processor. Default: discard.
	Logger *slog.Logger `json:"-"`
	// Kafka, if set, is a Kafka the caller prepared (tests: pipeline/pipelinetest): its topics
	// exist and are the caller's to delete; the level only labels the result.
	Kafka *Kafka `json:"-"`
}

// Kafka is a prepared Kafka for a pipeline run: brokers, existing input and output topics
// (the changelog compacted) and a consumer group name.
type Kafka struct {
	Brokers []string
	Input   string
	Topics  pipeline.Topics
	Group   string
}

// EnsureDefaults fills zero fields and returns c.
func (c *PipelineConfig) EnsureDefaults() *PipelineConfig {
	if c.Partitions == 0 {
		c.Partitions = 4
	}
	if c.Guarantee == "" {
		c.Guarantee = pipeline.ExactlyOnce
	}
	if c.Compression == "" {
		c.Compression = "lz4"
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = 20_000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// BrokersFromEnv returns the bootstrap addresses in DWELL_TEST_BROKERS, or nil.
func BrokersFromEnv() []string {
	var out []string
	for _, b := range strings.Split(os.Getenv(BrokersEnv), ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// ErrNoBrokers is returned for LevelBroker when no broker is configured.
var ErrNoBrokers = errors.New("bench: level broker needs brokers: set " + BrokersEnv + " to bootstrap addresses")

const latencyPipeline = "pipeline: wall time from each input record's timestamp (set when it was produced) to the commit " +
	"of the cycle that processed it (dwell_event_to_output_latency_seconds); input was produced before the processor " +
	"started, so this is dominated by the backlog, not by per-record work"

// runPipeline produces events records from next to an input topic, then runs the live
// processor until its group has committed every one, and measures that stretch.
// active says which open things of the processor count as active sessions.
func runPipeline(ctx context.Context, level string, pc PipelineConfig, opCfg operators.Config, events int64,
	next func(dst []byte) Record, active func(pipeline.LiveStats) int) (*Result, pipeline.LiveStats, error) {
	var st pipeline.LiveStats
	pc.EnsureDefaults()
	suffix := ""
	var brokers []string
	switch level {
	case LevelKfake:
	case LevelBroker:
		if pc.Kafka != nil {
			break
		}
		if len(pc.Brokers) == 0 {
			pc.Brokers = BrokersFromEnv()
		}
		if len(pc.Brokers) == 0 {
			return nil, st, ErrNoBrokers
		}
		brokers = pc.Brokers
		suffix = fmt.Sprintf("-bench-%d", time.Now().UnixNano())
	default:
		return nil, st, fmt.Errorf("bench: unknown level %q (operators, kfake, broker)", level)
	}
	topics := pipeline.DefaultTopics()
	input := "events" + suffix
	topics.System += suffix
	topics.Events += suffix
	topics.Late += suffix
	topics.Dead += suffix
	topics.Changelog += suffix
	group := "dwell" + suffix
	all := []string{input, topics.System, topics.Events, topics.Late, topics.Dead, topics.Changelog}

	prepared := pc.Kafka != nil
	if prepared {
		brokers, input, topics, group = pc.Kafka.Brokers, pc.Kafka.Input, pc.Kafka.Topics, pc.Kafka.Group
		all = []string{input, topics.System, topics.Events, topics.Late, topics.Dead, topics.Changelog}
	}
	if level == LevelKfake && !prepared {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(pc.Partitions), all...))
		if err != nil {
			return nil, st, fmt.Errorf("bench: kfake: %w", err)
		}
		defer c.Close()
		brokers = c.ListenAddrs()
	}
	codec := kgo.Lz4Compression()
	switch pc.Compression {
	case "zstd":
		codec = kgo.ZstdCompression()
	case "snappy":
		codec = kgo.SnappyCompression()
	case "none":
		codec = kgo.NoCompression()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(input),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ProducerBatchCompression(codec))
	if err != nil {
		return nil, st, fmt.Errorf("bench: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if level == LevelBroker && !prepared {
		if _, err := adm.CreateTopics(ctx, int32(pc.Partitions), -1, nil, all[:5]...); err != nil {
			return nil, st, fmt.Errorf("bench: creating topics: %w", err)
		}
		compact := "compact"
		if _, err := adm.CreateTopics(ctx, int32(pc.Partitions), -1, map[string]*string{"cleanup.policy": &compact}, topics.Changelog); err != nil {
			return nil, st, fmt.Errorf("bench: creating topics: %w", err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _ = adm.DeleteTopics(dctx, all...)
			_, _ = adm.DeleteGroup(dctx, group)
		}()
	}

	// Produce everything first, so that the measured stretch is the processor's alone.
	var bytesIn int64
	const batch = 10_000
	var buf []byte
	for done := int64(0); done < events; {
		n := int(min(batch, events-done))
		buf = buf[:0]
		recs := make([]*kgo.Record, 0, n)
		ends := make([]int, 0, n)
		keys := make([][]byte, 0, n)
		for range n {
			r := next(buf)
			buf = append(buf, r.Value...)
			ends = append(ends, len(buf))
			keys = append(keys, append([]byte(nil), r.Key...))
		}
		now := time.Now()
		prev := 0
		for i, end := range ends {
			recs = append(recs, &kgo.Record{Key: keys[i], Value: buf[prev:end], Timestamp: now})
			prev = end
		}
		bytesIn += int64(len(buf))
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return nil, st, fmt.Errorf("bench: producing input: %w", err)
		}
		done += int64(n)
	}

	dir, err := os.MkdirTemp("", "dwell-bench-")
	if err != nil {
		return nil, st, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	reg := prometheus.NewRegistry()
	live, err := pipeline.NewLive(pipeline.LiveConfig{Brokers: brokers, Group: group, Inputs: []string{input}, Topics: topics,
		DataDir: dir, Operators: opCfg, MaxPollRecords: pc.MaxPollRecords, Guarantee: pc.Guarantee,
		SavepointInterval: -1, // the figures are without savepoints; BenchmarkPipelineKfakeSavepoint measures them
		Compression:       pc.Compression, Logger: pc.Logger, Metrics: pipeline.NewMetrics(reg)})
	if err != nil {
		return nil, st, err
	}
	defer live.Close()
	var m meter
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	m.start()
	go func() { done <- live.Run(runCtx) }()
	// A processor that stops making progress fails the run rather than hanging it.
	const stall = 60 * time.Second
	last, lastMoved := int64(-1), time.Now()
	for {
		committed, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			total := int64(0)
			committed.Each(func(o kadm.OffsetResponse) { total += max(o.At, 0) })
			if total >= events {
				break
			}
			if total != last {
				last, lastMoved = total, time.Now()
			}
		}
		if time.Since(lastMoved) > stall {
			cancel()
			<-done
			st = live.Stats()
			hint := ""
			if st.Aborted > 0 {
				// Seen with many events waiting in the reorder buffer: the partition snapshot
				// carries them and outgrows the broker's record size limit.
				hint = " (if every produce fails, the partition snapshot may exceed the broker's record size: lower --max-out-of-orderness or the rate, or add partitions)"
			}
			return nil, st, fmt.Errorf("bench: the processor made no progress for %s: %d of %d records committed, %d transactions committed, %d aborted%s",
				stall, max(last, 0), events, st.Committed, st.Aborted, hint)
		}
		select {
		case err := <-done:
			return nil, st, fmt.Errorf("bench: the processor stopped early: %w", err)
		case <-ctx.Done():
			cancel()
			<-done
			return nil, st, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	m.stop()
	st = live.Stats()
	// The heap while the processor (and, on kfake, the broker) still holds its state.
	heap := liveHeap()
	runtime.KeepAlive(live)
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return nil, st, err
	}

	r := &Result{Level: level, Events: events, LatencyMeaning: latencyPipeline}
	if n := active(st); n > 0 {
		r.ActiveSessions = int64(n)
		r.HeapPerSession = float64(heap) / float64(n)
	}
	m.into(r)
	r.BytesInPerEvent = float64(bytesIn) / float64(events)
	mfs, err := reg.Gather()
	if err != nil {
		return nil, st, fmt.Errorf("bench: %w", err)
	}
	outTopics := []string{topics.System, topics.Events, topics.Late, topics.Dead}
	var outputs int64
	for _, mf := range mfs {
		switch mf.GetName() {
		case "dwell_event_to_output_latency_seconds":
			if h := mf.GetMetric()[0].GetHistogram(); h != nil {
				r.LatencySamples = int64(h.GetSampleCount())
				r.LatencyP50, r.LatencyP99, r.LatencyP999 = nativeQuantile(h, 0.5), nativeQuantile(h, 0.99), nativeQuantile(h, 0.999)
			}
		case "dwell_records_out_total":
			for _, mt := range mf.GetMetric() {
				for _, lp := range mt.GetLabel() {
					if lp.GetName() == "topic" && lp.GetValue() != topics.Changelog {
						outputs += int64(mt.GetCounter().GetValue())
					}
				}
			}
		}
	}
	r.Outputs = outputs
	bytesOut, err := consumeBytes(ctx, brokers, outTopics, outputs)
	if err != nil {
		return nil, st, err
	}
	r.BytesOutPerEvent = float64(bytesOut) / float64(events)
	r.Notes = append(r.Notes, fmt.Sprintf("%d transactions committed, %d aborted", st.Committed, st.Aborted))
	if level == LevelKfake {
		r.Notes = append(r.Notes, "the kfake broker runs in this process: its CPU, allocations and memory (every record, so heap per session too) are included")
	}
	return r, st, nil
}

// consumeBytes reads the committed output records (key and value bytes) after a run.
func consumeBytes(ctx context.Context, brokers, topics []string, want int64) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var n, bytes int64
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return bytes, fmt.Errorf("bench: reading outputs: %d of %d records: %w", n, want, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			bytes += int64(len(r.Key) + len(r.Value))
		})
	}
	return bytes, nil
}

// nativeQuantile estimates the q-quantile of a native (exponential) histogram, in its unit;
// it falls back to the classic buckets.
func nativeQuantile(h *dto.Histogram, q float64) float64 {
	total := h.GetSampleCount()
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	if len(h.GetPositiveSpan()) == 0 {
		for _, b := range h.GetBucket() {
			if b.GetCumulativeCount() >= rank {
				return b.GetUpperBound()
			}
		}
		return math.Inf(1)
	}
	seen := h.GetZeroCount()
	if seen >= rank {
		return 0
	}
	base := math.Pow(2, math.Pow(2, -float64(h.GetSchema())))
	idx, count, di := int32(0), int64(0), 0
	deltas := h.GetPositiveDelta()
	for si, sp := range h.GetPositiveSpan() {
		if si == 0 {
			idx = sp.GetOffset()
		} else {
			idx += sp.GetOffset()
		}
		for range sp.GetLength() {
			count += deltas[di]
			di++
			seen += uint64(count)
			if seen >= rank {
				// Bucket idx holds (base^(idx-1), base^idx]: its geometric middle.
				return math.Pow(base, float64(idx)-0.5)
			}
			idx++
		}
	}
	return math.Pow(base, float64(idx))
}

// heapPerActive returns the live heap after a collection, less base, over active.
func heapPerActive(base int64, active int) float64 {
	if active <= 0 {
		return 0
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(int64(ms.HeapAlloc)-base) / float64(active)
}

// liveHeap returns the live heap after a collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
