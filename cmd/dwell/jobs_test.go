package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

const jobsRules = `version: jobs-1
jobs:
  - name: weekday-digest
    cron: "0 9 * * MON-FRI"
    timezone: Europe/Warsaw
    emit: {type: digest-due}
    catch_up: last
  - name: quarter
    every: 15m
    emit: {type: tick}
`

// TestJobsList: dwell jobs list shows each job's next fire times from a rules file and from
// the config topic (kfake; under a second).
func TestJobsList(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "rules.yaml")
	replaceFile(t, file, jobsRules)
	want := []string{
		"quarter         every 15m                             tick        all       3          2026-03-27T00:15:00Z, 2026-03-27T00:30:00Z\n",
		"weekday-digest  cron \"0 9 * * MON-FRI\" Europe/Warsaw  digest-due  last      2          2026-03-27T08:00:00Z (2026-03-27 09:00 CET), 2026-03-30T07:00:00Z (2026-03-30 09:00 CEST)\n",
		"version jobs-1: 2 jobs\n",
	}
	check := func(what string, code int, stdout, stderr string) {
		t.Helper()
		if code != exitOK {
			t.Fatalf("%s: exit %d: %s", what, code, stderr)
		}
		for _, w := range want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%s: no line %q in\n%s", what, w, stdout)
			}
		}
	}
	args := []string{"--from", "2026-03-27T00:00:00Z", "--next", "2", "--partitions", "4"}
	code, stdout, stderr := runCLI(t, "", append([]string{"jobs", "list", "--rules", file}, args...)...)
	check("from the file", code, stdout, stderr)

	k := pipelinetest.New(t, 1, nil)
	brokers, topic := strings.Join(k.Brokers, ","), k.Name("dwell.config")
	if code, _, errs := runCLI(t, "", "config", "apply", file, "--brokers", brokers, "--topic", topic, "--create-topic"); code != exitOK {
		t.Fatalf("config apply: exit %d: %s", code, errs)
	}
	code, stdout, stderr = runCLI(t, "", append([]string{"jobs", "list", "--brokers", brokers, "--config-topic", topic}, args...)...)
	check("from the config topic", code, stdout, stderr)

	replaceFile(t, file, "jobs:\n  - {name: x, cron: \"61 * * * *\", emit: {type: x}}\n")
	if code, _, stderr := runCLI(t, "", "jobs", "list", "--rules", file); code != exitFailure || !strings.Contains(stderr, "cron") {
		t.Errorf("a bad cron: exit %d: %s", code, stderr)
	}
}
