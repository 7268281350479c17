package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// TestProfileCommandErrors: dwell profile says what is missing and what to do.
func TestProfileCommandErrors(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DWELL_ADMIN_TOKEN", "")
	code, _, stderr := runCLI(t, "", "profile", "p1", "--data-dir", filepath.Join(dir, "none"))
	if code != exitUsage || !strings.Contains(stderr, "no admin token: set DWELL_ADMIN_TOKEN or --admin-token-file") {
		t.Errorf("no token: exit %d: %s", code, stderr)
	}
	code, _, stderr = runCLI(t, "", "profile")
	if code != exitUsage || !strings.Contains(stderr, "name a profile id") {
		t.Errorf("no id: exit %d: %s", code, stderr)
	}
	t.Setenv("DWELL_ADMIN_TOKEN", "secret")
	code, _, stderr = runCLI(t, "", "profile", "p1", "--admin-addr", closedPort(t))
	if code != exitFailure || !strings.Contains(stderr, "--admin-addr") {
		t.Errorf("nothing listening: exit %d: %s", code, stderr)
	}
}

// TestRunAdminAPI: dwell run serves the admin API with the token it wrote to its data dir
// (0600) when given none, dwell profile finds it there, and a second dwell run whose admin
// address is taken fails at once, naming the flag.
func TestRunAdminAPI(t *testing.T) {
	k := pipelinetest.New(t, 2, []string{"events"})
	t.Setenv("DWELL_ADMIN_TOKEN", "")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	admin := closedPort(t)
	startRun(t, append(runArgs(t, k), "--data-dir", data, "--admin-addr", admin)...)
	st, err := os.Stat(filepath.Join(data, adminTokenFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v %v", st, err)
	}
	// No event yet: a 404 that says so, through the token from the data dir.
	code, _, stderr := runCLI(t, "", "profile", "nobody", "--admin-addr", admin, "--data-dir", data)
	if code != exitFailure || !strings.Contains(stderr, `profile "nobody": no state`) {
		t.Errorf("unknown profile: exit %d: %s", code, stderr)
	}
	// A wrong token is refused with what to do.
	t.Setenv("DWELL_ADMIN_TOKEN", "wrong")
	code, _, stderr = runCLI(t, "", "profile", "nobody", "--admin-addr", admin)
	if code != exitFailure || !strings.Contains(stderr, "set DWELL_ADMIN_TOKEN") {
		t.Errorf("wrong token: exit %d: %s", code, stderr)
	}
	t.Setenv("DWELL_ADMIN_TOKEN", "")

	// A second instance on the same data dir and admin address is refused for the data dir,
	// the mistake to fix, not for the port.
	code, _, stderr = runCLI(t, "", append(append([]string{"run"}, runArgs(t, k)...), "--metrics-addr", "", "--data-dir", data, "--admin-addr", admin)...)
	if code != exitFailure || !strings.Contains(stderr, "is in use by PID") {
		t.Errorf("second instance on the data dir: exit %d: %s", code, stderr)
	}

	// The admin address is taken: the second instance fails before it starts.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, _, stderr = runCLI(t, "", append(append([]string{"run"}, runArgs(t, k)...), "--metrics-addr", "", "--admin-addr", l.Addr().String())...)
	if code != exitFailure || !strings.Contains(stderr, "address already in use; pass another --admin-addr") {
		t.Errorf("admin address taken: exit %d: %s", code, stderr)
	}
}
