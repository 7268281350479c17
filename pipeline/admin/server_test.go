package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/admin"
)

// fakeBackend answers for the profiles it holds on the partitions it owns; profiles are placed
// on partitions by their first byte, so tests choose.
type fakeBackend struct {
	mu        sync.Mutex
	owned     map[int32]bool
	restoring map[int32]bool
	profiles  map[string]pipeline.ProfileView
}

func partitionOf(id string) int32 { return int32(id[0]-'0') % 4 }

func (f *fakeBackend) Profile(_ context.Context, id string) (pipeline.ProfileView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := partitionOf(id)
	switch {
	case !f.owned[p]:
		return pipeline.ProfileView{}, pipeline.ErrNotOwner{Partition: p}
	case f.restoring[p]:
		return pipeline.ProfileView{}, pipeline.ErrRestoring{Partition: p}
	}
	v, ok := f.profiles[id]
	if !ok {
		return pipeline.ProfileView{}, fmt.Errorf("%w (partition %d)", pipeline.ErrUnknownProfile, p)
	}
	return v, nil
}

func (f *fakeBackend) Partitions(context.Context) (pipeline.PartitionsView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := pipeline.PartitionsView{Rules: "v1"}
	for p := range int32(4) {
		if f.owned[p] {
			v.Partitions = append(v.Partitions, pipeline.PartitionView{Partition: p, State: "running"})
		}
	}
	return v, nil
}

func (f *fakeBackend) RuleSetVersion() string { return "v1" }

// fakeOwners is a Locator over a map, counting reads.
type fakeOwners struct {
	mu    sync.Mutex
	m     map[int32]string
	reads int
}

func (o *fakeOwners) PartitionOwners(context.Context) (map[int32]string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reads++
	m := map[int32]string{}
	for p, u := range o.m {
		m[p] = u
	}
	return m, nil
}

func (o *fakeOwners) set(p int32, url string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.m[p] = url
}

// node is a fake instance: its backend behind a real admin handler on an httptest server.
type node struct {
	b   *fakeBackend
	srv *admin.Server
	ts  *httptest.Server
	reg *prometheus.Registry
}

func newNode(t *testing.T, owners admin.Locator, owned ...int32) *node {
	t.Helper()
	n := &node{b: &fakeBackend{owned: map[int32]bool{}, restoring: map[int32]bool{}, profiles: map[string]pipeline.ProfileView{}},
		reg: prometheus.NewRegistry()}
	for _, p := range owned {
		n.b.owned[p] = true
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.srv.Handler().ServeHTTP(w, r) })
	n.ts = httptest.NewServer(h)
	tr := &http.Transport{}
	srv, err := admin.New(admin.Config{Token: token, AdvertisedURL: n.ts.URL, Owners: owners, Registry: n.reg, Transport: tr,
		Now: func() time.Time { return base }}, n.b)
	if err != nil {
		t.Fatal(err)
	}
	n.srv = srv
	t.Cleanup(func() { n.ts.Close(); tr.CloseIdleConnections() })
	return n
}

func get(t *testing.T, url, tok string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: %s, body not JSON: %v", url, resp.Status, err)
	}
	return resp, body
}

func TestHandlerErrors(t *testing.T) {
	n := newNode(t, nil, 1, 2)
	n.b.profiles["1ann"] = pipeline.ProfileView{Profile: "1ann", Partition: 1}
	n.b.restoring[2] = true
	for _, c := range []struct {
		path, tok string
		code      int
		errCode   string
		header    string
	}{
		{"/v1/profiles/1ann", "", 401, admin.CodeUnauthorized, "WWW-Authenticate"},
		{"/v1/profiles/1ann", "nope", 401, admin.CodeUnauthorized, "WWW-Authenticate"},
		{"/v1/profiles/1ann", token, 200, "", admin.HeaderServedBy},
		{"/v1/profiles/1bob", token, 404, admin.CodeNotFound, ""},
		{"/v1/profiles/2cat", token, 503, admin.CodeRestoring, "Retry-After"},
		{"/v1/profiles/3dan", token, 421, admin.CodeNotOwner, ""}, // no Locator: cannot forward
		{"/v1/profiles/1%01x", token, 400, admin.CodeBadRequest, ""},
		{"/v1/profiles/" + strings.Repeat("1", 1025), token, 400, admin.CodeBadRequest, ""},
		{"/v1/nothing", token, 404, admin.CodeNotFound, ""},
		{"/debug/pprof/", token, 404, admin.CodeNotFound, ""}, // not enabled
		{"/v1/partitions", token, 200, "", ""},
		{"/v1/rules", token, 200, "", ""},
	} {
		resp, body := get(t, n.ts.URL+c.path, c.tok)
		if resp.StatusCode != c.code || c.errCode != "" && body["code"] != c.errCode || c.header != "" && resp.Header.Get(c.header) == "" {
			t.Errorf("GET %.40s (token %q): %s %v, want %d %q with %s", c.path, c.tok, resp.Status, body, c.code, c.errCode, c.header)
		}
		if resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET %.40s: Content-Type %q", c.path, resp.Header.Get("Content-Type"))
		}
	}
	if got := requests(t, n.reg, "GET /v1/profiles/{id}", "401"); got != 2 {
		t.Errorf("dwell_admin_requests_total{route=profiles,code=401} = %v, want 2", got)
	}
}

