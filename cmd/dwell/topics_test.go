package main

import (
	"bytes"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dwellhq/dwell/bench"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// fakeKafka starts a one-broker kfake cluster with the given topics (partitions each) and
// returns its connect options.
func fakeKafka(t *testing.T, partitions int32, topics ...string) (connectOptions, *kfake.Cluster) {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(partitions, topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return connectOptions{Brokers: c.ListenAddrs(), Timeout: 5 * time.Second}, c
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestConnectUnreachable(t *testing.T) {
	addr := closedPort(t)
	start := time.Now()
	_, _, err := connectKafka(t.Context(), connectOptions{Brokers: []string{addr}, Timeout: time.Second})
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %s", time.Since(start))
	}
	for _, want := range []string{"cannot reach Kafka at " + addr, "connection refused", "check --brokers or DWELL_BROKERS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestRequireTopics(t *testing.T) {
	conn, _ := fakeKafka(t, 2, "events")
	_, adm, err := connectKafka(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := requireTopics(t.Context(), adm, false, "events"); err != nil {
		t.Fatal(err)
	}
	_, err = requireTopics(t.Context(), adm, true, "events", "nosuch")
	if want := `topic "nosuch" not found; create it with dwell topics create nosuch or pass --create-topics`; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	_, err = requireTopics(t.Context(), adm, false, "nosuch")
	if want := `topic "nosuch" not found; create it with dwell topics create nosuch`; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestTopicsCreateListDescribe(t *testing.T) {
	conn, _ := fakeKafka(t, 3, "existing")
	ctx := t.Context()
	var out bytes.Buffer
	if err := topicsCreate(ctx, conn, topicsCreateOptions{Topics: []string{"events"}, Partitions: 4}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "created topic events: 4 partitions, retention.ms=-1") {
		t.Errorf("output %q", out.String())
	}
	// Again: an error without --if-not-exists, fine with it, an error with another count.
	if err := topicsCreate(ctx, conn, topicsCreateOptions{Topics: []string{"events"}, Partitions: 4}, &out); err == nil || !strings.Contains(err.Error(), "--if-not-exists") {
		t.Errorf("second create: %v", err)
	}
	if err := topicsCreate(ctx, conn, topicsCreateOptions{Topics: []string{"events"}, Partitions: 4, IfNotExists: true}, &out); err != nil {
		t.Errorf("--if-not-exists: %v", err)
	}
	err := topicsCreate(ctx, conn, topicsCreateOptions{Topics: []string{"events"}, Partitions: 5, IfNotExists: true}, &out)
	if err == nil || !strings.Contains(err.Error(), "exists with 4 partitions, not 5") {
		t.Errorf("other count: %v", err)
	}
	if err := topicsCreate(ctx, conn, topicsCreateOptions{Topics: []string{"out"}, Kind: topicKindOutput,
		Configs: map[string]string{"retention.ms": "3600000"}}, &out); err != nil {
		t.Fatal(err)
	}

	out.Reset()
	if err := topicsList(ctx, conn, topicsListOptions{}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "TOPIC") || !strings.HasPrefix(lines[1], "events ") ||
		strings.Fields(lines[1])[1] != "4" || strings.Fields(lines[3])[1] != "6" {
		t.Errorf("list:\n%s", out.String())
	}
	out.Reset()
	if err := topicsList(ctx, conn, topicsListOptions{JSON: true}, &out); err != nil {
		t.Fatal(err)
	}
	var first topicSummary
	if err := json.Unmarshal([]byte(strings.Split(out.String(), "\n")[0]), &first); err != nil || first.Topic != "events" || first.Partitions != 4 || first.ReplicationFactor != 1 {
		t.Errorf("list --json: %v %+v", err, first)
	}

	out.Reset()
	if err := topicsDescribe(ctx, conn, topicsDescribeOptions{Topics: []string{"events"}, JSON: true}, &out); err != nil {
		t.Fatal(err)
	}
	var d topicDescription
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Partitions) != 4 || d.Partitions[0].Leader < 0 || d.Partitions[0].EndOffset != 0 || d.Configs["retention.ms"] != "-1" {
		t.Errorf("describe: %s", out.String())
	}
	out.Reset()
	if err := topicsDescribe(ctx, conn, topicsDescribeOptions{Topics: []string{"out"}}, &out); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "topic out: 6 partitions") || !strings.Contains(s, "retention.ms=3600000") {
		t.Errorf("describe:\n%s", s)
	}
	if err := topicsDescribe(ctx, conn, topicsDescribeOptions{Topics: []string{"nosuch"}}, &out); err == nil || !strings.Contains(err.Error(), "dwell topics create nosuch") {
		t.Errorf("describe nosuch: %v", err)
	}
}

// TestTopicsCreateAll creates what a dwell run needs, and dwell run's own check then passes;
// ensureRunTopics with create makes a missing input too.
func TestTopicsCreateAll(t *testing.T) {
	conn, _ := fakeKafka(t, 1)
	ctx := t.Context()
	cfg := pipeline.DefaultLiveConfig()
	cfg.Brokers, cfg.Inputs, cfg.ApplicationID = conn.Brokers, []string{"clicks"}, "shop"
	var out bytes.Buffer
	if err := topicsCreateAll(ctx, cfg, pipeline.TopicsPlan{InputPartitions: 3}, nil, time.Second, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"created topic clicks: 3 partitions", "created topic shop.changelog: 3 partitions", "created topic dwell.system-events: 3 partitions"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := pipeline.EnsureTopics(ctx, cfg, false); err != nil {
		t.Fatal(err)
	}

	// dwell run --create-topics --inputs views --partitions 2 on a fresh application.
	cfg.Inputs, cfg.ApplicationID, cfg.Group = []string{"views"}, "other", "other"
	err := ensureRunTopics(ctx, cfg, false, 2, time.Second)
	if err == nil || !strings.Contains(err.Error(), `input topic "views" not found; create it with dwell topics create views`) {
		t.Fatalf("without --create-topics: %v", err)
	}
	if err := ensureRunTopics(ctx, cfg, true, 2, time.Second); err != nil {
		t.Fatal(err)
	}
	_, adm, err := connectKafka(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	d, err := adm.ListTopics(ctx, "views", "other.changelog")
	if err != nil || len(d["views"].Partitions) != 2 || len(d["other.changelog"].Partitions) != 2 {
		t.Fatalf("%v %+v", err, d)
	}
	cfg.Brokers = []string{closedPort(t)}
	if err := ensureRunTopics(ctx, cfg, true, 2, time.Second); err == nil || !strings.Contains(err.Error(), "cannot reach Kafka") {
		t.Fatalf("closed port: %v", err)
	}
}

// TestTopicsWorkflow is the README's Using it on kfake, or on the real broker in
// DWELL_TEST_BROKERS (make test-kafka): create an input, replay a generated file into it,
// read one profile back, then create what dwell run needs and describe it.
func TestTopicsWorkflow(t *testing.T) {
	k := pipelinetest.New(t, 1, nil)
	conn := connectOptions{Brokers: k.Brokers}
	ctx := t.Context()
	events := k.Name("events")
	var out bytes.Buffer
	if err := topicsCreate(ctx, conn, topicsCreateOptions{Topics: []string{events}, Partitions: 3}, &out); err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	if err := writeWeb(ctx, bench.WebConfig{Profiles: 100}, 3000, &file); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	st, err := produceFile(ctx, conn, produceFileOptions{Topic: events, Name: "events.jsonl"}, &file, &stderr)
	if err != nil || st.Records != 3000 {
		t.Fatalf("produce --file: %v %+v", err, st)
	}
	recs, err := tailOut(t, conn, tailOptions{Topic: events, Offset: "start", Key: "prof-632be59bd9b4e019", KeySet: true, Count: 2})
	if err != nil || len(recs) != 2 {
		t.Fatalf("tail --key: %d records, %v", len(recs), err)
	}

	cfg := pipeline.DefaultLiveConfig()
	cfg.Brokers, cfg.Inputs, cfg.ApplicationID, cfg.Group = k.Brokers, []string{events}, k.Name("app"), k.Name("app")
	cfg.Topics.System = k.Name("system")
	cfg.Topics.Events, cfg.Topics.Late, cfg.Topics.Dead = k.Name("out"), k.Name("late"), k.Name("dlq")
	out.Reset()
	if err := topicsCreateAll(ctx, cfg, pipeline.TopicsPlan{}, nil, 0, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "exists topic "+events+": 3 partitions") || !strings.Contains(out.String(), "created topic "+k.Name("app")+".changelog: 3 partitions") {
		t.Errorf("create --all:\n%s", out.String())
	}
	if err := ensureRunTopics(ctx, cfg, false, 0, 0); err != nil {
		t.Fatalf("dwell run's check after create --all: %v", err)
	}
	out.Reset()
	if err := topicsDescribe(ctx, conn, topicsDescribeOptions{Topics: []string{events, k.Name("app") + ".changelog"}}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"retention.ms=-1", "cleanup.policy=compact,delete", "topic " + events + ": 3 partitions"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("describe lacks %q:\n%s", want, out.String())
		}
	}
	t.Log(out.String())
}
