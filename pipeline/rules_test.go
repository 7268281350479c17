package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// cartRules is the cart-abandonment workflow of issue 5: a schedule on add-to-cart, cancelled
// by a purchase; an abandoned cart notifies; purchases emit an order event to a queue; the
// visit's size tags engaged profiles; a registry validates carts and ignores debug events.
const cartRules = `
version: cart-1
registry:
  unregistered: accept
  types:
    add-to-cart:
      schema: {type: object, required: [sku], properties: {sku: {type: string}}}
    purchase:
      queue: orders
    debug:
      enabled: false
rules:
  - name: cart-timer
    on: add-to-cart
    actions:
      - schedule: {name: cart, type: cart-abandoned, after: 1h, properties: {sku: "{{.event.properties.sku}}"}}
  - name: cart-bought
    on: purchase
    actions:
      - cancel: cart
      - increment: purchases
      - emit: {type: order-placed, queue: orders, properties: {n: "{{.profile.counters.purchases}}"}}
  - name: abandoned
    on: cart-abandoned
    actions:
      - increment: abandoned
      - notify:
          channel: email
          queue: carts
          to: ["{{.profile.id}}@example.com"]
          subject: "you left {{.event.properties.sku}}"
  - name: engaged
    on: page-view
    when: visit.event_count >= 3 && !("engaged" in profile.tags)
    actions:
      - tag: engaged
`

// cartStream generates n events for profiles: page views, carts and purchases, in time order,
// with a few carts that break the schema and some debug events. It returns the values, the
// record keys, and per profile the times at which cart-abandoned must fire (with its sku).
func cartStream(seed uint64, profiles, n int) (values, keys [][]byte, want map[string][]string) {
	rng := rand.New(rand.NewPCG(seed, 1))
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).UnixMilli()
	type cart struct {
		deadline int64
		sku      string
	}
	pending := map[string]*cart{}
	want = map[string][]string{}
	fire := func(p string, before int64) { // timers due before `before` fire
		if c := pending[p]; c != nil && c.deadline < before {
			want[p] = append(want[p], fmt.Sprintf("%d/%s", c.deadline, c.sku))
			delete(pending, p)
		}
	}
	t := start
	for i := range n {
		t += int64(rng.IntN(8000)) // about 900 events an hour: carts expire mid-stream
		p := fmt.Sprintf("u%03d", rng.IntN(profiles))
		fire(p, t)
		var v string
		switch r := rng.IntN(100); {
		case r < 60:
			v = fmt.Sprintf(`{"id":"e%d","type":"page-view","profile":%q,"session":"%s-s","time":%d,"context":{"page":{"url":"/p/%d"}}}`, i, p, p, t, i%7)
		case r < 80:
			sku := fmt.Sprintf("sku-%d", i)
			v = fmt.Sprintf(`{"id":"e%d","type":"add-to-cart","profile":%q,"session":"%s-s","time":%d,"properties":{"sku":%q}}`, i, p, p, t, sku)
			pending[p] = &cart{deadline: t + time.Hour.Milliseconds(), sku: sku}
		case r < 90:
			v = fmt.Sprintf(`{"id":"e%d","type":"purchase","profile":%q,"session":"%s-s","time":%d}`, i, p, p, t)
			delete(pending, p)
		case r < 95:
			v = fmt.Sprintf(`{"id":"e%d","type":"add-to-cart","profile":%q,"time":%d,"properties":{"sku":42}}`, i, p, t) // schema violation
		default:
			v = fmt.Sprintf(`{"id":"e%d","type":"debug","profile":%q,"time":%d}`, i, p, t) // ignored
		}
		values = append(values, []byte(v))
		keys = append(keys, []byte(p))
	}
	// The input ends with one event per partition 20 hours on (within --max-time-jump): every
	// partition's last event time passes every pending cart, which then fires (offline,
	// schedules after the last event time of their partition stay pending; live, the watermark
	// would move on).
	end := t + 20*time.Hour.Milliseconds()
	for part, i := int32(0), 0; part < livePartitions; i++ {
		k := fmt.Sprintf("end-%d", i)
		if pipeline.KafkaPartition([]byte(k), livePartitions) != part {
			continue
		}
		values = append(values, []byte(fmt.Sprintf(`{"id":"end%d","type":"end-of-input","profile":%q,"time":%d}`, part, k, end)))
		keys = append(keys, []byte(k))
		part++
	}
	for p := range pending {
		fire(p, end)
	}
	return values, keys, want
}

