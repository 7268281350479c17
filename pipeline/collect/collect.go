package collect

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
)

// Config configures a Collector. Zero fields take the defaults given.
type Config struct {
	// Brokers and ClientOpts (TLS, SASL) make the producer; Topic is the input topic.
	Brokers    []string
	ClientOpts []kgo.Opt
	Topic      string
	// Sources are the event sources; SetSources replaces them.
	Sources *Sources
	// Operators holds the decoder's limits (MaxEventBytes is also the body limit, MaxDepth,
	// MaxIDBytes, MaxFutureSkew): use dwell run's, so that the collector accepts what the
	// processor processes.
	Operators operators.Config
	// MaxEvents bounds the events of one request. Default 100.
	MaxEvents int
	// Timeout bounds the wait for Kafka's acknowledgement: a request not acknowledged within it
	// gets 503 (its events may still land: idempotence prevents duplicates of the producer's
	// own retries, not of a client's). Default 10s.
	Timeout time.Duration
	// MaxBufferedBytes bounds what waits for Kafka; a request that does not fit gets 503 at
	// once. Default 64 MiB.
	MaxBufferedBytes int
	// MaxInflight bounds the requests being handled at once; beyond it, 503. Default 4096.
	MaxInflight int
	// Linger is how long the producer waits for more records before it sends a batch. Every
	// request waits for its record's acknowledgement, so linger is latency and, for clients
	// that wait for their answer, throughput: batches still grow while earlier ones are in
	// flight. Default 500µs (2ms gave 40% fewer events/s in BenchmarkCollect and on a broker);
	// negative: none.
	Linger time.Duration
	// PingInterval is how often the brokers are asked for metadata while requests are few,
	// for /readyz. Default 5s.
	PingInterval time.Duration
	// Now is the clock that stamps records (the time of receipt). Default time.Now.
	Now func() time.Time
	// Logger, default discard. Metrics, if set, counts requests, events and latencies.
	Logger  *slog.Logger
	Metrics *Metrics
}

// Collector is the /track intake: an http.Handler that checks Tracardi /track payloads and
// produces each as one record to the input topic, answering only once Kafka has it.
type Collector struct {
	cfg     Config
	cl      *kgo.Client
	dec     *decoders
	sources atomic.Pointer[Sources]
	log     *slog.Logger
	m       *Metrics
	now     func() time.Time

	inflight atomic.Int64
	// ready is nil while the brokers answer, else why they do not (for /readyz and fast 503s).
	ready   atomic.Pointer[error]
	lastAck atomic.Int64 // unix nanos of the last acknowledged produce: a ping is skipped after one
	// pingNow asks Run for a ping at once: a produce failed or a broker refused a connection,
	// so that the requests after it get 503 at once rather than each waiting out --timeout
	pingNow chan struct{}
	// draining is set by Drain: not ready from then on, whatever the brokers say
	draining atomic.Bool
}

//go:embed web/tracker.js
var trackerJS []byte

// TrackerJS is the JavaScript tracker served at /tracker.js.
func TrackerJS() []byte { return trackerJS }

//go:embed web/shop.html
var shopHTML []byte

// ShopHTML is the demo shop page that dwell demo serves at /: self-contained, it loads the
// tracker from /tracker.js of the same server as source "demo-shop".
func ShopHTML() []byte { return shopHTML }

