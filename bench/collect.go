package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/collect"
)

// CollectConfig is the collect workload: dwell collect's /track under keep-alive HTTP clients
// in the same process, each sending batches of EventsPerRequest events from many profiles and
// waiting for the answer (200 once Kafka has acknowledged) before sending the next.
type CollectConfig struct {
	// Level is LevelKfake (default; the broker shares the process and its cores) or LevelBroker.
	Level string
	// Brokers for LevelBroker; default from DWELL_TEST_BROKERS. The topic gets a unique name
	// and is deleted afterwards.
	Brokers []string `json:",omitempty"`
	// Partitions of the input topic. Default 4.
	Partitions int
	// Clients is the number of keep-alive connections, each with one request at a time.
	// Default 64.
	Clients int
	// Duration of the measured stretch, unless Requests ends it first. Default 10s.
	Duration time.Duration
	// Requests, if positive, ends the run after this many requests.
	Requests int64
	// EventsPerRequest in each batch. Default 10.
	EventsPerRequest int
	// Profiles the requests come from (a tenth without a profile id: the collector mints one).
	// Default 100,000.
	Profiles int
	// Compression of the collector's producer: lz4 (default, dwell collect's), zstd, snappy,
	// none.
	Compression string
	// Seed of the request mix.
	Seed uint64
	// Linger, if positive, replaces the collector's producer linger (collect.Config.Linger).
	Linger time.Duration `json:",omitempty"`
	// Warmup is how long the clients send before the measured stretch. Default 1s.
	Warmup time.Duration
	// Client is "raw" (default: HTTP/1.1 written and read by hand on a kept-alive connection,
	// so that the load generator costs little of the cores it shares) or "net/http".
	Client string
}

