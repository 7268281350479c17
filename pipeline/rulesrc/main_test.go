package rulesrc

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/dwellhq/dwell/pipeline"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// rulesYAML is a valid rules file of version v.
func rulesYAML(v string) string {
	return fmt.Sprintf("version: %s\nrules:\n  - name: welcome\n    on: signup\n    actions:\n      - tag: new\n", v)
}

// badRulesYAML fails to load at line 5, column 11: rule "typo" names a field events lack.
const badRulesYAML = `version: bad
rules:
  - name: typo
    on: signup
    when: event.tpye == "x"
    actions:
      - tag: x
`

// syncBuffer is a log destination safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recorder is an Apply that records what it was given and fails while refuse is set.
type recorder struct {
	mu      sync.Mutex
	applied []string
	refuse  error
}

func (r *recorder) apply(rs *pipeline.RuleSet) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse != nil {
		return r.refuse
	}
	r.applied = append(r.applied, rs.Version)
	return nil
}

func (r *recorder) versions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.applied...)
}

func (r *recorder) setRefuse(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refuse = err
}

func reloads(m *Metrics, source, result string) float64 {
	var d dto.Metric
	if err := m.reloads.WithLabelValues(source, result).Write(&d); err != nil {
		panic(err)
	}
	return d.GetCounter().GetValue()
}

// runningVersion returns the version dwell_rules_version_info shows, failing if it shows more
// than one.
func runningVersion(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dwell_rules_version_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("dwell_rules_version_info has %d series", len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		if m.GetGauge().GetValue() != 1 {
			t.Fatalf("dwell_rules_version_info = %v", m.GetGauge().GetValue())
		}
		return m.GetLabel()[0].GetValue()
	}
	return ""
}

func logContains(t *testing.T, log *syncBuffer, parts ...string) {
	t.Helper()
	for _, line := range strings.Split(log.String(), "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return
		}
	}
	t.Fatalf("no log line with all of %q:\n%s", parts, log.String())
}