func cartRuleSet(t *testing.T) *pipeline.RuleSet {
	t.Helper()
	rs, err := pipeline.ParseRuleSet([]byte(cartRules), nil, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// offlineCart runs the stream through dwell process's pipeline with the cart rules.
type cartOutputs struct {
	events, rulesOut, eventLog, dead []string
}

func offlineCart(t *testing.T, rs *pipeline.RuleSet, values [][]byte) cartOutputs {
	t.Helper()
	var ev, ru, lg, dead bytes.Buffer
	_, err := pipeline.RunOffline(context.Background(),
		pipeline.OfflineConfig{Partitions: livePartitions, Rules: rs, EventLog: "all"},
		bytes.NewReader(bytes.Join(values, []byte("\n"))),
		pipeline.OfflineOutputs{Events: &ev, Rules: &ru, EventLog: &lg, Dead: &dead})
	if err != nil {
		t.Fatal(err)
	}
	lines := func(b *bytes.Buffer) []string {
		s := strings.TrimSpace(b.String())
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	return cartOutputs{events: lines(&ev), rulesOut: lines(&ru), eventLog: lines(&lg), dead: lines(&dead)}
}

// abandonedFrom lists, per profile, the cart-abandoned events among events as "deadline/sku".
func abandonedFrom(t *testing.T, events []string) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	for _, l := range events {
		if !strings.Contains(l, `"type":"cart-abandoned"`) {
			continue
		}
		var e struct {
			Profile, Time string
			Properties    struct{ SKU string }
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		tm, err := time.Parse(time.RFC3339Nano, e.Time)
		if err != nil {
			t.Fatal(err)
		}
		got[e.Profile] = append(got[e.Profile], fmt.Sprintf("%d/%s", tm.UnixMilli(), e.Properties.SKU))
	}
	return got
}

// TestCartAbandonmentOffline checks the workflow against a model: cart-abandoned fires exactly
// once for every cart left alone for an hour, at its deadline, with its sku; each one notifies
// once; purchases emit orders; schema violations are dead-lettered with the path; debug events
// are ignored; every input event has one event-log record.
func TestCartAbandonmentOffline(t *testing.T) {
	values, _, want := cartStream(1, 200, 6000)
	out := offlineCart(t, cartRuleSet(t), values)
	got := abandonedFrom(t, out.events)
	fired := 0
	for p, w := range want {
		fired += len(w)
		if !slices.Equal(got[p], w) {
			t.Fatalf("profile %s: cart-abandoned %v, want %v", p, got[p], w)
		}
	}
	if len(got) != len(want) || fired < 50 {
		t.Fatalf("%d profiles with abandoned carts, want %d (%d fired; the stream should abandon dozens)", len(got), len(want), fired)
	}
	queues := map[string]int{}
	ids := map[string]bool{}
	for _, l := range out.rulesOut {
		var r struct {
			Topic string
			Value struct{ ID string }
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		queues[r.Topic]++
		if ids[r.Value.ID] {
			t.Fatalf("duplicate output id %s", r.Value.ID)
		}
		ids[r.Value.ID] = true
	}
	purchases := 0
	for _, v := range values {
		if bytes.Contains(v, []byte(`"purchase"`)) {
			purchases++
		}
	}
	if queues["dwell.queue.carts"] != fired || queues["dwell.queue.orders"] != purchases || len(queues) != 2 {
		t.Fatalf("queue records %v, want %d notifications on carts and %d orders", queues, fired, purchases)
	}
	states := map[string]int{}
	schema := 0
	for _, l := range out.eventLog {
		var e struct{ State, Type, Reason, Detail string }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		states[e.State]++
		if e.Reason == "schema-violation" {
			schema++
			if !strings.Contains(e.Detail, "sku") {
				t.Fatalf("schema violation without the failing path: %s", l)
			}
		}
	}
	inputs := len(values)
	logged := states["processed"] + states["ignored"] + states["dead-lettered"]
	if logged != inputs+fired { // every input, and every fired schedule (a rule matches each)
		t.Fatalf("event log states %v: %d records, want %d inputs + %d fired", states, logged, inputs, fired)
	}
	if states["ignored"] == 0 || schema == 0 || len(out.dead) != schema {
		t.Fatalf("event log states %v, %d schema violations, %d dead letters", states, schema, len(out.dead))
	}
	t.Logf("%d events: %d carts abandoned, %d orders, log %v", inputs, fired, purchases, states)
}

var processingField = regexp.MustCompile(`,"processing_us":[0-9]+`)

// TestCartAbandonmentLive runs the workflow through the live processor on Kafka while one
// instance crashes mid-transaction, its replacement starts on an empty data dir (rule state and
// pending schedules restore from the changelog alone), and a second instance joins and takes
// partitions over. The events, queue and event-log topics must equal the offline run's per key
// and in order: each abandoned cart emitted and notified exactly once.
func TestCartAbandonmentLive(t *testing.T) {
	d := pipeline.DefaultTopics()
	names := []string{"events", d.System, d.Events, d.Late, d.Dead, d.Changelog, d.EventLog, "dwell.queue.carts", "dwell.queue.orders"}
	k := pipelinetest.New(t, livePartitions, names, pipelinetest.Compacted(d.Changelog))
	topics := pipeline.Topics{System: k.Name(d.System), Events: k.Name(d.Events), Late: k.Name(d.Late), Dead: k.Name(d.Dead),
		Changelog: k.Name(d.Changelog), EventLog: k.Name(d.EventLog), QueuePrefix: k.Name("dwell.queue.")}
	input := k.Name("events")
	values, keys, _ := cartStream(2, 200, 6000)
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.DefaultProduceTopic(input),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range values {
		recs = append(recs, &kgo.Record{Key: keys[i], Value: values[i]})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	rs := cartRuleSet(t)
	want := offlineCart(t, rs, values)

	now := new(atomic.Int64)
	now.Store(streamEnd(t, values))
	config := func() pipeline.LiveConfig {
		return pipeline.LiveConfig{Brokers: k.Brokers, Group: k.Name("dwell"), Inputs: []string{input}, Topics: topics,
			DataDir: "data", FS: vfs.NewMem(), Now: func() time.Time { return time.UnixMilli(now.Load()) },
			PollTimeout: 50 * time.Millisecond, MaxPollRecords: 200, Rules: rs, EventLog: "all",
			ClientOpts: []kgo.Opt{kgo.TransactionTimeout(2 * time.Second)}}
	}
	// The first instance crashes with its fifth transaction open.
	first, err := pipeline.NewLive(config())
	if err != nil {
		t.Fatal(err)
	}
	cycles := 0
	first.SetCrashAt(func(point string) bool {
		if point == "before-end" {
			cycles++
		}
		return point == "before-end" && cycles == 5
	})
	if err := first.Run(context.Background()); err != pipeline.ErrCrashed {
		t.Fatalf("first run: %v, want the crash", err)
	}
	if err := first.Abandon(); err != nil {
		t.Fatal(err)
	}
	// Its replacement (empty data dir) and, once it is under way, a second instance.
	var processed atomic.Int64
	start := func() (*pipeline.Live, context.CancelFunc, chan error) {
		l, err := pipeline.NewLive(config())
		if err != nil {
			t.Fatal(err)
		}
		l.SetCrashAt(func(point string) bool {
			if point == "after-end" {
				processed.Add(200)
				time.Sleep(5 * time.Millisecond)
			}
			return false
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		return l, cancel, done
	}
	a, stopA, doneA := start()
	pipelinetest.WaitFor(t, "a third of the stream", 60*time.Second, func() bool { return processed.Load() > 2000 })
	b, stopB, doneB := start()
	pipelinetest.WaitFor(t, "the group to consume every record", 90*time.Second, func() bool { return pipelinetest.CaughtUp(t, k.Brokers, k.Name("dwell"), input) })
	// Idle advancement: the wall clock moves on past the last events (the end of input, two
	// days after the stream), which leave the reorder buffer too.
	now.Add(96 * time.Hour.Milliseconds())
	wantFired := 0
	for _, l := range want.events {
		if strings.Contains(l, `"cart-abandoned"`) {
			wantFired++
		}
	}
	var events []*kgo.Record
	pipelinetest.WaitFor(t, "every abandoned cart", 60*time.Second, func() bool {
		now.Add(time.Minute.Milliseconds())
		events = pipelinetest.ReadCommitted(t, k.Brokers, topics.Events)
		n, ends := 0, 0
		for _, r := range events {
			if bytes.Contains(r.Value, []byte(`"cart-abandoned"`)) {
				n++
			}
			if bytes.Contains(r.Value, []byte(`"end-of-input"`)) {
				ends++
			}
		}
		return n >= wantFired && ends == livePartitions
	})
	for _, s := range []struct {
		l    *pipeline.Live
		stop context.CancelFunc
		done chan error
	}{{a, stopA, doneA}, {b, stopB, doneB}} {
		s.stop()
		if err := <-s.done; err != nil {
			t.Fatal(err)
		}
		if err := s.l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if a.Restores()+b.Restores() <= livePartitions {
		t.Fatalf("partitions never moved between instances")
	}
	// Compare per key and in order with the offline run.
	sameByKey(t, "events", values2lines(events), want.events)
	var queue []string
	for _, q := range []string{"carts", "orders"} {
		for _, r := range pipelinetest.ReadCommitted(t, k.Brokers, topics.QueuePrefix+q) {
			queue = append(queue, fmt.Sprintf(`{"topic":"dwell.queue.%s","key":%q,"value":%s}`, q, r.Key, r.Value))
		}
	}
	var wantQueue []string
	for _, l := range want.rulesOut {
		var r struct {
			Topic, Key string
			Value      json.RawMessage
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		wantQueue = append(wantQueue, fmt.Sprintf(`{"topic":%q,"key":%q,"value":%s}`, r.Topic, r.Key, r.Value))
	}
	sameByKey(t, "queue records", queue, wantQueue)
	var logLines []string
	for _, r := range pipelinetest.ReadCommitted(t, k.Brokers, topics.EventLog) {
		l := processingField.ReplaceAllString(string(r.Value), "")
		logLines = append(logLines, strings.ReplaceAll(l, `"topic":"`+input+`"`, `"topic":"file"`))
	}
	sameByKey(t, "event log", normaliseOffsets(logLines), normaliseOffsets(want.eventLog))
	t.Logf("%d abandoned carts, %d queue records and %d event-log records across a crash and a rebalance match the offline run",
		wantFired, len(queue), len(logLines))
}

func values2lines(recs []*kgo.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Value)
	}
	return out
}

var offsetField = regexp.MustCompile(`"offset":[0-9]+`)

// normaliseOffsets blanks input offsets: offline numbers lines, Kafka numbers each partition's
// records.
func normaliseOffsets(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = offsetField.ReplaceAllString(l, `"offset":0`)
	}
	return out
}

// sameByKey requires got and want to hold the same lines per topic and key (profile, session
// or the record's key), in the same order.
func sameByKey(t *testing.T, what string, got, want []string) {
	t.Helper()
	group := func(lines []string) map[string][]string {
		m := map[string][]string{}
		for _, l := range lines {
			var e struct {
				Profile, Session, Key, Topic string
			}
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("%s: %v: %s", what, err, l)
			}
			k := e.Topic + "|" + e.Profile + "|" + e.Session + "|" + e.Key
			m[k] = append(m[k], l)
		}
		return m
	}
	g, w := group(got), group(want)
	keys := make([]string, 0, len(w))
	for k := range w {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Equal(g[k], w[k]) {
			t.Fatalf("%s of key %s differ from offline:\nlive:    %v\noffline: %v", what, k, head(g[k]), head(w[k]))
		}
	}
	if len(got) != len(want) || len(g) != len(w) {
		t.Fatalf("%s: %d lines over %d keys, want %d over %d", what, len(got), len(g), len(want), len(w))
	}
}

// budgetRules render, per ping, a template whose work the event decides (issue 12): a range
// over a number from the event, and two nested ranges over a list from the event.
const budgetRules = `
version: budgets-1
on_error: dead-letter
rules:
  - name: count
    on: ping
    actions:
      - set_trait: {name: n, value: "{{range .event.properties.n}}x{{end}}"}
  - name: grid
    on: ping
    when: event.properties.l != nil
    actions:
      - set_trait: {name: l, value: "{{range .event.properties.l}}{{range $.event.properties.l}}{{end}}.{{end}}"}
`

// TestRuleBudgetsLive: events whose templates would run on for ever (a range over n=1e9 from
// the event; nested ranges over 400 elements, 160,400 steps) are dead-lettered as rule errors
// with the budget in the detail, among ordinary events of the same partition, which are all
// processed; the partition commits to its end.
func TestRuleBudgetsLive(t *testing.T) {
	d := pipeline.DefaultTopics()
	k := pipelinetest.New(t, 1, []string{"events", d.System, d.Events, d.Late, d.Dead, d.Changelog, d.EventLog},
		pipelinetest.Compacted(d.Changelog))
	topics := pipeline.Topics{System: k.Name(d.System), Events: k.Name(d.Events), Late: k.Name(d.Late), Dead: k.Name(d.Dead),
		Changelog: k.Name(d.Changelog), EventLog: k.Name(d.EventLog)}
	input := k.Name("events")
	rs, err := pipeline.ParseRuleSet([]byte(budgetRules), nil, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	hostile := map[string]string{ // event id -> the rule that goes over its budget
		"e13": "count", "e27": "grid",
	}
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC).UnixMilli()
	var recs []*kgo.Record
	for i := range n {
		props := fmt.Sprintf(`{"n": %d, "l": [1, 2, 3]}`, i%5+1)
		switch id := fmt.Sprintf("e%d", i); hostile[id] {
		case "count":
			props = `{"n": 1000000000}`
		case "grid":
			props = `{"n": 1, "l": [` + strings.TrimSuffix(strings.Repeat("1,", 400), ",") + `]}`
		}
		v := fmt.Sprintf(`{"id":"e%d","type":"ping","profile":"u1","session":"s1","time":%d,"properties":%s}`, i, start+int64(i)*1000, props)
		recs = append(recs, &kgo.Record{Topic: input, Key: []byte("u1"), Value: []byte(v)})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	now := new(atomic.Int64)
	now.Store(start)
	reg := prometheus.NewRegistry()
	l, err := pipeline.NewLive(pipeline.LiveConfig{Brokers: k.Brokers, Group: k.Name("dwell"), Inputs: []string{input}, Topics: topics,
		DataDir: "data", FS: vfs.NewMem(), Now: func() time.Time { return time.UnixMilli(now.Load()) },
		PollTimeout: 50 * time.Millisecond, MaxPollRecords: 7, Rules: rs, EventLog: "all", Metrics: pipeline.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	pipelinetest.WaitFor(t, "the partition to commit its end", 60*time.Second, func() bool {
		return pipelinetest.CaughtUp(t, k.Brokers, k.Name("dwell"), input)
	})
	// The last events wait for the watermark (max out-of-orderness): idle, it follows the clock.
	pipelinetest.WaitFor(t, "every event processed", 60*time.Second, func() bool {
		now.Add(time.Minute.Milliseconds())
		return len(pipelinetest.ReadCommitted(t, k.Brokers, topics.Events)) >= n
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	dead := pipelinetest.ReadCommitted(t, k.Brokers, topics.Dead)
	if len(dead) != len(hostile) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(hostile))
	}
	for _, r := range dead {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		var e struct{ ID string }
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`rule %q: action 1: value: template exceeded its budget of 100000 steps`, hostile[e.ID])
		if h["dwell-reason"] != "rule-error" || h["dwell-detail"] != want {
			t.Errorf("dead letter of %s: reason %q, detail %q; want rule-error, %q", e.ID, h["dwell-reason"], h["dwell-detail"], want)
		}
	}
	states := map[string]string{}
	for _, r := range pipelinetest.ReadCommitted(t, k.Brokers, topics.EventLog) {
		var e struct {
			ID    string `json:"event_id"`
			State string
		}
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		states[e.ID] = e.State
	}
	for i := range n {
		id := fmt.Sprintf("e%d", i)
		want := "processed"
		if hostile[id] != "" {
			want = "dead-lettered"
		}
		if states[id] != want {
			t.Errorf("event %s: logged %q, want %q", id, states[id], want)
		}
	}
	if got := len(pipelinetest.ReadCommitted(t, k.Brokers, topics.Events)); got != n {
		t.Errorf("%d events written, want all %d", got, n)
	}
	// One state per event everywhere (issue 13): the metric counts the dead-lettered events as
	// the event log does, none as error.
	byState := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dwell_rule_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "state" {
					byState[lp.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	if byState["dead-lettered"] != float64(len(hostile)) || byState["error"] != 0 {
		t.Errorf("dwell_rule_events_total by state %v, want dead-lettered=%d and no error (the event log's states)", byState, len(hostile))
	}
}