// EnsureDefaults fills zero fields and returns c.
func (c *CollectConfig) EnsureDefaults() *CollectConfig {
	if c.Level == "" {
		c.Level = LevelKfake
	}
	if c.Partitions <= 0 {
		c.Partitions = 4
	}
	if c.Clients <= 0 {
		c.Clients = 64
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.EventsPerRequest <= 0 {
		c.EventsPerRequest = 10
	}
	if c.Profiles <= 0 {
		c.Profiles = 100_000
	}
	if c.Compression == "" {
		c.Compression = "lz4"
	}
	if c.Warmup <= 0 {
		c.Warmup = time.Second
	}
	if c.Client == "" {
		c.Client = "raw"
	}
	return c
}

const latencyCollect = "request: client wall time from sending a /track request to reading its answer " +
	"(200 only after Kafka acknowledged the record), keep-alive connections in the same process"

// collectBodies is how many distinct request bodies the clients cycle through (made before
// the measured stretch, so that generating them is not measured).
const collectBodies = 4096

// RunCollect runs the collect workload and reports accepted events per second, requests per
// second, request latency and refusals by status (Extra: requests_per_s, status_NNN).
func RunCollect(ctx context.Context, cfg CollectConfig) (*Result, error) {
	cfg.EnsureDefaults()
	topic := "events"
	var brokers []string
	switch cfg.Level {
	case LevelKfake:
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(cfg.Partitions), topic))
		if err != nil {
			return nil, fmt.Errorf("bench: kfake: %w", err)
		}
		defer c.Close()
		brokers = c.ListenAddrs()
	case LevelBroker:
		brokers = cfg.Brokers
		if len(brokers) == 0 {
			brokers = BrokersFromEnv()
		}
		if len(brokers) == 0 {
			return nil, ErrNoBrokers
		}
		topic = fmt.Sprintf("events-bench-collect-%d", time.Now().UnixNano())
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		if _, err := adm.CreateTopics(ctx, int32(cfg.Partitions), -1, nil, topic); err != nil {
			return nil, fmt.Errorf("bench: creating %s: %w", topic, err)
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _ = adm.DeleteTopics(dctx, topic)
		}()
	default:
		return nil, fmt.Errorf("bench: unknown level %q for collect (kfake, broker)", cfg.Level)
	}

	ss, err := collect.ParseSources([]byte("sources:\n  - id: web\n"), nil)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	codec, err := pipeline.CompressionCodec(cfg.Compression)
	if err != nil {
		return nil, err
	}
	// With metrics, as dwell collect runs.
	c, err := collect.New(collect.Config{Brokers: brokers, Topic: topic, Sources: ss, PingInterval: 100 * time.Millisecond,
		ClientOpts: []kgo.Opt{kgo.ProducerBatchCompression(codec)}, Linger: cfg.Linger, Metrics: collect.NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	rctx, stopRun := context.WithCancel(ctx)
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		_ = c.Run(rctx)
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stopRun()
		return nil, fmt.Errorf("bench: %w", err)
	}
	srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		stopRun()
		<-pinged
		_ = c.Close(sctx)
	}()
	for deadline := time.Now().Add(30 * time.Second); c.Ready() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bench: the collector never got ready: %w", c.Ready())
		}
	}

	bodies := collectRequests(cfg)
	addr := ln.Addr().String()
	newClient := func() collectClient {
		if cfg.Client == "net/http" {
			return newStdClient(addr, cfg.Clients)
		}
		return &rawClient{addr: addr}
	}
	// The topic takes a first record (a new one on a broker may need a moment), then every
	// client sends for Warmup, unmeasured: connections are open when measuring starts.
	first := newClient()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, err := first.post(bodies[0])
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bench: no request accepted within 30s: status %d, %v", code, err)
		}
	}
	first.close()

	var (
		issued   atomic.Int64 // requests started, for Requests
		measure  atomic.Bool
		stop     atomic.Bool
		wg       sync.WaitGroup
		statsMu  sync.Mutex
		hist     histogram
		accepted int64
		requests int64
		byStatus = map[int]int64{}
		bytesIn  int64
	)
	for i := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := newClient()
			defer cl.close()
			var h histogram
			var ok, n, in int64
			st := map[int]int64{}
			for j := i; !stop.Load(); j += cfg.Clients {
				measured := measure.Load()
				if measured && cfg.Requests > 0 && issued.Add(1) > cfg.Requests {
					break
				}
				body := bodies[j%len(bodies)]
				start := time.Now()
				code, err := cl.post(body)
				if !measured {
					if err != nil && ctx.Err() != nil {
						break
					}
					continue
				}
				h.record(int64(time.Since(start)))
				n++
				in += int64(len(body))
				st[code]++
				if code == http.StatusOK {
					ok++
				}
				if err != nil && ctx.Err() != nil {
					break
				}
			}
			statsMu.Lock()
			defer statsMu.Unlock()
			for k, c := range h.counts {
				hist.counts[k] += c
			}
			hist.n += h.n
			accepted += ok
			requests += n
			bytesIn += in
			for k, v := range st {
				byStatus[k] += v
			}
		}()
	}
	select {
	case <-time.After(cfg.Warmup):
	case <-ctx.Done():
	}
	var m meter
	m.start()
	t0 := time.Now()
	measure.Store(true)
	timer := time.AfterFunc(cfg.Duration, func() { stop.Store(true) })
	wg.Wait()
	timer.Stop()
	wall := time.Since(t0)
	m.stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	r := &Result{Workload: "collect", Level: cfg.Level, Config: cfg, Started: t0.UTC().Format(time.RFC3339)}
	r.Events = accepted * int64(cfg.EventsPerRequest)
	m.into(r)
	r.WallSec = wall.Seconds()
	if r.Events > 0 {
		r.BytesInPerEvent = float64(bytesIn) / float64(requests*int64(cfg.EventsPerRequest))
	}
	r.LatencyMeaning = latencyCollect
	hist.into(r)
	r.Extra = map[string]float64{"requests_per_s": float64(requests) / wall.Seconds(), "requests": float64(requests)}
	for code, n := range byStatus {
		name := "status_" + strconv.Itoa(code)
		if code == 0 {
			name = "status_none" // a transport error: no answer
		}
		r.Extra[name] = float64(n)
	}
	r.Notes = append(r.Notes, fmt.Sprintf("%d keep-alive %s clients in this process, one request at a time each, after %s of warm-up; events are accepted events (200s x %d)",
		cfg.Clients, cfg.Client, cfg.Warmup, cfg.EventsPerRequest))
	if accepted < requests {
		r.Notes = append(r.Notes, fmt.Sprintf("%d of %d requests were not accepted (see status_*)", requests-accepted, requests))
	}
	r.finish()
	return r, nil
}

