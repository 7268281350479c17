package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline"
)

// TestWorkflowScripts runs the scripts in testdata/workflows: rule sets through the offline
// pipeline (sessionizer, registry, rules, fired schedules), showing what the rules wrote, as a
// user of `dwell process --rules` sees it. Commands:
//
//	rules                       (input: a rules file, which may hold a registry section)
//	registry                    (input: a registry file)
//	process [gap=D] [session_timeout=D] [show=rules,dead,log,events,system,late,counts]
//	                            (input: JSON Lines; a line's "time" may be a Go duration
//	                            relative to 2026-01-01T00:00:00Z, such as "10m")
//
// process prints the selected outputs (default: rules) in order, one line each, with ids of 32
// hex digits shortened to 8 and the event log's processing time left out. counts prints the
// run's counts of events by state (what metrics export) next to the event log's, and the dead
// letters counted next to the dead-letter lines written.
func TestWorkflowScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/workflows", func(t *testing.T, path string) {
		var rulesYAML, registryYAML []byte
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "rules":
				rulesYAML = []byte(d.Input)
				return loadCheck(rulesYAML, registryYAML)
			case "registry":
				registryYAML = []byte(d.Input)
				return loadCheck(rulesYAML, registryYAML)
			case "process":
				rs, err := pipeline.ParseRuleSet(rulesYAML, registryYAML, rules.Options{})
				if err != nil {
					return "error: " + err.Error() + "\n"
				}
				cfg := pipeline.OfflineConfig{Rules: rs, EventLog: "all"}
				for _, a := range d.CmdArgs {
					switch a.Key {
					case "gap":
						cfg.Operators.VisitGap = dur(t, a.Vals[0])
					case "session_timeout":
						cfg.Operators.SessionTimeout = dur(t, a.Vals[0])
					}
				}
				show := map[string]bool{"rules": true}
				if d.HasArg("show") {
					var v string
					d.ScanArgs(t, "show", &v)
					show = map[string]bool{}
					for _, s := range strings.Split(v, ",") {
						show[s] = true
					}
				}
				var in strings.Builder
				for _, l := range strings.Split(d.Input, "\n") {
					in.WriteString(relTimes(t, l))
					in.WriteByte('\n')
				}
				var w [6]bytes.Buffer
				out := pipeline.OfflineOutputs{System: &w[0], Events: &w[1], Late: &w[2], Dead: &w[3], Rules: &w[4], EventLog: &w[5]}
				sum, err := pipeline.RunOffline(context.Background(), cfg, strings.NewReader(in.String()), out)
				if err != nil {
					return "error: " + err.Error() + "\n"
				}
				var b strings.Builder
				if show["counts"] {
					printCounts(t, &b, &sum, w[5].String())
				}
				for i, name := range []string{"system", "events", "late", "dead", "rules", "log"} {
					if !show[name] {
						continue
					}
					for _, l := range strings.Split(strings.TrimSpace(w[i].String()), "\n") {
						if l == "" {
							continue
						}
						l = processingField.ReplaceAllString(l, "")
						l = longID.ReplaceAllStringFunc(l, func(s string) string { return s[:8] })
						fmt.Fprintf(&b, "%s: %s\n", name, l)
					}
				}
				if b.Len() == 0 {
					return "nothing\n"
				}
				return b.String()
			}
			t.Fatalf("unknown command %s", d.Cmd)
			return ""
		})
	})
}

var longID = regexp.MustCompile(`[0-9a-f]{32}`)

func loadCheck(rulesYAML, registryYAML []byte) string {
	rs, err := pipeline.ParseRuleSet(rulesYAML, registryYAML, rules.Options{})
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	return "ok " + rs.Version + "\n"
}

func dur(t *testing.T, s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var scriptT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// relTimes replaces a line's "time":"DURATION" with the RFC 3339 time that far after scriptT0.
func relTimes(t *testing.T, line string) string {
	if strings.TrimSpace(line) == "" {
		return line
	}
	var v map[string]json.RawMessage
	if json.Unmarshal([]byte(line), &v) != nil {
		return line // malformed on purpose
	}
	var s string
	if json.Unmarshal(v["time"], &s) != nil {
		return line
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return line
	}
	abs := string(operators.AppendTime(nil, scriptT0.Add(d).UnixMilli()))
	return strings.Replace(line, `"time":"`+s+`"`, `"time":"`+abs+`"`, 1)
}

// printCounts prints sum's counts of events by state and the event log's states, which must
// agree, and the dead letters counted and written.
func printCounts(t *testing.T, b *strings.Builder, sum *pipeline.OfflineSummary, log string) {
	fmt.Fprintf(b, "counted:")
	for st, n := range sum.Rules.States {
		if n > 0 {
			fmt.Fprintf(b, " %s=%d", rules.LogState(st), n)
		}
	}
	logged := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if l == "" {
			continue
		}
		var e struct{ State string }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		logged[e.State]++
	}
	fmt.Fprintf(b, "\nlogged: ")
	for st := range rules.LogState(rules.NumLogStates) {
		if n := logged[st.String()]; n > 0 {
			fmt.Fprintf(b, " %s=%d", st, n)
		}
	}
	fmt.Fprintf(b, "\ndead letters: counted %d (input %d, rules %d), written %d\n",
		sum.Totals.Dead+sum.Rules.RuleDead, sum.Totals.Dead, sum.Rules.RuleDead, sum.Written.Dead)
	fmt.Fprintf(b, "rule outputs:")
	for k, n := range sum.Rules.Outputs {
		fmt.Fprintf(b, " %s=%d", rules.OutputKind(k), n)
	}
	fmt.Fprintf(b, "; schedules fired %d\n", sum.Rules.Scheduled)
}
