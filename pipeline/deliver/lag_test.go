package deliver_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// TestDeliverLagZeroAfterTransactions: a queue written by transactions (as dwell run writes
// it) has a commit marker after each transaction's records. Once every record is delivered
// the lag is 0 on every partition and the committed offsets reach the end, the markers
// included; before the fix the lag stayed at 1 per partition and a lag alert fired forever.
func TestDeliverLagZeroAfterTransactions(t *testing.T) {
	h := newHook(false)
	rig := newRig(t, h)
	cl, err := kgo.NewClient(kgo.SeedBrokers(rig.env.Brokers...), kgo.TransactionalID(rig.env.Name("lag-txn")))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	const perTxn, txns = 6, 2
	for tx := range txns {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range perTxn {
			r := &kgo.Record{Topic: rig.queue, Partition: int32(i % 3), Key: []byte("p" + strconv.Itoa(i)),
				Value: notification(fmt.Sprintf("t%d-%d", tx, i), "email")}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}

	reg := prometheus.NewRegistry()
	cfg := rig.config(reg)
	start(t, cfg)
	deadline := time.Now().Add(10 * time.Second)
	for !pipelinetest.CaughtUp(t, rig.env.Brokers, cfg.Group, rig.queue) {
		if time.Now().After(deadline) {
			ends, commits := committed(t, rig.env.Brokers, cfg.Group, rig.queue)
			t.Fatalf("committed offsets %v never reached the ends %v (the commit markers)", commits, ends)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(h.deliveredIDs()); n != perTxn*txns {
		t.Errorf("%d notifications delivered, want %d", n, perTxn*txns)
	}
	want := ""
	for p := range 3 {
		want += fmt.Sprintf("dwell_deliver_consumer_lag_records{partition=\"%d\",queue=\"q\"} 0\n", p)
	}
	var got string
	for time.Now().Before(deadline) {
		got = lagLines(t, reg)
		if got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("lag after everything was delivered:\n%s\nwant:\n%s", got, want)
}

func lagLines(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if mf.GetName() != "dwell_deliver_consumer_lag_records" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			fmt.Fprintf(&b, "dwell_deliver_consumer_lag_records{partition=%q,queue=%q} %s\n", l["partition"], l["queue"], strconv.FormatFloat(m.GetGauge().GetValue(), 'g', -1, 64))
		}
	}
	return b.String()
}