// New makes the producer (idempotent, acks=all, Kafka's murmur2 partitioner on the profile id)
// and checks nothing yet: Run pings the brokers.
func New(cfg Config) (*Collector, error) {
	if cfg.Topic == "" {
		return nil, errors.New("collect: no topic: pass --topic")
	}
	if cfg.Sources == nil {
		return nil, errors.New("collect: no sources: pass --sources FILE (or --config-topic)")
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 100
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxBufferedBytes <= 0 {
		cfg.MaxBufferedBytes = 64 << 20
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 4096
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 5 * time.Second
	}
	switch {
	case cfg.Linger < 0:
		cfg.Linger = 0 // none: each record is sent as soon as a connection is free
	case cfg.Linger == 0:
		cfg.Linger = 500 * time.Microsecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Operators.EnsureDefaults()
	if err := cfg.Operators.Validate(); err != nil {
		return nil, fmt.Errorf("collect: %w", err)
	}
	if cfg.Operators.MaxIDBytes < 36 {
		return nil, fmt.Errorf("collect: max id bytes %d is below 36, the length of the profile ids the collector mints", cfg.Operators.MaxIDBytes)
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // nil: Kafka's murmur2, as the Java client
		kgo.RequiredAcks(kgo.AllISRAcks()),                   // and idempotence: franz-go's defaults, said aloud
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerBatchMaxBytes(int32(min(cfg.Operators.MaxEventBytes+(64<<10), 16<<20))),
		kgo.MaxBufferedBytes(cfg.MaxBufferedBytes),
		kgo.ProducerLinger(cfg.Linger),
	}
	if cfg.Metrics != nil && cfg.Metrics.kafka != nil {
		opts = append(opts, kgo.WithHooks(cfg.Metrics.kafka))
	}
	c := &Collector{cfg: cfg, dec: newDecoders(cfg.Operators), log: cfg.Logger, m: cfg.Metrics, now: cfg.Now,
		pingNow: make(chan struct{}, 1)}
	opts = append(opts, kgo.WithHooks(c)) // OnBrokerConnect
	cl, err := kgo.NewClient(append(opts, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("collect: kafka client: %w", err)
	}
	c.cl = cl
	c.sources.Store(cfg.Sources)
	notYet := errNotYet
	c.ready.Store(&notYet)
	if c.m != nil {
		c.m.attach(c)
	}
	return c, nil
}

// SetSources replaces the sources; requests in flight finish with the old ones.
func (c *Collector) SetSources(ss *Sources) {
	ss.keepLimiters(c.sources.Load())
	c.sources.Store(ss)
}

// Sources returns the sources in use.
func (c *Collector) Sources() *Sources { return c.sources.Load() }

// errNotYet is Ready's answer until the first ping: /readyz is red, but requests are taken
// (a page opened at start would otherwise wait out a Retry-After for nothing).
var errNotYet = errors.New("not ready: the brokers have not answered yet")

// errDraining is Ready's answer once Drain was called.
var errDraining = errors.New("not ready: shutting down")

// Ready is nil while the brokers answer (/readyz) and Drain has not been called.
func (c *Collector) Ready() error {
	if c.draining.Load() {
		return errDraining
	}
	return *c.ready.Load()
}

// Drain turns /readyz red for good, so that load balancers stop sending, while requests are
// still served: call it on SIGTERM, wait for the endpoints to be updated, then shut the HTTP
// server down.
func (c *Collector) Drain() { c.draining.Store(true) }

// Run pings the brokers every PingInterval (a metadata request for the topic) until ctx is
// done, keeping Ready up to date; an acknowledged produce counts as an answer. It returns
// ctx's error.
func (c *Collector) Run(ctx context.Context) error {
	adm := kadm.NewClient(c.cl)
	tick := time.NewTicker(c.cfg.PingInterval)
	defer tick.Stop()
	now := false
	for {
		if now || time.Since(time.Unix(0, c.lastAck.Load())) > c.cfg.PingInterval {
			c.ping(ctx, adm)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			now = false
		case <-c.pingNow:
			now = true
		}
	}
}

// askPing asks Run for a ping now (without waiting for it).
func (c *Collector) askPing() {
	select {
	case c.pingNow <- struct{}{}:
	default:
	}
}

// OnBrokerConnect is a kgo hook: a refused or failed connection makes Run ping at once.
func (c *Collector) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		c.askPing()
	}
}

func (c *Collector) ping(ctx context.Context, adm *kadm.Client) {
	// Brokers that answer at all answer a metadata request in milliseconds; refused
	// connections are retried by the client until the deadline.
	pctx, cancel := context.WithTimeout(ctx, min(c.cfg.PingInterval, 2*time.Second))
	defer cancel()
	// Ping asks a broker (ApiVersions) every time; a metadata request would be answered from
	// the client's cache for up to 5 s after the brokers went away.
	err := c.cl.Ping(pctx)
	var md kadm.Metadata
	if err == nil {
		md, err = adm.Metadata(pctx, c.cfg.Topic)
	}
	if err == nil {
		if t, ok := md.Topics[c.cfg.Topic]; !ok || t.Err != nil {
			terr := errors.New("unknown topic")
			if ok && t.Err != nil {
				terr = t.Err
			}
			err = fmt.Errorf("topic %q: %w; create it with dwell topics create %s", c.cfg.Topic, terr, c.cfg.Topic)
		}
	} else if ctx.Err() != nil {
		return
	} else {
		err = fmt.Errorf("cannot reach Kafka at %s: %w", strings.Join(c.cfg.Brokers, ","), err)
	}
	c.setReady(err)
}

func (c *Collector) setReady(err error) {
	old := c.ready.Load()
	if (*old == nil) != (err == nil) {
		if err != nil {
			c.log.Warn("not ready", "err", err)
		} else {
			c.log.Info("ready: the brokers answer", "topic", c.cfg.Topic)
		}
	}
	c.ready.Store(&err)
}

// Close flushes what is buffered (bounded by ctx) and closes the producer. Call it after the
// HTTP server has drained its requests.
//
// Records still buffered when ctx ends are those of requests already answered 503 (timeout:
// "may or may not have been written"): they are dropped, and the error says how many.
func (c *Collector) Close(ctx context.Context) error {
	err := c.cl.Flush(ctx)
	n := c.cl.BufferedProduceRecords()
	c.cl.Close()
	if err != nil {
		return &UnflushedError{Records: n, Err: err}
	}
	return nil
}

// UnflushedError is Close's error when Kafka did not take what was buffered in time.
type UnflushedError struct {
	Records int64
	Err     error
}

func (e *UnflushedError) Error() string {
	return fmt.Sprintf("%d records not written: Kafka did not acknowledge them before the drain timeout (%v); their requests were answered 503, not 200", e.Records, e.Err)
}

func (e *UnflushedError) Unwrap() error { return e.Err }

// Handler serves POST /track, OPTIONS /track (CORS preflight), GET /tracker.js, /healthz and
// /readyz.
func (c *Collector) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/track", c.track)
	mux.HandleFunc("GET /tracker.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		http.ServeContent(w, r, "tracker.js", time.Time{}, bytes.NewReader(trackerJS))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := c.Ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// response is /track's answer, in Tracardi's shape: the profile the tracker keeps, the session
// and source, and the ids the events have in dwell. appendResponse writes it; tests read it.
type response struct {
	Profile  ref      `json:"profile"`
	Session  *ref     `json:"session,omitempty"`
	Source   ref      `json:"source"`
	Events   []string `json:"events"`
	Errors   []string `json:"errors"`
	Warnings []string `json:"warnings"`
}

type ref struct {
	ID string `json:"id"`
}

// reply is what a request ends in, for the metrics and the log.
type reply struct {
	code       int
	source     string // metric label: the source id when known, else "unknown"
	events     int
	reason     string // why events were refused
	retryAfter int
	err        error // Kafka's, for produceMessage
}

func (c *Collector) track(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ss := c.sources.Load()
	h := w.Header()
	h.Set("Vary", "Origin")
	originHdr := r.Header.Get("Origin")
	scheme, host, isOrigin := splitOrigin(originHdr)
	if isOrigin && ss.preflightAllowed(scheme, host) {
		// on every answer, errors included: a browser hides an answer without it from the
		// tracker, which would take a 400 for a network error and send the batch again
		h.Set("Access-Control-Allow-Origin", originHdr)
		h.Set("Access-Control-Expose-Headers", "Retry-After")
	}
	if r.Method == http.MethodOptions { // a CORS preflight: no body, so no source to look at
		if originHdr == "" || !isOrigin || !ss.preflightAllowed(scheme, host) {
			c.fail(w, start, reply{code: http.StatusForbidden, source: "unknown", reason: "origin"}, "origin",
				fmt.Sprintf("origin %q is not allowed by any enabled source", originHdr))
			return
		}
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Api-Key")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		c.m.request("unknown", http.StatusNoContent, time.Since(start))
		return
	}
	if r.Method != http.MethodPost {
		h.Set("Allow", "POST, OPTIONS")
		c.fail(w, start, reply{code: http.StatusMethodNotAllowed, source: "unknown", reason: "method"}, "", "use POST with a JSON body")
		return
	}
	if n := c.inflight.Add(1); n > int64(c.cfg.MaxInflight) {
		c.inflight.Add(-1)
		c.fail(w, start, reply{code: http.StatusServiceUnavailable, source: "unknown", reason: "overloaded", retryAfter: 1}, "",
			"too many requests in flight; retry after a second")
		return
	}
	defer c.inflight.Add(-1)
	if err := *c.ready.Load(); err != nil && err != errNotYet { // the brokers' state: a draining collector still serves
		// The cause (with the brokers' addresses) is in the log and /readyz, not in a public answer.
		c.fail(w, start, reply{code: http.StatusServiceUnavailable, source: "unknown", reason: "kafka-unavailable", retryAfter: 5}, "",
			"the collector cannot reach Kafka; retry after 5s")
		return
	}
	// Any Content-Type: the body must be JSON whatever it says. Browsers send text/plain to
	// avoid a preflight (and beacons always do), curl -d says form-urlencoded.
	limit := int64(c.cfg.Operators.MaxEventBytes)
	buf, err := readBody(r, limit)
	// The body is the record's value: its buffer goes back to the pool once the producer's
	// promise has fired, or at once when there is no record (released is then true).
	released := false
	release := func() {
		if !released {
			released = true
			putBody(buf)
		}
	}
	defer release()
	if err != nil {
		c.fail(w, start, reply{code: http.StatusBadRequest, source: "unknown", reason: "read"}, "", "reading the body: "+err.Error())
		return
	}
	body := *buf
	if int64(len(body)) > limit {
		c.fail(w, start, reply{code: http.StatusRequestEntityTooLarge, source: "unknown", reason: "too-large"}, "",
			fmt.Sprintf("the body is over %d bytes (--max-event-bytes); send fewer events per request", limit))
		return
	}
	now := c.now()
	p, cerr := c.dec.check(c.cfg.Topic, body, now.UnixMilli(), c.cfg.MaxEvents)
	if cerr != nil {
		src := "unknown" // a label bounded by the sources file
		if _, ok := ss.byID[cerr.source]; ok {
			src = cerr.source
		}
		c.failJSON(w, start, reply{code: http.StatusBadRequest, source: src, reason: cerr.Reason}, cerr)
		return
	}
	s, ok := ss.byID[p.source]
	switch {
	case !ok:
		c.fail(w, start, reply{code: http.StatusForbidden, source: "unknown", events: p.events, reason: "unknown-source"}, "source",
			fmt.Sprintf("source %q is not a registered event source", p.source))
		return
	case !s.enabled:
		c.fail(w, start, reply{code: http.StatusForbidden, source: s.ID, events: p.events, reason: "source-disabled"}, "source",
			fmt.Sprintf("source %q is disabled", p.source))
		return
	case originHdr != "" && !(isOrigin && s.allowsOrigin(scheme, host)):
		c.fail(w, start, reply{code: http.StatusForbidden, source: s.ID, events: p.events, reason: "origin"}, "",
			fmt.Sprintf("origin %q may not send as source %q", originHdr, p.source))
		return
	case !s.checkKey(requestKey(r)):
		h.Set("WWW-Authenticate", `Bearer realm="dwell collect"`)
		c.fail(w, start, reply{code: http.StatusUnauthorized, source: s.ID, events: p.events, reason: "api-key"}, "",
			fmt.Sprintf("source %q needs its API key: Authorization: Bearer KEY, X-Api-Key: KEY or ?key=KEY", p.source))
		return
	}
	if s.lim != nil && p.events > s.lim.Burst() {
		c.fail(w, start, reply{code: http.StatusBadRequest, source: s.ID, events: p.events, reason: "too-many-events"}, "events",
			fmt.Sprintf("events: %d in one request, over source %q's burst of %d; send fewer per request", p.events, p.source, s.lim.Burst()))
		return
	}
	if s.lim != nil && !s.lim.AllowN(now, p.events) {
		c.fail(w, start, reply{code: http.StatusTooManyRequests, source: s.ID, events: p.events, reason: "rate-limited", retryAfter: s.retryAfter(p.events, now)}, "",
			fmt.Sprintf("source %q is over its rate limit of %g events/s", p.source, s.Rate))
		return
	}
	if p.profile == "" {
		p.profile, p.minted = mintProfile(p.source, p.session), true
	}
	value := p.value(now.UnixMilli())
	rec := &kgo.Record{Key: []byte(p.profile), Value: value, Timestamp: now}
	partition, offset, rep, fired := c.produce(r.Context(), rec, s.ID, p.events)
	if !fired && &value[0] == &p.body[0] {
		released = true // the producer may still hold the body: the garbage collector frees it
	}
	if rep.code != http.StatusOK {
		c.fail(w, start, rep, "", produceMessage(rep))
		return
	}
	out := respPool.Get().(*[]byte)
	*out = appendResponse((*out)[:0], p, &operators.Record{Topic: c.cfg.Topic, Partition: partition, Offset: offset})
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	_, _ = w.Write(*out)
	if cap(*out) <= pooledBodyBytes {
		respPool.Put(out)
	}
	c.m.request(s.ID, http.StatusOK, time.Since(start))
	c.m.accepted(s.ID, p.events)
}

// Header values set on every answer, shared (net/http only reads them).
var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// pooledBodyBytes bounds the buffers kept for reuse: a rare large body is not held on to.
const pooledBodyBytes = 64 << 10

// bodyPool and respPool hold request bodies and answers, so that a request allocates neither.
var (
	bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
	respPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
)

// readBody reads r's body, up to limit+1 bytes (more is too large), into a pooled buffer.
func readBody(r *http.Request, limit int64) (*[]byte, error) {
	buf := bodyPool.Get().(*[]byte)
	b := (*buf)[:0]
	if n := r.ContentLength; n > 0 && int64(cap(b)) < min(n, limit)+1 {
		b = make([]byte, 0, min(n, limit)+1)
	}
	lr := io.LimitedReader{R: r.Body, N: limit + 1}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			*buf = b
			return buf, nil
		}
		if err != nil {
			*buf = b
			return buf, err
		}
	}
}

