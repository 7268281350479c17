package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/dwellhq/dwell/operators"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMurmur2KafkaVectors pins the partitioner to Kafka's own UtilsTest.testMurmur2 values, so
// keys split offline exactly as a Java or franz-go producer splits them.
func TestMurmur2KafkaVectors(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	} {
		if got := int32(murmur2([]byte(c.in))); got != c.want {
			t.Errorf("murmur2(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func runOffline(t *testing.T, cfg OfflineConfig, input string) (OfflineSummary, map[string]string) {
	t.Helper()
	var sys, evs, late, dead bytes.Buffer
	sum, err := RunOffline(context.Background(), cfg, strings.NewReader(input),
		OfflineOutputs{System: &sys, Events: &evs, Late: &late, Dead: &dead})
	if err != nil {
		t.Fatal(err)
	}
	return sum, map[string]string{"system": sys.String(), "events": evs.String(), "late": late.String(), "dead": dead.String()}
}

// TestOfflinePartitioning checks that every event of one key lands in one partition (one
// visit, whatever the partition count), and that the streams match across partition counts as
// sets of lines.
func TestOfflinePartitioning(t *testing.T) {
	var in strings.Builder
	for i := range 300 {
		fmt.Fprintf(&in, `{"id":"e%d","type":"page-view","profile":"p%d","session":"s%d","time":%d}`+"\n", i, i%17, i%17, 1_700_000_000_000+int64(i)*1000)
	}
	sum1, out1 := runOffline(t, OfflineConfig{Partitions: 1}, in.String())
	sum4, out4 := runOffline(t, OfflineConfig{Partitions: 4}, in.String())
	if sum1.Totals.System[operators.VisitStarted] != 17 || sum4.Totals.System[operators.VisitStarted] != 17 {
		t.Fatalf("visits: %d with 1 partition, %d with 4; want 17 (one per profile)",
			sum1.Totals.System[operators.VisitStarted], sum4.Totals.System[operators.VisitStarted])
	}
	for _, stream := range []string{"system", "events"} {
		a, b := strings.Split(out1[stream], "\n"), strings.Split(out4[stream], "\n")
		if len(a) != len(b) {
			t.Fatalf("%s: %d lines with 1 partition, %d with 4", stream, len(a), len(b))
		}
		set := map[string]int{}
		for _, l := range a {
			set[l]++
		}
		for _, l := range b {
			set[l]--
		}
		for l, n := range set {
			if n != 0 {
				t.Fatalf("%s: line differs between partition counts: %s", stream, l)
			}
		}
	}
}

// TestOfflineLinesAndDeadLetters checks that line numbers stand in for offsets (blank lines
// keep their number), CRLF endings work, a last line without a newline is read, and bad lines
// become dead letters without stopping the run.
func TestOfflineLinesAndDeadLetters(t *testing.T) {
	input := "{\"type\":\"a\",\"profile\":\"p\",\"time\":0}\r\n\n   \nnot json\n{\"type\":\"a\",\"profile\":\"p\",\"time\":1000}"
	sum, out := runOffline(t, OfflineConfig{}, input)
	if sum.Lines != 3 || sum.Totals.Events != 2 || sum.Totals.Dead != 1 {
		t.Fatalf("lines %d events %d dead %d; want 3, 2, 1", sum.Lines, sum.Totals.Events, sum.Totals.Dead)
	}
	if !strings.Contains(out["dead"], `"offset":3`) || !strings.Contains(out["dead"], `"topic":"file"`) {
		t.Fatalf("dead letter should carry line 3 as its offset: %s", out["dead"])
	}
	if n := strings.Count(out["events"], "\n"); n != 2 {
		t.Fatalf("%d events written, want 2", n)
	}
}

func TestOfflineCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := RunOffline(ctx, OfflineConfig{}, strings.NewReader(`{"type":"a","time":0}`+"\n"), OfflineOutputs{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestOfflineWriteError(t *testing.T) {
	var in strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&in, `{"type":"a","profile":"p%d","time":%d}`+"\n", i, i)
	}
	_, err := RunOffline(context.Background(), OfflineConfig{}, strings.NewReader(in.String()), OfflineOutputs{System: failingWriter{}})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want the writer's error", err)
	}
}
