package admin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/admin"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	partitions = 4
	token      = "s3cret"
)

// base is the event time the tests' events start at; the processors' clock stays there, so
// that idle advancement never ends their visits.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// cluster is a Kafka with dwell's topics, and what instances on it share.
type cluster struct {
	k      *pipelinetest.Env
	input  string
	group  string
	topics pipeline.Topics
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	d := pipeline.DefaultTopics()
	k := pipelinetest.New(t, partitions, []string{"events", d.System, d.Events, d.Late, d.Dead, d.Changelog, d.Savepoints, d.SavepointData},
		pipelinetest.Compacted(d.Changelog))
	return &cluster{k: k, input: k.Name("events"), group: k.Name("dwell"),
		topics: pipeline.Topics{System: k.Name(d.System), Events: k.Name(d.Events), Late: k.Name(d.Late), Dead: k.Name(d.Dead),
			Changelog: k.Name(d.Changelog), Savepoints: k.Name(d.Savepoints), SavepointData: k.Name(d.SavepointData)}}
}

// instance is a Live processor with its admin server, both running.
type instance struct {
	live  *pipeline.Live
	url   string
	srv   *admin.Server
	stop  context.CancelFunc
	done  chan error // Run's error, then the server's
	alive atomic.Bool
}

func (c *cluster) start(t testing.TB, name string, opts ...func(*pipeline.LiveConfig)) *instance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	cfg := pipeline.LiveConfig{
		Brokers: c.k.Brokers, Group: c.group, Inputs: []string{c.input}, Topics: c.topics, DataDir: name, FS: vfs.NewMem(),
		Now: func() time.Time { return base }, PollTimeout: 50 * time.Millisecond, AdvertisedAdminURL: url,
		Operators: operators.Config{MaxOutOfOrderness: time.Millisecond},
	}
	for _, o := range opts {
		o(&cfg)
	}
	l, err := pipeline.NewLive(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	srv, err := admin.New(admin.Config{Listener: ln, Token: token, AdvertisedURL: url, Owners: l}, l)
	if err != nil {
		ln.Close()
		_ = l.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{live: l, url: url, srv: srv, stop: cancel, done: make(chan error, 2)}
	go func() { in.done <- l.Run(ctx) }()
	go func() { in.done <- srv.Run(ctx) }()
	in.alive.Store(true)
	t.Cleanup(func() { in.close(t) })
	return in
}

// close stops the instance (once): its processor leaves the group.
func (in *instance) close(t testing.TB) {
	t.Helper()
	if !in.alive.CompareAndSwap(true, false) {
		return
	}
	in.stop()
	for range 2 {
		if err := <-in.done; err != nil {
			t.Error(err)
		}
	}
	if err := in.live.Close(); err != nil {
		t.Error(err)
	}
}

// produce writes n events of profile, a second apart from at, keyed by profile.
func (c *cluster) produce(t testing.TB, profile string, at time.Time, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.k.Brokers...), kgo.DefaultProduceTopic(c.input),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range n {
		ts := at.Add(time.Duration(i) * time.Second)
		v := fmt.Sprintf(`{"id":"%s-%d","type":"page-view","time":%d,"profile":%q,"session":"s-%s"}`, profile, ts.UnixMilli(), ts.UnixMilli(), profile, profile)
		recs = append(recs, &kgo.Record{Key: []byte(profile), Value: []byte(v), Timestamp: ts})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func client(url, tok string) *admin.Client {
	return &admin.Client{BaseURL: url, Token: tok, HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}}
}

func closeClient(c *admin.Client) { c.HTTP.Transport.(*http.Transport).CloseIdleConnections() }

// owned is the partitions an instance's admin API lists, all running; nil if one is not.
func owned(t testing.TB, c *admin.Client) []int32 {
	t.Helper()
	pv, err := c.Partitions(context.Background())
	if err != nil {
		return nil
	}
	var ps []int32
	for _, p := range pv.Partitions {
		if p.State != "running" {
			return nil
		}
		ps = append(ps, p.Partition)
	}
	return ps
}

// profileOn returns a profile id whose partition is one of ps.
func profileOn(ps []int32) string {
	for i := 0; ; i++ {
		id := fmt.Sprintf("profile-%d", i)
		if slices.Contains(ps, pipeline.KafkaPartition([]byte(id), partitions)) {
			return id
		}
	}
}

// TestForwardingAcrossInstances runs two instances of a group with their admin APIs: a query
// asked to the instance that does not own the profile is forwarded to the one that does, and
// after that one leaves the group, the other answers from its own (restored) state.
func TestForwardingAcrossInstances(t *testing.T) {
	c := newCluster(t)
	a, b := c.start(t, "a"), c.start(t, "b")
	ca, cb := client(a.url, token), client(b.url, token)
	defer closeClient(ca)
	defer closeClient(cb)

	var ownedA, ownedB []int32
	pipelinetest.WaitFor(t, "the partitions split between a and b, all running", 60*time.Second, func() bool {
		ownedA, ownedB = owned(t, ca), owned(t, cb)
		all := append(slices.Clone(ownedA), ownedB...)
		slices.Sort(all)
		return len(ownedA) > 0 && len(ownedB) > 0 && slices.Equal(all, []int32{0, 1, 2, 3})
	})
	id := profileOn(ownedA)
	c.produce(t, id, base, 3)

	// The owner answers once it has processed the events (the last waits for the watermark).
	var direct *admin.ProfileResponse
	pipelinetest.WaitFor(t, "a to answer for "+id, 60*time.Second, func() bool {
		v, err := ca.Profile(context.Background(), id)
		if err == nil && v.Visit != nil && v.Visit.Events >= 2 {
			direct = v
			return true
		}
		return false
	})
	if direct.Forwarded || direct.ServedBy != a.url || direct.Partition != pipeline.KafkaPartition([]byte(id), partitions) {
		t.Fatalf("a's own answer: forwarded %v, served by %s, partition %d", direct.Forwarded, direct.ServedBy, direct.Partition)
	}

	// Asked to b, which does not own it: forwarded to a.
	fwd, err := cb.Profile(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !fwd.Forwarded || fwd.ServedBy != a.url || fwd.Visit == nil || fwd.Visit.ID != direct.Visit.ID {
		t.Fatalf("b's answer: forwarded %v, served by %s (want %s), visit %+v (want id %s)", fwd.Forwarded, fwd.ServedBy, a.url, fwd.Visit, direct.Visit.ID)
	}
	req, _ := http.NewRequest(http.MethodGet, b.url+"/v1/profiles/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := cb.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(admin.HeaderServedBy); got != a.url {
		t.Fatalf("%s: %q, want %q", admin.HeaderServedBy, got, a.url)
	}

	// a leaves: b owns every partition and answers itself, from the state a wrote.
	a.close(t)
	pipelinetest.WaitFor(t, "b to answer for "+id+" itself", 60*time.Second, func() bool {
		v, err := cb.Profile(context.Background(), id)
		if err != nil {
			return false
		}
		if v.Forwarded || v.ServedBy != b.url {
			return false
		}
		if v.Visit == nil || v.Visit.ID != direct.Visit.ID {
			t.Fatalf("b after the rebalance: visit %+v, want id %s", v.Visit, direct.Visit.ID)
		}
		return true
	})
	if ps := owned(t, cb); !slices.Equal(ps, []int32{0, 1, 2, 3}) {
		t.Fatalf("b owns %v after a left, want every partition", ps)
	}
}

// TestAPIErrors checks authorization and the errors' codes on a running instance, and that
// profiles evicted from memory are answered from the state store.
func TestAPIErrors(t *testing.T) {
	c := newCluster(t)
	a := c.start(t, "a", func(cfg *pipeline.LiveConfig) { cfg.MaxCachedKeys = 1 })
	ca := client(a.url, token)
	defer closeClient(ca)
	pipelinetest.WaitFor(t, "a to own every partition", 60*time.Second, func() bool {
		return slices.Equal(owned(t, ca), []int32{0, 1, 2, 3})
	})

	for _, tok := range []string{"", "wrong"} {
		req, _ := http.NewRequest(http.MethodGet, a.url+"/v1/partitions", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := ca.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" ||
			resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("token %q: %s, WWW-Authenticate %q, Content-Type %q", tok, resp.Status, resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Content-Type"))
		}
	}
	_, err := client(a.url, "wrong").Partitions(context.Background())
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := ca.Profile(context.Background(), "nobody"); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("unknown profile: %v, want not found", err)
	}
	ids := []string{"ann", "bob", "cat", "dan", "eve", "fay"}
	for _, id := range ids {
		c.produce(t, id, base, 3)
	}
	for _, id := range ids {
		pipelinetest.WaitFor(t, "a to answer for "+id, 60*time.Second, func() bool {
			v, err := ca.Profile(context.Background(), id)
			return err == nil && v.Visit != nil && v.Visit.Events >= 2
		})
	}
	// Six profiles on four partitions of at most one key in memory each: some are evicted
	// once their cycle has committed, and are answered from Pebble.
	pipelinetest.WaitFor(t, "keys evicted", 60*time.Second, func() bool {
		pv, err := ca.Partitions(context.Background())
		if err != nil {
			return false
		}
		n := 0
		for _, p := range pv.Partitions {
			n += p.Keys
		}
		return n < len(ids)
	})
	cold := 0
	for _, id := range ids {
		v, err := ca.Profile(context.Background(), id)
		if err != nil || v.Visit == nil || v.Visit.Events < 2 {
			t.Fatalf("%s: %+v, %v", id, v, err)
		}
		if !v.InMemory {
			cold++
		}
	}
	if cold == 0 {
		t.Fatal("every profile answered from memory after keys were evicted")
	}
	// Every partition that received the stream names its offsets, and its lag reaches zero.
	pipelinetest.WaitFor(t, "no lag", 60*time.Second, func() bool {
		pv, err := ca.Partitions(context.Background())
		if err != nil {
			return false
		}
		with := 0
		for _, p := range pv.Partitions {
			if n, ok := p.Offsets[c.input]; ok && n > 0 {
				with++
				if lag, ok := p.Lag[c.input]; !ok || lag != 0 {
					return false
				}
			}
		}
		return with > 0
	})
	rules, err := ca.Rules(context.Background())
	if err != nil || rules.Version != "none" {
		t.Fatalf("rules: %+v, %v", rules, err)
	}
}

// TestQueriesWhileProcessing asks for profiles and partitions without pause while an instance
// processes a stream with few keys in memory (queries land mid-cycle, between cycles and
// during eviction): under -race, no data race, and every answer is 200 or 404.
func TestQueriesWhileProcessing(t *testing.T) {
	c := newCluster(t)
	a := c.start(t, "a", func(cfg *pipeline.LiveConfig) {
		cfg.MaxCachedKeys = 8
		cfg.MaxPollRecords = 200
		cfg.Operators = operators.Config{}
	})
	ca := client(a.url, token)
	defer closeClient(ca)
	pipelinetest.WaitFor(t, "a to own every partition", 60*time.Second, func() bool {
		return slices.Equal(owned(t, ca), []int32{0, 1, 2, 3})
	})
	g, err := bench.NewWeb(bench.WebConfig{Profiles: 200, Rate: 50})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	recs := make([]*kgo.Record, 3000)
	for i := range recs {
		r := g.Next(nil)
		recs[i] = &kgo.Record{Key: bytes.Clone(r.Key), Value: r.Value, Timestamp: time.UnixMilli(r.Timestamp)}
		if len(r.Key) > 0 && len(ids) < 50 {
			ids = append(ids, string(r.Key))
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var answered, found atomic.Int64
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				if i%10 == 0 {
					if _, err := ca.Partitions(ctx); err != nil && ctx.Err() == nil {
						t.Errorf("partitions: %v", err)
						return
					}
					continue
				}
				_, err := ca.Profile(ctx, ids[i%len(ids)])
				switch {
				case ctx.Err() != nil:
				case err == nil:
					found.Add(1)
				case !errors.Is(err, admin.ErrNotFound):
					t.Errorf("profile: %v", err)
					return
				}
				answered.Add(1)
			}
		}()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.k.Brokers...), kgo.DefaultProduceTopic(c.input),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(recs); i += 300 {
		if err := cl.ProduceSync(context.Background(), recs[i:i+300]...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	pipelinetest.WaitFor(t, "the stream processed", 120*time.Second, func() bool {
		return a.live.Stats().Records >= uint64(len(recs)) && found.Load() > 0
	})
	stop()
	wg.Wait()
	t.Logf("%d queries answered (%d found) while %d records were processed", answered.Load(), found.Load(), len(recs))
}