func putBody(buf *[]byte) {
	if cap(*buf) <= pooledBodyBytes {
		*buf = (*buf)[:0]
		bodyPool.Put(buf)
	}
}

// appendResponse appends /track's answer to b, in Tracardi's shape: the profile the tracker
// keeps, the session and source, the ids the events have in dwell (their own, else derived
// from rec's coordinates), and empty errors and warnings; byte for byte what encoding/json
// gives for response, newline included.
func appendResponse(b []byte, p *payload, rec *operators.Record) []byte {
	b = append(b, `{"profile":{"id":`...)
	b = appendJSONString(b, p.profile)
	if p.session != "" {
		b = append(b, `},"session":{"id":`...)
		b = appendJSONString(b, p.session)
	}
	b = append(b, `},"source":{"id":`...)
	b = appendJSONString(b, p.source)
	b = append(b, `},"events":[`...)
	var scratch [32]byte
	for i, id := range p.ids {
		if i > 0 {
			b = append(b, ',')
		}
		if id == nil {
			id = operators.AppendElementID(scratch[:0], rec, i) // hex: nothing to escape
		}
		b = appendJSONString(b, id)
	}
	return append(b, "],\"errors\":[],\"warnings\":[]}\n"...)
}

// appendJSONString appends s as a JSON string as encoding/json writes it (HTML characters
// escaped, invalid UTF-8 replaced): directly when s is plain printable ASCII, the common case,
// else through encoding/json.
func appendJSONString[S string | []byte](b []byte, s S) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(string(s))
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// requestKey is the API key a request carries, if any.
func requestKey(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		if scheme, k, ok := strings.Cut(a, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(k)
		}
	}
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return k
	}
	return r.URL.Query().Get("key")
}

