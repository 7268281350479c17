package rulesrc

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// writeFile replaces path atomically, as editors and config management do.
func writeFile(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// watch runs w.Watch until the test ends.
func watch(t *testing.T, w Source, apply Apply) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := w.Watch(ctx, apply); err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// TestFilesReload: a changed file is applied; a bad one is rejected with its position, counted,
// and the running version stays; the next good one is applied, all without a restart.
func TestFilesReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesYAML("v1"))
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var log syncBuffer
	f := NewFiles(FileConfig{RulesPath: path, Interval: 10 * time.Millisecond, Metrics: m,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	rs, err := f.Load(context.Background())
	if err != nil || rs.Version != "v1" {
		t.Fatalf("Load: %v, %+v", err, rs)
	}
	if v := runningVersion(t, reg); v != "v1" {
		t.Fatalf("version metric %q after Load, want v1", v)
	}
	var rec recorder
	watch(t, f, rec.apply)
	pipelinetest.WaitFor(t, "the watcher to start", 10*time.Second, func() bool { return strings.Contains(log.String(), "watching rules files") })
	time.Sleep(30 * time.Millisecond) // a few polls: the version Load returned is not applied again
	if got := rec.versions(); len(got) != 0 {
		t.Fatalf("applied %v with no change since Load", got)
	}

	writeFile(t, path, rulesYAML("v2"))
	pipelinetest.WaitFor(t, "v2 applied", 10*time.Second, func() bool { return slices.Equal(rec.versions(), []string{"v2"}) })
	if v := runningVersion(t, reg); v != "v2" {
		t.Fatalf("version metric %q, want v2", v)
	}

	writeFile(t, path, badRulesYAML)
	pipelinetest.WaitFor(t, "the bad file rejected", 10*time.Second, func() bool { return reloads(m, "file", "rejected") == 1 })
	logContains(t, &log, "rules rejected", "line=5", "column=17", "rule=typo", path, "running=v2")
	if v := runningVersion(t, reg); v != "v2" {
		t.Fatalf("version metric %q after a bad file, want v2", v)
	}
	time.Sleep(30 * time.Millisecond) // the same bad content is not tried again
	if n := reloads(m, "file", "rejected"); n != 1 {
		t.Fatalf("rejected %v times, want once", n)
	}

	writeFile(t, path, rulesYAML("v3"))
	pipelinetest.WaitFor(t, "v3 applied", 10*time.Second, func() bool { return slices.Equal(rec.versions(), []string{"v2", "v3"}) })
	if v := runningVersion(t, reg); v != "v3" {
		t.Fatalf("version metric %q, want v3", v)
	}
	if a, r := reloads(m, "file", "applied"), reloads(m, "file", "rejected"); a != 2 || r != 1 {
		t.Fatalf("reloads applied=%v rejected=%v, want 2 and 1", a, r)
	}
}

// TestFilesSignal: with polling off, a change is applied on a signal; a version the processor
// refuses is retried on the next signal.
func TestFilesSignal(t *testing.T) {
	dir := t.TempDir()
	rulesPath, regPath := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "registry.yaml")
	writeFile(t, rulesPath, rulesYAML("v1"))
	writeFile(t, regPath, "version: r1\ntypes:\n  signup: {}\n")
	sig := make(chan os.Signal, 1)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var log syncBuffer
	f := NewFiles(FileConfig{RulesPath: rulesPath, RegistryPath: regPath, Interval: -1, Signals: sig, Metrics: m,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if rs, err := f.Load(context.Background()); err != nil || rs.Version != "v1/r1" {
		t.Fatalf("Load: %v, %+v", err, rs)
	}
	var rec recorder
	watch(t, f, rec.apply)
	pipelinetest.WaitFor(t, "the watcher to start", 10*time.Second, func() bool { return strings.Contains(log.String(), "watching rules files") })

	writeFile(t, regPath, "version: r2\ntypes:\n  signup: {}\n")
	time.Sleep(20 * time.Millisecond)
	if got := rec.versions(); len(got) != 0 {
		t.Fatalf("applied %v with polling off and no signal", got)
	}
	sig <- syscall.SIGHUP
	pipelinetest.WaitFor(t, "r2 applied", 10*time.Second, func() bool { return slices.Equal(rec.versions(), []string{"v1/r2"}) })

	// A registry error names the registry file, not the rules file.
	writeFile(t, regPath, "version: r3\ntypes:\n  signup: {enabled: maybe}\n")
	sig <- syscall.SIGHUP
	pipelinetest.WaitFor(t, "the bad registry rejected", 10*time.Second, func() bool { return reloads(m, "file", "rejected") == 1 })
	logContains(t, &log, "rules rejected", "line=3", "column=21", `type=signup`, `err="`+regPath+`: registry: line 3`)

	// A version the processor refuses (its topics are missing) is retried on the next signal.
	rec.setRefuse(errors.New("pipeline: topics missing"))
	writeFile(t, regPath, "version: r4\ntypes:\n  signup: {queue: q}\n")
	sig <- syscall.SIGHUP
	pipelinetest.WaitFor(t, "r4 refused", 10*time.Second, func() bool { return reloads(m, "file", "rejected") == 2 })
	logContains(t, &log, "rules rejected", "version=v1/r4", "topics missing", "running=v1/r2")
	if v := runningVersion(t, reg); v != "v1/r2" {
		t.Fatalf("version metric %q, want v1/r2", v)
	}
	rec.setRefuse(nil)
	sig <- syscall.SIGHUP
	pipelinetest.WaitFor(t, "r4 applied", 10*time.Second, func() bool { return slices.Equal(rec.versions(), []string{"v1/r2", "v1/r4"}) })
	if v := runningVersion(t, reg); v != "v1/r4" {
		t.Fatalf("version metric %q, want v1/r4", v)
	}
	if a, r := reloads(m, "file", "applied"), reloads(m, "file", "rejected"); a != 2 || r != 2 {
		t.Fatalf("reloads applied=%v rejected=%v, want 2 and 2", a, r)
	}
}

// TestWatchFiles: without Load, the current version is applied at once; an empty file (a write
// in progress) is waited out, not rejected; an invalid first version is rejected.
func TestWatchFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesYAML("v1"))
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var rec recorder
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := WatchFiles(ctx, FileConfig{RulesPath: path, Interval: 10 * time.Millisecond, Metrics: m}, rec.apply); err != nil {
			t.Errorf("WatchFiles: %v", err)
		}
	})
	defer func() {
		cancel()
		wg.Wait()
	}()
	pipelinetest.WaitFor(t, "v1 applied", 10*time.Second, func() bool { return slices.Equal(rec.versions(), []string{"v1"}) })
	writeFile(t, path, "")
	time.Sleep(50 * time.Millisecond)
	writeFile(t, path, rulesYAML("v2"))
	pipelinetest.WaitFor(t, "v2 applied", 10*time.Second, func() bool { return slices.Equal(rec.versions(), []string{"v1", "v2"}) })
	if n := reloads(m, "file", "rejected"); n != 0 {
		t.Fatalf("an empty file was rejected %v times; want it waited out", n)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	pipelinetest.WaitFor(t, "the missing file rejected", 10*time.Second, func() bool { return reloads(m, "file", "rejected") == 1 })
	if v := runningVersion(t, reg); v != "v2" {
		t.Fatalf("version metric %q, want v2", v)
	}

	// Load fails on a bad file: dwell run does not start on one.
	writeFile(t, path, badRulesYAML)
	_, err := NewFiles(FileConfig{RulesPath: path}).Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), path+": rules: line 5, column 17: rule \"typo\"") {
		t.Fatalf("Load of a bad file: %v", err)
	}
}

// TestRacyRewrite: a rewrite that keeps the size within the timestamp granularity is still seen.
func TestRacyRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesYAML("v1"))
	f := NewFiles(FileConfig{RulesPath: path})
	if _, err := f.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, rulesYAML("v2")) // same size
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	f.poll(rec.apply, false)
	if got := rec.versions(); !slices.Equal(got, []string{"v2"}) {
		t.Fatalf("applied %v, want v2 although size and mtime are unchanged", got)
	}
}
