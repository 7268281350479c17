// Package prometheus_test checks deploy/prometheus: the alert rules parse (promtool check
// rules), each alert fires and stays silent when it should (promtool test rules on
// alerts_test.yaml), and each links to a section of deploy/RUNBOOK.md that exists.
package prometheus_test

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type ruleFile struct {
	Groups []struct {
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type ruleTests struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func load(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// anchor is GitHub's anchor of a Markdown heading: lower case, spaces to dashes, most
// punctuation dropped.
func anchor(heading string) string {
	h := strings.ToLower(strings.TrimSpace(heading))
	h = regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(h, "")
	return strings.ReplaceAll(h, " ", "-")
}

// TestAlertsCoveredAndLinked needs no Prometheus: every alert has a unit test in which it
// fires and one in which it stays silent, and a runbook_url whose anchor is a heading of
// deploy/RUNBOOK.md.
func TestAlertsCoveredAndLinked(t *testing.T) {
	var rules ruleFile
	load(t, "alerts.yaml", &rules)
	var tests ruleTests
	load(t, "alerts_test.yaml", &tests)
	runbook, err := os.ReadFile("../RUNBOOK.md")
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, line := range strings.Split(string(runbook), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			headings[anchor(strings.TrimLeft(h, "#"))] = true
		}
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if !fires[r.Alert] || !silent[r.Alert] {
				t.Errorf("%s: a unit test where it fires: %t, where it stays silent: %t; want both", r.Alert, fires[r.Alert], silent[r.Alert])
			}
			url := r.Annotations["runbook_url"]
			_, frag, ok := strings.Cut(url, "/deploy/RUNBOOK.md#")
			if !ok || !headings[frag] {
				t.Errorf("%s: runbook_url %q names no heading of deploy/RUNBOOK.md", r.Alert, url)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary", r.Alert)
			}
		}
	}
	if n < 8 {
		t.Errorf("%d alerts, want at least the eight of issue 14", n)
	}
}

// TestAlertRules runs promtool check rules, promtool test rules and promtool check config on
// the example scrape configuration (Debian package prometheus; .ci/run installs it).
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("SKIPPED: promtool is not installed (Debian: apt-get install prometheus); the alert rules were not checked")
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}, {"check", "config", "prometheus.example.yml"}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
