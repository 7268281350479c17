package deliver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/dwellhq/dwell/pipeline/deliver"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hook is a webhook receiver that records every attempt.
type hook struct {
	mu        sync.Mutex
	n         int
	attempts  map[string][]attempt // by the value's "id" (or the key when it has none)
	delivered map[string]int       // 200s the client was still waiting for
	onOK      func(delivered int)  // called after each 200, outside the lock
	// flaky turns on the failures: every 3rd request 503, every 13th 429 with Retry-After: 1,
	// every 11th slower than the client's timeout.
	flaky bool
}

type attempt struct {
	key    string
	n      string // Dwell-Attempt
	at     time.Time
	status int
}

func newHook(flaky bool) *hook {
	return &hook{attempts: map[string][]attempt{}, delivered: map[string]int{}, flaky: flaky}
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var v struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &v)
	key := r.Header.Get("Idempotency-Key")
	id := v.ID
	if id == "" {
		id = key
	}
	h.mu.Lock()
	h.n++
	n := h.n
	status := http.StatusOK
	switch {
	case strings.HasSuffix(r.URL.Path, "/reject"):
		status = http.StatusBadRequest
	case strings.HasSuffix(r.URL.Path, "/down"):
		status = http.StatusServiceUnavailable
	case h.flaky && n%3 == 0:
		status = http.StatusServiceUnavailable
	case h.flaky && n%13 == 0:
		status = http.StatusTooManyRequests
	case h.flaky && n%11 == 0:
		status = -1 // slow
	}
	h.attempts[id] = append(h.attempts[id], attempt{key: key, n: r.Header.Get("Dwell-Attempt"), at: time.Now(), status: status})
	h.mu.Unlock()
	switch status {
	case -1:
		select { // beyond the client's attempt timeout
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
		return
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
	case http.StatusBadRequest:
		http.Error(w, "bad notification: no such template", status)
		return
	}
	w.WriteHeader(status)
	if status != http.StatusOK {
		return
	}
	h.mu.Lock()
	h.delivered[id]++
	d := len(h.delivered)
	f := h.onOK
	h.mu.Unlock()
	if f != nil {
		f(d)
	}
}

func (h *hook) deliveredIDs() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.delivered))
	for k, v := range h.delivered {
		out[k] = v
	}
	return out
}

// notification is a record as rules' notify action writes it.
func notification(id, channel string) []byte {
	return fmt.Appendf(nil, `{"body":"Your cart is waiting","channel":%q,"event_id":"e-%s","event_type":"cart-abandoned",`+
		`"id":%q,"key":"p1","params":{},"rule":"cart","subject":"Hi","time":"2026-01-01T00:00:00Z","to":["a@example.com"]}`,
		channel, id, id)
}

func produce(t *testing.T, brokers []string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func committed(t *testing.T, brokers []string, group, topic string) (ends, commits map[int32]int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	lo, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	fo, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	ends, commits = map[int32]int64{}, map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) {
		ends[o.Partition] = o.Offset
		if c, ok := fo.Lookup(topic, o.Partition); ok {
			commits[o.Partition] = c.At
		}
	})
	return ends, commits
}

func caughtUp(t *testing.T, brokers []string, group, topic string) bool {
	ends, commits := committed(t, brokers, group, topic)
	for p, e := range ends {
		if e > 0 && commits[p] < e {
			return false
		}
	}
	return true
}

func consumeAll(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	if len(out) < n {
		t.Fatalf("%s: %d records, want %d", topic, len(out), n)
	}
	return out
}