// produce hands rec to the producer and waits for Kafka's answer (or the timeout). The
// request's own context is not the record's: a client that goes away after sending does not
// cancel a record that may already be on its way, and its answer is counted either way. fired
// is false when the wait timed out: the producer may still hold the record.
func (c *Collector) produce(ctx context.Context, rec *kgo.Record, source string, events int) (int32, int64, reply, bool) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
	defer cancel()
	wt := waiters.Get().(*waiter)
	t0 := time.Now()
	c.cl.TryProduce(pctx, rec, wt.promise)
	var res produceResult
	fired := true
	select {
	case res = <-wt.done:
		waiters.Put(wt)
	case <-pctx.Done():
		// The record may be on its way: an idempotent producer does not give up a sent batch.
		// It is answered as not known to be written; done is buffered for the late promise,
		// and the waiter is not reused.
		res.err, fired = context.DeadlineExceeded, false
	}
	rep := reply{code: http.StatusOK, source: source, events: events}
	c.m.produced(time.Since(t0), res.err == nil)
	switch err := res.err; {
	case err == nil:
		c.lastAck.Store(time.Now().UnixNano())
		if *c.ready.Load() != nil {
			c.setReady(nil)
		}
		return res.partition, res.offset, rep, fired
	case errors.Is(err, kgo.ErrMaxBuffered):
		rep.code, rep.reason, rep.retryAfter = http.StatusServiceUnavailable, "buffer-full", 1
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		rep.code, rep.reason = http.StatusRequestEntityTooLarge, "too-large"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, kgo.ErrRecordTimeout):
		rep.code, rep.reason, rep.retryAfter = http.StatusServiceUnavailable, "timeout", 5
		c.askPing()
	default:
		rep.code, rep.reason, rep.retryAfter = http.StatusServiceUnavailable, "kafka-error", 5
		c.log.Warn("produce failed", "source", source, "err", err)
	}
	rep.err = res.err
	return 0, 0, rep, fired
}

