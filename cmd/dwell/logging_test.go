package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// TestLogFlags: --log-format json writes one JSON object a line, --log-level filters, -v
// means debug, and bad values are usage errors (exit 2).
func TestLogFlags(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		env       map[string]string
		wantDebug bool
		wantInfo  bool
		json      bool
	}{
		{args: nil, wantInfo: true},
		{args: []string{"--log-format", "json"}, wantInfo: true, json: true},
		{args: []string{"--log-level", "warn"}},
		{args: []string{"--log-level", "WARN", "-v"}, wantDebug: true, wantInfo: true},
		{args: []string{"--log-level", "debug", "--log-format", "json"}, wantDebug: true, wantInfo: true, json: true},
		{env: map[string]string{"DWELL_LOG_FORMAT": "json", "DWELL_LOG_LEVEL": "error"}, json: true},
		{env: map[string]string{"DWELL_V": "true"}, wantDebug: true, wantInfo: true},
	} {
		fs := newFlags("run", io.Discard)
		lf := bindLog(fs, "info")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := applyEnvAndFile(fs, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		log, err := lf.logger(&buf)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		log.Debug("d-line")
		log.Info("i-line", "k", 1)
		out := buf.String()
		if strings.Contains(out, "d-line") != tc.wantDebug || strings.Contains(out, "i-line") != tc.wantInfo {
			t.Errorf("%v %v: logged %q", tc.args, tc.env, out)
		}
		if tc.json && out != "" {
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil || m["msg"] == nil || m["level"] == nil || m["time"] == nil {
					t.Errorf("%v: not a JSON log line: %q (%v)", tc.args, line, err)
				}
			}
		}
	}
	for _, args := range [][]string{{"--log-format", "xml"}, {"--log-level", "trace"}, {"--log-level", "info+2"}} {
		fs := newFlags("run", io.Discard)
		lf := bindLog(fs, "info")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		var ue usageError
		if _, err := lf.logger(io.Discard); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestRunRejectsBadLogFormat: the flag is on dwell run, deliver and demo, and checked before
// anything starts.
func TestRunRejectsBadLogFormat(t *testing.T) {
	for _, args := range [][]string{
		{"run", "--brokers", "127.0.0.1:1", "--log-format", "xml"},
		{"deliver", "--queue", "q", "--url", "http://127.0.0.1:1/", "--brokers", "127.0.0.1:1", "--log-format", "xml"},
		{"demo", "--log-format", "xml", "--metrics-addr", ""},
	} {
		var stderr bytes.Buffer
		if code := run(t.Context(), args, strings.NewReader(""), io.Discard, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "--log-format") {
			t.Errorf("%v: exit %d, %q", args, code, stderr.String())
		}
	}
}

// TestVersionAndBuildInfo: dwell version names the version, the commit and the Go version, and
// every registry carries dwell_build_info with the same values.
func TestVersionAndBuildInfo(t *testing.T) {
	defer func(v, c string) { buildVersion, buildCommit = v, c }(buildVersion, buildCommit)
	buildVersion, buildCommit = "v1.2.3", "abc123"
	var out bytes.Buffer
	if code := run(t.Context(), []string{"version"}, strings.NewReader(""), &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	want := "dwell v1.2.3 (commit abc123, " + runtime.Version() + ")\n"
	if out.String() != want {
		t.Errorf("dwell version: %q, want %q", out.String(), want)
	}
	fams, err := newRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "dwell_build_info" {
			continue
		}
		m := f.GetMetric()[0]
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if m.GetGauge().GetValue() != 1 || got["version"] != "v1.2.3" || got["commit"] != "abc123" || got["goversion"] != runtime.Version() {
			t.Errorf("dwell_build_info %v = %v", got, m.GetGauge().GetValue())
		}
		return
	}
	t.Error("no dwell_build_info")
}