// requests reads a series of dwell_admin_requests_total.
func requests(t *testing.T, reg *prometheus.Registry, route, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dwell_admin_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no dwell_admin_requests_total{route=%q,code=%q}", route, code)
	return 0
}

// TestHandlerForwards: a profile owned elsewhere is forwarded with the caller's token and
// marked; the owner's stale answer (not_owner, a rebalance) makes the owners be read again; a
// forwarded request is not forwarded again; a dead owner is named in the error.
func TestHandlerForwards(t *testing.T) {
	owners := &fakeOwners{m: map[int32]string{}}
	a := newNode(t, owners, 0, 1)
	b := newNode(t, owners, 2, 3)
	owners.set(0, a.ts.URL)
	owners.set(1, a.ts.URL)
	owners.set(2, b.ts.URL)
	owners.set(3, b.ts.URL)
	a.b.profiles["1ann"] = pipeline.ProfileView{Profile: "1ann", Partition: 1}

	resp, body := get(t, b.ts.URL+"/v1/profiles/1ann", token)
	if resp.StatusCode != 200 || body["forwarded"] != true || body["served_by"] != a.ts.URL || resp.Header.Get(admin.HeaderServedBy) != a.ts.URL {
		t.Fatalf("forwarded: %s %v", resp.Status, body)
	}
	if resp, body := get(t, b.ts.URL+"/v1/profiles/1ann", "wrong"); resp.StatusCode != 401 {
		t.Fatalf("forwarded with a wrong token: %s %v", resp.Status, body)
	}
	if resp, body := get(t, b.ts.URL+"/v1/profiles/1bob", token); resp.StatusCode != 404 || body["code"] != admin.CodeNotFound {
		t.Fatalf("forwarded unknown: %s %v", resp.Status, body)
	}

	// Partition 1 moves to b's peer c, while b's cache still names a: a answers not_owner, b
	// reads the owners again and asks c.
	c := newNode(t, owners, 1)
	c.b.profiles["1ann"] = pipeline.ProfileView{Profile: "1ann", Partition: 1}
	a.b.mu.Lock()
	delete(a.b.owned, 1)
	a.b.mu.Unlock()
	owners.set(1, c.ts.URL)
	resp, body = get(t, b.ts.URL+"/v1/profiles/1ann", token)
	if resp.StatusCode != 200 || body["served_by"] != c.ts.URL {
		t.Fatalf("after the move: %s %v", resp.Status, body)
	}

	// A forwarded request that lands on a non-owner is refused, not forwarded again.
	req, _ := http.NewRequest(http.MethodGet, a.ts.URL+"/v1/profiles/1ann", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(admin.HeaderForwarded, b.ts.URL)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	r2, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("forwarded to a non-owner: %s, want 421", r2.Status)
	}

	// The owner is down: the error names it.
	c.ts.Close()
	resp, body = get(t, b.ts.URL+"/v1/profiles/1ann", token)
	if resp.StatusCode != http.StatusBadGateway || body["instance"] != c.ts.URL || !strings.Contains(fmt.Sprint(body["error"]), c.ts.URL) {
		t.Fatalf("owner down: %s %v", resp.Status, body)
	}

	// Nobody advertises partition 0 any more: 503 with Retry-After.
	owners.set(0, "")
	a.b.mu.Lock()
	delete(a.b.owned, 0)
	a.b.mu.Unlock()
	resp, body = get(t, a.ts.URL+"/v1/profiles/0zed", token)
	if resp.StatusCode != 503 || body["code"] != admin.CodeNoOwner || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("no owner: %s %v", resp.Status, body)
	}
}

// TestClientErrors: the client's errors say what to do.
func TestClientErrors(t *testing.T) {
	n := newNode(t, nil, 0)
	_, err := client(n.ts.URL, "wrong").Profile(context.Background(), "0x")
	if err == nil || !strings.Contains(err.Error(), "DWELL_ADMIN_TOKEN") {
		t.Fatalf("wrong token: %v", err)
	}
	url := n.ts.URL
	n.ts.Close()
	c := client(url, token)
	defer closeClient(c)
	_, err = c.Partitions(context.Background())
	if err == nil || !strings.Contains(err.Error(), "--admin-addr") {
		t.Fatalf("nothing listening: %v", err)
	}
	var ae *admin.APIError
	if errors.As(err, &ae) {
		t.Fatalf("connection refused reported as an API error: %v", err)
	}
}

// TestServerRunShutsDown: Run serves on its listener and returns nil once its context ends.
func TestServerRunShutsDown(t *testing.T) {
	srv, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Token: token}, &fakeBackend{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := admin.New(admin.Config{}, &fakeBackend{}); err == nil {
		t.Fatal("no token: want an error")
	}
}
