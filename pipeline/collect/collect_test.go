package collect

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/dwellhq/dwell/operators"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testSources = `
sources:
  - id: web
    origins: ["https://shop.example.com", "https://*.example.org"]
  - id: server
    api_key: s3cret
  - id: off
    enabled: false
    origins: ["*"]
  - id: slow
    rate: 10
    burst: 10
`

// fixture is a collector on an embedded broker with a fixed clock.
type fixture struct {
	t       *testing.T
	cluster *kfake.Cluster
	c       *Collector
	srv     *httptest.Server
	reg     *prometheus.Registry
	now     time.Time
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	ss, err := ParseSources([]byte(testSources), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, cluster: cluster, reg: prometheus.NewRegistry(), now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	cfg := Config{Brokers: cluster.ListenAddrs(), Topic: "events", Sources: ss, Now: func() time.Time { return f.now },
		PingInterval: 50 * time.Millisecond, Metrics: NewMetrics(f.reg), Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	f.c, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = f.c.Run(ctx)
	}()
	f.srv = httptest.NewServer(f.c.Handler())
	t.Cleanup(func() {
		f.srv.Close()
		cancel()
		wg.Wait()
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer ccancel()
		_ = f.c.Close(cctx) // a closed cluster never acknowledges what is buffered
	})
	return f
}

func (f *fixture) waitReady() {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for f.c.Ready() != nil {
		if time.Now().After(deadline) {
			f.t.Fatalf("never ready: %v", f.c.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// post sends body to /track with the given headers and returns the status, headers and body.
func (f *fixture) post(body string, hdr ...string) (int, http.Header, string) {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/track", strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// records reads n records from the topic.
func (f *fixture) records(n int) []*kgo.Record {
	f.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.ListenAddrs()...), kgo.ConsumeTopics("events"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		f.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			f.t.Fatalf("read %d of %d records", len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func TestTrackAccepted(t *testing.T) {
	f := newFixture(t, nil)
	f.waitReady()
	body := `{"source":{"id":"web"},"session":{"id":"s-1"},"context":{"device":"mobile"},
	  "events":[{"type":"Page View","context":{"page":{"url":"https://shop.example.com/"}}},{"id":"own-1","type":"add-to-cart","properties":{"sku":"A1"}}]}`
	code, hdr, resp := f.post(body, "Origin", "https://shop.example.com", "Content-Type", "text/plain;charset=UTF-8")
	if code != 200 {
		t.Fatalf("status %d: %s", code, resp)
	}
	if got := hdr.Get("Access-Control-Allow-Origin"); got != "https://shop.example.com" {
		t.Errorf("Access-Control-Allow-Origin %q", got)
	}
	var r response
	if err := json.Unmarshal([]byte(resp), &r); err != nil {
		t.Fatal(err)
	}
	if r.Profile.ID != mintProfile("web", "s-1") || r.Session == nil || r.Session.ID != "s-1" || r.Source.ID != "web" || len(r.Events) != 2 || r.Events[1] != "own-1" {
		t.Fatalf("response %s", resp)
	}
	// The same session's next request without a profile gets the same one (a retried first request).
	if _, _, resp2 := f.post(body); !strings.Contains(resp2, r.Profile.ID) {
		t.Fatalf("second answer %s has another profile than %s", resp2, r.Profile.ID)
	}

	recs := f.records(2)
	rec := recs[0]
	if string(rec.Key) != r.Profile.ID || !rec.Timestamp.Equal(f.now) {
		t.Errorf("record key %q, timestamp %v", rec.Key, rec.Timestamp)
	}
	// The processor reads the record as the batch the collector accepted: the minted profile,
	// and the event ids the collector answered with.
	cfg := operators.Config{}
	cfg.EnsureDefaults()
	d := operators.NewDecoder(&cfg)
	orec := operators.Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Value: rec.Value, Timestamp: rec.Timestamp.UnixMilli()}
	var batch, ev operators.Event
	if err := d.Decode(&orec, &batch); err != operators.ErrBatch {
		t.Fatalf("record is not a batch: %v", err)
	}
	if string(batch.Profile) != r.Profile.ID {
		t.Errorf("record's profile %q, answered %q", batch.Profile, r.Profile.ID)
	}
	var types, ids []string
	d.Elements(&orec, &batch, &ev, func(i int, _ []byte, ev *operators.Event, err *operators.DecodeError) {
		if err != nil {
			t.Errorf("element %d: %v", i, err)
			return
		}
		types = append(types, ev.Type)
		ids = append(ids, string(ev.ID))
		// Without times of their own, the time of receipt plus the index: the processor orders
		// events of one time by id, and a request's order must survive.
		if ev.Time != f.now.UnixMilli()+int64(i) {
			t.Errorf("element %d time %d, want the time of receipt + %d ms", i, ev.Time, i)
		}
	})
	if fmt.Sprint(types) != "[page-view add-to-cart]" || fmt.Sprint(ids) != fmt.Sprint(r.Events) {
		t.Errorf("processor reads types %v ids %v; the collector answered ids %v", types, ids, r.Events)
	}
	if got := testutil.ToFloat64(f.c.m.events.WithLabelValues("web", "accepted")); got != 4 {
		t.Errorf("accepted events %v, want 4", got)
	}
}

func TestTrackRefused(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Operators.MaxEventBytes = 4096
		c.MaxEvents = 3
	})
	f.waitReady()
	ev := `"events":[{"type":"page-view"}]`
	for _, tc := range []struct {
		name, body string
		hdr        []string
		code       int
		reason     string
		field      string
	}{
		{"malformed", `{"source":"web",` + ev, nil, 400, "malformed-json", "events"},
		{"not an object", `[1]`, nil, 400, "wrong-field-type", ""},
		{"no events", `{"source":"web","type":"page-view"}`, nil, 400, "no-events", "events"},
		{"no events nor type", `{"source":"web","session":"s"}`, nil, 400, "no-events", "events"},
		{"events an object", `{"source":"web","events":{"type":"page-view"}}`, nil, 400, "no-events", "events"},
		{"empty events", `{"source":"web","events":[]}`, nil, 400, "no-events", "events"},
		{"no source", `{` + ev + `}`, nil, 400, "missing-source", "source"},
		{"profile wrong type", `{"source":"web","profile":7,` + ev + `}`, nil, 400, "wrong-field-type", "profile"},
		{"element without type", `{"source":"web","events":[{"type":"a"},{"properties":{}}]}`, nil, 400, "missing-type", "events[1]"},
		{"element properties", `{"source":"web","events":[{"type":"a","properties":[]}]}`, nil, 400, "wrong-field-type", "events[0].properties"},
		{"system type", `{"source":"web","events":[{"type":"visit-ended"}]}`, nil, 400, "system-event-type", "events[0]"},
		{"bad time", `{"source":"web","events":[{"type":"a","time":"yesterday"}]}`, nil, 400, "invalid-time", "events[0].time"},
		{"too deep", `{"source":"web","events":[{"type":"a","properties":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70) + `}]}`, nil, 400, "too-deep", "events"},
		{"too many events", `{"source":"web","events":[{"type":"a"},{"type":"a"},{"type":"a"},{"type":"a"}]}`, nil, 400, "too-many-events", "events"},
		{"too large", `{"source":"web","events":[{"type":"a","properties":{"x":"` + strings.Repeat("x", 5000) + `"}}]}`, nil, 413, "too-large", ""},
		{"unknown source", `{"source":"nope",` + ev + `}`, nil, 403, "unknown-source", "source"},
		{"disabled source", `{"source":"off",` + ev + `}`, nil, 403, "source-disabled", "source"},
		{"origin not listed", `{"source":"web",` + ev + `}`, []string{"Origin", "https://evil.example.com"}, 403, "origin", ""},
		{"wildcard apex", `{"source":"web",` + ev + `}`, []string{"Origin", "https://example.org"}, 403, "origin", ""},
		{"browser on a server source", `{"source":"server",` + ev + `}`, []string{"Origin", "https://shop.example.com", "X-Api-Key", "s3cret"}, 403, "origin", ""},
		{"no api key", `{"source":"server",` + ev + `}`, nil, 401, "api-key", ""},
		{"wrong api key", `{"source":"server",` + ev + `}`, []string{"Authorization", "Bearer nope"}, 401, "api-key", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := f.post(tc.body, tc.hdr...)
			var e checkError
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if code != tc.code || e.Reason != tc.reason || e.Field != tc.field || e.Message == "" {
				t.Errorf("got %d %+v, want %d reason %q field %q", code, e, tc.code, tc.reason, tc.field)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	for _, ok := range [][]string{
		{"Authorization", "Bearer s3cret"}, {"Authorization", "bearer s3cret"}, {"X-Api-Key", "s3cret"},
	} {
		if code, _, body := f.post(`{"source":"server",`+ev+`}`, ok...); code != 200 {
			t.Errorf("%v: %d %s", ok, code, body)
		}
	}
	if code, _, body := f.post(`{"source":{"id":"web"},`+ev+`}`, "Origin", "https://a.b.example.org"); code != 200 {
		t.Errorf("subdomain origin: %d %s", code, body)
	}
	if got := testutil.ToFloat64(f.c.m.requests.WithLabelValues("unknown", "403", "unknown-source")); got != 1 {
		t.Errorf("unknown-source requests counted %v", got)
	}
	// A bad payload of a configured source is counted under it; an unconfigured one under unknown.
	if got := testutil.ToFloat64(f.c.m.requests.WithLabelValues("web", "400", "system-event-type")); got != 1 {
		t.Errorf("system-event-type requests of source web counted %v", got)
	}
}

func TestTrackAPIKeyInQuery(t *testing.T) {
	f := newFixture(t, nil)
	f.waitReady()
	resp, err := f.srv.Client().Post(f.srv.URL+"/track?key=s3cret", "text/plain", strings.NewReader(`{"source":"server","events":[{"type":"a"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestTrackRateLimit(t *testing.T) {
	f := newFixture(t, nil)
	f.waitReady()
	batch := `{"source":"slow","events":[` + strings.Repeat(`{"type":"a"},`, 5) + `{"type":"a"}]}` // 6 events
	if code, _, body := f.post(batch); code != 200 {
		t.Fatalf("first: %d %s", code, body)
	}
	code, hdr, body := f.post(batch) // 12 > burst 10, at the same instant
	if code != 429 || hdr.Get("Retry-After") != "1" || !strings.Contains(body, "rate-limited") {
		t.Fatalf("second: %d Retry-After %q %s", code, hdr.Get("Retry-After"), body)
	}
	over := `{"source":"slow","events":[` + strings.Repeat(`{"type":"a"},`, 10) + `{"type":"a"}]}` // 11 > burst: never
	if code, _, body := f.post(over); code != 400 || !strings.Contains(body, "burst of 10") {
		t.Fatalf("over the burst: %d %s", code, body)
	}
	f.now = f.now.Add(time.Second) // ten more tokens
	if code, _, body := f.post(batch); code != 200 {
		t.Fatalf("a second later: %d %s", code, body)
	}
	if got := testutil.ToFloat64(f.c.m.events.WithLabelValues("slow", "rate-limited")); got != 6 {
		t.Errorf("rate-limited events %v", got)
	}
}

func TestPreflight(t *testing.T) {
	f := newFixture(t, nil)
	do := func(origin string) (int, http.Header) {
		req, _ := http.NewRequest(http.MethodOptions, f.srv.URL+"/track", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	if code, h := do("https://shop.example.com"); code != 204 || h.Get("Access-Control-Allow-Origin") != "https://shop.example.com" ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Errorf("allowed origin: %d %v", code, h)
	}
	// "off" allows "*" but is disabled: its origins do not count.
	if code, h := do("https://evil.example.com"); code != 403 || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("other origin: %d %v", code, h)
	}
}

func TestTrackerJSServed(t *testing.T) {
	f := newFixture(t, nil)
	resp, err := f.srv.Client().Get(f.srv.URL + "/tracker.js")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || !strings.Contains(string(b), "sendBeacon") {
		t.Fatalf("%d %q %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
	}
}

// A collector whose brokers do not answer is not ready, and says 503 with Retry-After at once.
func TestTrackKafkaUnreachable(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Brokers = []string{"127.0.0.1:1"} })
	code, hdr, body := f.post(`{"source":"web","events":[{"type":"a"}]}`)
	for f.c.Ready() == errNotYet { // the first ping's answer
		time.Sleep(10 * time.Millisecond)
		code, hdr, body = f.post(`{"source":"web","events":[{"type":"a"}]}`)
	}
	if code != 503 || hdr.Get("Retry-After") == "" || !strings.Contains(body, "kafka-unavailable") {
		t.Fatalf("%d Retry-After %q %s", code, hdr.Get("Retry-After"), body)
	}
	if strings.Contains(body, "127.0.0.1") {
		t.Errorf("a public answer names the brokers: %s", body)
	}
	resp, err := f.srv.Client().Get(f.srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("/readyz %d", resp.StatusCode)
	}
}

// Brokers that stop answering after the collector was ready: the request waits at most the
// timeout and gets 503, never a 200 for events Kafka does not have.
func TestTrackKafkaGoesAway(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Timeout = 500 * time.Millisecond; c.PingInterval = time.Hour })
	f.waitReady()
	if code, _, body := f.post(`{"source":"web","events":[{"type":"a"}]}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	f.cluster.Close()
	code, hdr, body := f.post(`{"source":"web","events":[{"type":"a"}]}`)
	if code != 503 || hdr.Get("Retry-After") == "" {
		t.Fatalf("%d Retry-After %q %s", code, hdr.Get("Retry-After"), body)
	}
	// The failure (and the refused connections) made the collector ping at once, though its
	// interval is an hour: it is not ready, and the next request is refused without waiting.
	deadline := time.Now().Add(10 * time.Second)
	for f.c.Ready() == nil {
		if time.Now().After(deadline) {
			t.Fatal("still ready 10s after Kafka went away")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _, body := f.post(`{"source":"web","events":[{"type":"a"}]}`); code != 503 || !strings.Contains(body, "kafka-unavailable") {
		t.Fatalf("after the ping: %d %s", code, body)
	}
}

// The example in deploy/ parses, its disabled source needing no key.
func TestExampleSources(t *testing.T) {
	b, err := os.ReadFile("../../deploy/sources.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ss, err := ParseSources(b, func(string) string { return "" })
	if err != nil || fmt.Sprint(ss.IDs()) != "[web crm]" || ss.byID["crm"].enabled {
		t.Fatalf("%v %v", err, ss)
	}
}

func TestParseSourcesErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{``, "empty file"},
		{`sources: []`, "no sources listed"},
		{`sources: [{id: ""}]`, "sources[0]: id is empty"},
		{`sources: [{id: a}, {id: a}]`, `sources[1] (id "a"): the id is listed twice`},
		{`sources: [{id: a, origins: ["shop.example.com"]}]`, "want scheme://host"},
		{`sources: [{id: a, origins: ["https://a.*.com"]}]`, "wildcard may only"},
		{`sources: [{id: a, api_key: x, api_key_env: Y}]`, "not both"},
		{`sources: [{id: a, api_key_env: DWELL_TEST_NO_SUCH}]`, "DWELL_TEST_NO_SUCH is empty or unset"},
		{`sources: [{id: a, rate: -1}]`, "must not be negative"},
		{`sources: [{id: a, orgins: ["*"]}]`, "field orgins not found"},
	} {
		_, err := ParseSources([]byte(tc.yaml), func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
	ss, err := ParseSources([]byte(`sources: [{id: a, api_key_env: K, rate: 5}]`), func(k string) string { return map[string]string{"K": "v"}[k] })
	if err != nil || string(ss.byID["a"].key) != "v" || ss.byID["a"].lim.Burst() != defaultBurst {
		t.Fatalf("%v %+v", err, ss)
	}
}

func TestSetSourcesKeepsLimiters(t *testing.T) {
	f := newFixture(t, nil)
	old := f.c.Sources().byID["slow"].lim
	ss, err := ParseSources([]byte(testSources+"  - id: new\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.c.SetSources(ss)
	if f.c.Sources().byID["slow"].lim != old {
		t.Error("an unchanged source's limiter was replaced")
	}
	ss, _ = ParseSources([]byte(strings.Replace(testSources, "rate: 10", "rate: 20", 1)), nil)
	f.c.SetSources(ss)
	if f.c.Sources().byID["slow"].lim == old {
		t.Error("a changed limit kept the old limiter")
	}
}

// Drain turns /readyz red while /track still accepts: load balancers stop sending first.
func TestDrain(t *testing.T) {
	f := newFixture(t, nil)
	f.waitReady()
	f.c.Drain()
	resp, err := f.srv.Client().Get(f.srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), "shutting down") {
		t.Fatalf("/readyz while draining: %d %s", resp.StatusCode, b)
	}
	if code, _, body := f.post(`{"source":"web","events":[{"type":"a"}]}`); code != 200 {
		t.Fatalf("/track while draining: %d %s", code, body)
	}
}

// TestAppendResponse: the answer appended by hand is encoding/json's, byte for byte, also for
// ids that need escaping (quotes, HTML characters, control characters, non-ASCII, invalid
// UTF-8, U+2028), with and without a session, with own and derived event ids.
func TestAppendResponse(t *testing.T) {
	rec := &operators.Record{Topic: "events", Partition: 2, Offset: 41}
	for _, p := range []*payload{
		{profile: "p-1", source: "web", session: "s-1", ids: [][]byte{nil, []byte("own-1"), nil}},
		{profile: `a"b\c`, source: "<web>&", ids: [][]byte{[]byte("tab\there"), []byte("é\u2028"), []byte("bad\xffutf8")}},
		{profile: "0c5b0a2e-1f4e-8c1a-9d2b-3e4f5a6b7c8d", source: "server", session: "\x01", ids: [][]byte{nil}},
	} {
		want := response{Profile: ref{p.profile}, Source: ref{p.source}, Events: make([]string, len(p.ids)), Errors: []string{}, Warnings: []string{}}
		if p.session != "" {
			want.Session = &ref{p.session}
		}
		for i, id := range p.ids {
			if id == nil {
				id = operators.AppendElementID(nil, rec, i)
			}
			want.Events[i] = string(id)
		}
		var buf strings.Builder
		if err := json.NewEncoder(&buf).Encode(want); err != nil {
			t.Fatal(err)
		}
		if got := string(appendResponse(nil, p, rec)); got != buf.String() {
			t.Errorf("appendResponse:\n got %s\nwant %s", got, buf.String())
		}
	}
}