type produceResult struct {
	partition int32
	offset    int64
	err       error
}

// waiter is one request's wait for its promise, pooled: its promise func is made once.
type waiter struct {
	done    chan produceResult // buffered: a late promise never blocks the producer
	promise func(*kgo.Record, error)
}

var waiters = sync.Pool{New: func() any {
	w := &waiter{done: make(chan produceResult, 1)}
	w.promise = func(r *kgo.Record, err error) { w.done <- produceResult{r.Partition, r.Offset, err} }
	return w
}}

// produceMessage is the error a client gets when Kafka did not take its request.
func produceMessage(rep reply) string {
	switch rep.reason {
	case "buffer-full":
		return "the collector's buffer for Kafka is full; retry after " + strconv.Itoa(rep.retryAfter) + "s"
	case "too-large":
		return "Kafka refused the record as too large (" + rep.err.Error() + "); send fewer events per request"
	case "timeout":
		return "Kafka did not acknowledge the events in time; they may or may not have been written: retry after " + strconv.Itoa(rep.retryAfter) + "s"
	}
	return "Kafka did not take the events: " + rep.err.Error() + "; retry after " + strconv.Itoa(rep.retryAfter) + "s"
}

// fail answers a refused request with a JSON error: {"error": msg, "reason": ..., "field": ...}.
func (c *Collector) fail(w http.ResponseWriter, start time.Time, rep reply, field, msg string) {
	c.failJSON(w, start, rep, &checkError{Reason: rep.reason, Field: field, Message: msg})
}

func (c *Collector) failJSON(w http.ResponseWriter, start time.Time, rep reply, e *checkError) {
	h := w.Header()
	if rep.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(rep.retryAfter))
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(rep.code)
	_ = json.NewEncoder(w).Encode(e)
	c.m.refused(rep.source, rep.code, rep.reason, rep.events, time.Since(start))
	c.log.Debug("refused", "code", rep.code, "source", rep.source, "reason", rep.reason, "err", e.Message)
}