func header(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

type testRig struct {
	env    *pipelinetest.Env
	queue  string
	dlq    string
	server *httptest.Server
	client *http.Client
}

func newRig(t *testing.T, h http.Handler) *testRig {
	env := pipelinetest.New(t, 3, []string{"dwell.queue.q", "dwell.dlq"})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client := &http.Client{}
	t.Cleanup(client.CloseIdleConnections)
	return &testRig{env: env, queue: env.Name("dwell.queue.q"), dlq: env.Name("dwell.dlq"), server: srv, client: client}
}

func (r *testRig) config(reg prometheus.Registerer) deliver.Config {
	return deliver.Config{
		Brokers:   r.env.Brokers,
		Queue:     "q",
		Topic:     r.queue,
		Group:     r.env.Name("dwell-deliver-q"),
		DeadTopic: r.dlq,
		Endpoints: deliver.Endpoints{
			Default: &deliver.Endpoint{URL: r.server.URL + "/hook", Headers: map[string]string{"Authorization": "Bearer t"}},
			Channels: map[string]deliver.Endpoint{
				"reject": {URL: r.server.URL + "/reject"},
				"down":   {URL: r.server.URL + "/down"},
			},
		},
		Concurrency:    4,
		AttemptTimeout: 300 * time.Millisecond,
		MaxAttempts:    20,
		MaxElapsed:     8 * time.Second,
		InitialBackoff: 5 * time.Millisecond,
		MaxBackoff:     50 * time.Millisecond,
		DrainTimeout:   3 * time.Second,
		CommitInterval: 50 * time.Millisecond,
		HTTPClient:     r.client,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:        deliver.NewMetrics(reg),
	}
}

// start runs a deliverer until the returned stop is called; stop returns Run's error.
func start(t *testing.T, cfg deliver.Config) (stop func() error) {
	t.Helper()
	d, err := deliver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
			_ = d.Close()
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// TestDeliverFlakyEndpoint delivers notifications to a receiver that fails every third
// request, asks for a pause with 429 + Retry-After, and answers some too slowly; rejects some
// for good; and is down for others.
func TestDeliverFlakyEndpoint(t *testing.T) {
	h := newHook(true)
	rig := newRig(t, h)
	const good = 45
	var recs []*kgo.Record
	for i := range good {
		recs = append(recs, &kgo.Record{Topic: rig.queue, Key: []byte("p" + strconv.Itoa(i%7)),
			Value: notification(fmt.Sprintf("n%02d", i), "email")})
	}
	for i := range 3 {
		recs = append(recs, &kgo.Record{Topic: rig.queue, Key: []byte("p1"), Value: notification(fmt.Sprintf("r%d", i), "reject"),
			Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-abc-01")}}})
	}
	recs = append(recs,
		&kgo.Record{Topic: rig.queue, Key: []byte("p2"), Value: notification("down", "down")},
		&kgo.Record{Topic: rig.queue, Key: []byte("p3"), Value: []byte("not json")},
		// No id: the key is topic/partition/offset.
		&kgo.Record{Topic: rig.queue, Key: []byte("p4"), Value: []byte(`{"type":"cart-abandoned","profile":"p4"}`)},
		&kgo.Record{Topic: rig.queue, Key: []byte("p5"), Value: []byte(`{"type":"cart-abandoned","profile":"p5"}`)},
	)
	produce(t, rig.env.Brokers, recs...)

	reg := prometheus.NewRegistry()
	cfg := rig.config(reg)
	cfg.MaxAttempts = 30
	stop := start(t, cfg)
	pipelinetest.WaitFor(t, "every record handled and committed", 30*time.Second, func() bool {
		return len(h.deliveredIDs()) >= good+2 && caughtUp(t, rig.env.Brokers, cfg.Group, rig.queue)
	})

	// Metrics, scraped over HTTP as Prometheus would.
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer ms.Close()
	resp, err := http.Get(ms.URL)
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	delivered := h.deliveredIDs()
	for i := range good {
		if id := fmt.Sprintf("n%02d", i); delivered[id] == 0 {
			t.Errorf("%s never delivered", id)
		}
	}
	h.mu.Lock()
	keys := map[string]string{} // key -> id
	sawRetryAfter := false
	for id, as := range h.attempts {
		for i, a := range as {
			if a.key != as[0].key {
				t.Errorf("%s: Idempotency-Key changed between attempts: %q then %q", id, as[0].key, a.key)
			}
			if a.n != strconv.Itoa(i+1) {
				t.Errorf("%s: attempt %d says Dwell-Attempt %s", id, i+1, a.n)
			}
			if a.status == http.StatusTooManyRequests && i+1 < len(as) {
				sawRetryAfter = true
				if gap := as[i+1].at.Sub(a.at); gap < 950*time.Millisecond {
					t.Errorf("%s: retried %s after a 429 with Retry-After: 1", id, gap)
				}
			}
		}
		if other, ok := keys[as[0].key]; ok {
			t.Errorf("records %s and %s share the Idempotency-Key %q", id, other, as[0].key)
		}
		keys[as[0].key] = id
		if strings.HasPrefix(id, "n") && as[0].key != id {
			t.Errorf("%s: Idempotency-Key %q, want the record's id", id, as[0].key)
		}
		if len(as) > 1 && id == "r0" {
			t.Errorf("a 400 was retried: %d attempts", len(as))
		}
	}
	if got := len(h.attempts["down"]); got != cfg.MaxAttempts {
		t.Errorf("down: %d attempts, want %d", got, cfg.MaxAttempts)
	}
	h.mu.Unlock()
	if !sawRetryAfter {
		t.Error("no 429 was retried; the test did not exercise Retry-After")
	}
	okey := regexp.MustCompile(`^` + regexp.QuoteMeta(rig.queue) + `/[0-2]/[0-9]+$`)
	nOffsetKeys := 0
	for k := range keys {
		if okey.MatchString(k) {
			nOffsetKeys++
		}
	}
	if nOffsetKeys != 2 {
		t.Errorf("%d topic/partition/offset keys, want 2 (the records without an id): %v", nOffsetKeys, keys)
	}

	// Dead letters: the three 400s, the malformed value; "down" ran out of attempts.
	dead := consumeAll(t, rig.env.Brokers, rig.dlq, 5)
	reasons := map[string]int{}
	for _, r := range dead {
		reason := header(r, "dwell-reason")
		reasons[reason]++
		if header(r, "dwell-topic") != rig.queue {
			t.Errorf("dwell-topic %q, want %q", header(r, "dwell-topic"), rig.queue)
		}
		for _, k := range []string{"dwell-partition", "dwell-offset"} {
			if _, err := strconv.Atoi(header(r, k)); err != nil {
				t.Errorf("%s %q", k, header(r, k))
			}
		}
		switch reason {
		case deliver.ReasonRejected:
			if d := header(r, "dwell-detail"); !strings.HasPrefix(d, "HTTP 400: bad notification") {
				t.Errorf("rejected detail %q", d)
			}
			if header(r, "traceparent") != "00-abc-01" {
				t.Error("the original headers were not kept")
			}
			if !strings.Contains(string(r.Value), `"channel":"reject"`) {
				t.Errorf("dead letter value %s is not the original", r.Value)
			}
		case deliver.ReasonExhausted:
			if string(r.Key) != "p2" {
				t.Errorf("exhausted dead letter key %q", r.Key)
			}
		}
	}
	if reasons[deliver.ReasonRejected] != 3 || reasons[deliver.ReasonMalformedJSON] != 1 || reasons[deliver.ReasonExhausted] != 1 {
		t.Errorf("dead letters by reason: %v", reasons)
	}

	for _, want := range []string{
		`dwell_deliver_delivered_total{queue="q"} 47`,
		`dwell_deliver_failed_total{queue="q",reason="webhook-rejected"} 3`,
		`dwell_deliver_failed_total{queue="q",reason="malformed-json"} 1`,
		`dwell_deliver_failed_total{queue="q",reason="webhook-exhausted"} 1`,
		`dwell_deliver_latency_seconds_count{queue="q"} 47`,
		`dwell_deliver_consumer_lag_records{partition="0",queue="q"} 0`,
	} {
		if !strings.Contains(string(scrape), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !regexp.MustCompile(`dwell_deliver_retries_total\{queue="q"\} [1-9]`).Match(scrape) {
		t.Error("metrics show no retries")
	}
}

// TestDeliverRestartMissesNothing stops a deliverer after some deliveries, checks that no
// committed offset passes an undelivered record, and lets a second one finish the queue.
func TestDeliverRestartMissesNothing(t *testing.T) {
	h := newHook(false)
	rig := newRig(t, h)
	const n = 150
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: rig.queue, Key: []byte("p" + strconv.Itoa(i%11)),
			Value: notification(fmt.Sprintf("n%03d", i), "")})
	}
	produce(t, rig.env.Brokers, recs...)
	where := map[string][2]int64{} // id -> partition, offset
	for _, r := range consumeAll(t, rig.env.Brokers, rig.queue, n) {
		var v struct{ ID string }
		_ = json.Unmarshal(r.Value, &v)
		where[v.ID] = [2]int64{int64(r.Partition), r.Offset}
	}

	cfg := rig.config(prometheus.NewRegistry())
	stopped := make(chan struct{})
	var stopOnce sync.Once
	h.mu.Lock()
	h.onOK = func(d int) {
		if d >= 40 {
			stopOnce.Do(func() { close(stopped) })
		}
	}
	h.mu.Unlock()
	stop := start(t, cfg)
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("40 deliveries did not happen")
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	first := h.deliveredIDs()
	if len(first) == n {
		t.Fatal("the first deliverer delivered everything; the test did not interrupt it")
	}
	_, commits := committed(t, rig.env.Brokers, cfg.Group, rig.queue)
	for id, w := range where {
		if c, ok := commits[int32(w[0])]; ok && w[1] < c && first[id] == 0 {
			t.Errorf("%s (partition %d offset %d) is below the committed offset %d but was never delivered", id, w[0], w[1], c)
		}
	}

	cfg2 := rig.config(prometheus.NewRegistry())
	stop2 := start(t, cfg2)
	pipelinetest.WaitFor(t, "the second deliverer to finish", 20*time.Second, func() bool {
		return len(h.deliveredIDs()) == n && caughtUp(t, rig.env.Brokers, cfg.Group, rig.queue)
	})
	if err := stop2(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	all := h.deliveredIDs()
	dups := 0
	for id := range where {
		if all[id] == 0 {
			t.Errorf("%s never delivered", id)
		}
		dups += all[id] - 1
	}
	t.Logf("first run delivered %d, duplicates after the restart %d", len(first), dups)
}

// TestDeliverDrainsOnStop: a delivery in flight when Run's context ends completes and is
// committed.
func TestDeliverDrainsOnStop(t *testing.T) {
	release := make(chan struct{})
	var got sync.WaitGroup
	got.Add(1)
	var once sync.Once
	srv := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(got.Done)
		<-release
		w.WriteHeader(http.StatusNoContent)
	})
	rig := newRig(t, srv)
	produce(t, rig.env.Brokers, &kgo.Record{Topic: rig.queue, Partition: 0, Key: []byte("p1"), Value: notification("a", "")})
	cfg := rig.config(prometheus.NewRegistry())
	cfg.AttemptTimeout = 5 * time.Second
	stop := start(t, cfg)
	got.Wait() // the request is in flight
	errc := make(chan error, 1)
	go func() { errc <- stop() }()
	time.Sleep(100 * time.Millisecond)
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !caughtUp(t, rig.env.Brokers, cfg.Group, rig.queue) {
		t.Error("the delivery in flight at shutdown was not committed")
	}
}

func TestConfigValidate(t *testing.T) {
	c := deliver.Config{Brokers: []string{"x:9092"}, Queue: "q"}
	c.EnsureDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "no endpoint") {
		t.Errorf("no endpoint: %v", err)
	}
	if c.Topic != "dwell.queue.q" || c.Group != "dwell-deliver-q" || c.DeadTopic != "dwell.dlq" {
		t.Errorf("defaults: %+v", c)
	}
}

// TestDefaultConfig: EnsureDefaults fills a zero Config with DefaultConfig's values, the ones
// the CLI's flags start from.
func TestDefaultConfig(t *testing.T) {
	var c deliver.Config
	c.EnsureDefaults()
	if want := deliver.DefaultConfig(); c.DeadTopic != want.DeadTopic || c.Concurrency != want.Concurrency || c.MaxPending != want.MaxPending ||
		c.AttemptTimeout != want.AttemptTimeout || c.MaxAttempts != want.MaxAttempts || c.MaxElapsed != want.MaxElapsed ||
		c.InitialBackoff != want.InitialBackoff || c.MaxBackoff != want.MaxBackoff || c.DrainTimeout != want.DrainTimeout ||
		c.CommitInterval != want.CommitInterval {
		t.Errorf("%+v, want the values of %+v", c, want)
	}
}

func TestParseEndpoints(t *testing.T) {
	env := map[string]string{"TOKEN": "s3cret"}
	e, err := deliver.ParseEndpoints([]byte(`
default: https://hooks.example.com/dwell
channels:
  slack: https://hooks.slack.com/services/T0/B0/X
  email:
    url: https://mailer.internal/send
    headers: {Authorization: "Bearer ${TOKEN}"}
`), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if e.For("").URL != "https://hooks.example.com/dwell" || e.For("sms").URL != "https://hooks.example.com/dwell" {
		t.Errorf("default: %+v", e.Default)
	}
	if ep := e.For("email"); ep.URL != "https://mailer.internal/send" || ep.Headers["Authorization"] != "Bearer s3cret" {
		t.Errorf("email: %+v", ep)
	}
	for _, bad := range []string{"", "default: ftp://x/y", "channels: {a: {url: 'no'}}", "defualt: https://x"} {
		if _, err := deliver.ParseEndpoints([]byte(bad), nil); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestDeliverRebalance adds a second deliverer to the group mid-run: the first drains and
// commits the partitions it gives up, and together they deliver everything. Until the second
// one has partitions, the receiver is slow (but never so slow that draining a revoked partition
// waits long), so the first cannot finish the queue alone however fast the machine is.
func TestDeliverRebalance(t *testing.T) {
	h := newHook(false)
	var logB lockedBuffer
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(logB.String(), "partitions assigned") {
			time.Sleep(25 * time.Millisecond)
		}
		h.ServeHTTP(w, r)
	})
	rig := newRig(t, slow)
	const n = 240
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: rig.queue, Key: []byte("p" + strconv.Itoa(i%13)),
			Value: notification(fmt.Sprintf("n%03d", i), "")})
	}
	produce(t, rig.env.Brokers, recs...)
	cfg := rig.config(prometheus.NewRegistry())
	cfg.Concurrency = 2
	var logA lockedBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logA, nil))
	stopA := start(t, cfg)
	pipelinetest.WaitFor(t, "the first deliverer to start", 10*time.Second, func() bool { return len(h.deliveredIDs()) >= 30 })
	cfgB := rig.config(prometheus.NewRegistry())
	cfgB.Logger = slog.New(slog.NewTextHandler(&logB, nil))
	stopB := start(t, cfgB)
	pipelinetest.WaitFor(t, "both to finish", 30*time.Second, func() bool {
		return len(h.deliveredIDs()) == n && caughtUp(t, rig.env.Brokers, cfg.Group, rig.queue)
	})
	if err := errors.Join(stopA(), stopB()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logA.String(), "partitions revoked") {
		t.Errorf("the first deliverer gave up no partition:\n%s", logA.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDeliverPausesBehindAStuckRecord: a record that keeps failing holds its partition's
// commit back; the partition pauses at MaxPending instead of running ahead without bound, and
// resumes once the record is delivered.
func TestDeliverPausesBehindAStuckRecord(t *testing.T) {
	h := newHook(false)
	var healed atomic.Bool
	srv := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Idempotency-Key") == "stuck" && !healed.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		h.ServeHTTP(w, r)
	})
	rig := newRig(t, srv)
	recs := []*kgo.Record{{Topic: rig.queue, Key: []byte("p1"), Value: notification("stuck", "")}}
	for i := range 60 {
		recs = append(recs, &kgo.Record{Topic: rig.queue, Key: []byte("p1"), Value: notification(fmt.Sprintf("n%02d", i), "")})
	}
	produce(t, rig.env.Brokers, recs...)
	cfg := rig.config(prometheus.NewRegistry())
	cfg.MaxPending = 10
	cfg.MaxAttempts = 1000
	stop := start(t, cfg)
	pipelinetest.WaitFor(t, "the records behind the stuck one to be delivered up to the bound", 10*time.Second, func() bool {
		return len(h.deliveredIDs()) >= cfg.MaxPending-cfg.Concurrency
	})
	time.Sleep(300 * time.Millisecond)
	if n := len(h.deliveredIDs()); n > cfg.MaxPending+2*cfg.Concurrency {
		t.Errorf("%d records delivered behind a stuck one with MaxPending %d: the partition did not pause", n, cfg.MaxPending)
	}
	if _, commits := committed(t, rig.env.Brokers, cfg.Group, rig.queue); len(commits) > 0 {
		for p, c := range commits {
			if c > 0 {
				t.Errorf("partition %d committed up to %d past the stuck record", p, c)
			}
		}
	}
	healed.Store(true)
	pipelinetest.WaitFor(t, "everything after the stuck record heals", 10*time.Second, func() bool {
		return len(h.deliveredIDs()) == len(recs) && caughtUp(t, rig.env.Brokers, cfg.Group, rig.queue)
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestDeliverRetryAfterBeyondBudget: a Retry-After longer than what is left of MaxElapsed
// dead-letters at once instead of holding the partition.
func TestDeliverRetryAfterBeyondBudget(t *testing.T) {
	var calls atomic.Int32
	rig := newRig(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	produce(t, rig.env.Brokers, &kgo.Record{Topic: rig.queue, Key: []byte("p1"), Value: notification("a", "")})
	cfg := rig.config(prometheus.NewRegistry())
	stop := start(t, cfg)
	dead := consumeAll(t, rig.env.Brokers, rig.dlq, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if r := header(dead[0], "dwell-reason"); r != deliver.ReasonExhausted || calls.Load() != 1 ||
		!strings.Contains(header(dead[0], "dwell-detail"), "next in 1m0s would pass 8s; last: HTTP 429") {
		t.Errorf("%d calls; dead letter %s: %s", calls.Load(), r, header(dead[0], "dwell-detail"))
	}
}