// collectClient sends a /track request and reads its answer: the status, 0 without one.
type collectClient interface {
	post(body []byte) (int, error)
	close()
}

// stdClient is net/http's client, keep-alive.
type stdClient struct {
	url string
	c   *http.Client
	tr  *http.Transport
	buf []byte
}

func newStdClient(addr string, conns int) *stdClient {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, DisableCompression: true}
	return &stdClient{url: "http://" + addr + "/track", c: &http.Client{Transport: tr}, tr: tr, buf: make([]byte, 0, 1024)}
}

func (s *stdClient) post(body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	s.buf = s.buf[:0]
	for {
		if len(s.buf) == cap(s.buf) {
			s.buf = append(s.buf, 0)[:len(s.buf)]
		}
		n, err := resp.Body.Read(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		if errors.Is(err, io.EOF) {
			return resp.StatusCode, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

func (s *stdClient) close() { s.tr.CloseIdleConnections() }

// rawClient writes HTTP/1.1 requests by hand on one kept-alive connection and reads answers
// with a Content-Length (the collector's always have one: they are small, so net/http sets
// it); it reconnects after an error.
type rawClient struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
	req  []byte
}

func (c *rawClient) post(body []byte) (int, error) {
	if c.conn == nil {
		conn, err := net.Dial("tcp", c.addr)
		if err != nil {
			return 0, err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 4096)
	}
	c.req = append(c.req[:0], "POST /track HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, c.addr...)
	c.req = append(c.req, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	code, err := c.roundTrip()
	if err != nil {
		c.close()
	}
	return code, err
}

func (c *rawClient) roundTrip() (int, error) {
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bench: status line %q", line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bench: status line %q", line)
	}
	length := -1
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		if k, v, ok := bytes.Cut(h, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return 0, fmt.Errorf("bench: header %q", h)
			}
		}
	}
	if length < 0 {
		return 0, errors.New("bench: an answer without Content-Length")
	}
	if _, err := c.br.Discard(length); err != nil {
		return 0, err
	}
	return code, nil
}

func (c *rawClient) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// collectRequests makes the bodies the clients send: Tracardi /track batches of
// EventsPerRequest events from random profiles (a tenth anonymous), a page context and small
// properties, about 1 KB for 10 events.
func collectRequests(cfg CollectConfig) [][]byte {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xc011ec7))
	types := []string{"page-view", "product-view", "add-to-cart", "search", "checkout"}
	out := make([][]byte, collectBodies)
	for i := range out {
		p := rng.IntN(cfg.Profiles)
		var b []byte
		b = append(b, `{"source":{"id":"web"},"session":{"id":"s-`...)
		b = strconv.AppendInt(b, int64(p), 10)
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(rng.IntN(4)), 10)
		b = append(b, `"}`...)
		if p%10 != 0 {
			b = append(b, `,"profile":{"id":"p-`...)
			b = strconv.AppendInt(b, int64(p), 10)
			b = append(b, `"}`...)
		}
		b = append(b, `,"context":{"page":{"url":"https://shop.example.com/p/`...)
		b = strconv.AppendInt(b, int64(rng.IntN(1000)), 10)
		b = append(b, `"},"device":"mobile"},"events":[`...)
		for e := range cfg.EventsPerRequest {
			if e > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"type":"`...)
			b = append(b, types[rng.IntN(len(types))]...)
			b = append(b, `","properties":{"sku":"A`...)
			b = strconv.AppendInt(b, int64(rng.IntN(5000)), 10)
			b = append(b, `","qty":`...)
			b = strconv.AppendInt(b, int64(1+rng.IntN(3)), 10)
			b = append(b, `}}`...)
		}
		out[i] = append(b, `]}`...)
	}
	return out
}
