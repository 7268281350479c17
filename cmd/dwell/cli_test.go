package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/dwellhq/dwell/state"
)

// allCommands returns the path (after dwell) of every command, subcommands included.
func allCommands(t *testing.T) [][]string {
	t.Helper()
	root := newRootCmd(&cliEnv{lookupEnv: os.LookupEnv})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, s := range c.Commands() {
			p := append(slices.Clone(path), s.Name())
			out = append(out, p)
			walk(s, p)
		}
	}
	walk(root, nil)
	if len(out) < 20 {
		t.Fatalf("only %d commands: %v", len(out), out)
	}
	return out
}

// TestHelpToStdout: dwell -h, dwell help, dwell help COMMAND, and -h and --help of every
// command print to stdout and exit 0.
func TestHelpToStdout(t *testing.T) {
	cases := [][]string{{"-h"}, {"--help"}, {"help"}, {"-help"}}
	for _, p := range allCommands(t) {
		cases = append(cases, append(slices.Clone(p), "-h"), append(slices.Clone(p), "--help"), append([]string{"help"}, p...))
	}
	for _, args := range cases {
		code, stdout, stderr := runCLI(t, "", args...)
		if code != exitOK || !strings.Contains(stdout, "Usage:") || stderr != "" {
			t.Errorf("dwell %s: exit %d, stdout %.80q, stderr %q; want exit 0 and the help on stdout",
				strings.Join(args, " "), code, stdout, stderr)
		}
	}
}

// TestRootHelp: dwell -h lists every command, grouped, one line each.
func TestRootHelp(t *testing.T) {
	_, stdout, _ := runCLI(t, "", "-h")
	for _, want := range []string{"Process events:", "Rules and the event registry:", "Other:",
		"\n  registry    list or check", "\n  run         the live processor", "\n  completion  "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dwell -h lacks %q:\n%s", want, stdout)
		}
	}
	for _, p := range allCommands(t) {
		if len(p) == 1 && !strings.Contains(stdout, "\n  "+p[0]+" ") {
			t.Errorf("dwell -h does not list %s", p[0])
		}
	}
	code, _, stderr := runCLI(t, "")
	if code != exitUsage || !strings.Contains(stderr, "Usage:") {
		t.Errorf("dwell alone: exit %d, %q; want the usage on stderr, exit 2", code, stderr)
	}
}

// TestGroupedHelp: a command's help lists its flags under headings, with placeholders and
// defaults.
func TestGroupedHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"run", "-h"}, []string{"\nKafka:\n", "\nInput and outputs:\n", "\nSessions and time:\n", "\nRules:\n",
			"\nState:\n", "\nLimits:\n", "\nObservability:\n", "--brokers HOST:PORT,...", "--data-dir DIR",
			"--visit-gap DURATION", "(default 30m)", `(default "localhost:9092")`, "--rules FILE", "--config-topic TOPIC",
			"-v, --verbose", "-h, --help", "--max-poll-records N"}},
		{[]string{"process", "--help"}, []string{"--in FILE", "\nSessions and time:\n", "--out DIR"}},
		{[]string{"demo", "-h"}, []string{"\nOffline (--offline):\n", "--seed N"}},
		{[]string{"config", "apply", "-h"}, []string{"\nKafka:\n", "--topic TOPIC", "--registry FILE"}},
		{[]string{"bench", "web", "-h"}, []string{"--brokers HOST:PORT,...", "\nMeasurement:\n"}},
	} {
		_, stdout, _ := runCLI(t, "", tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("dwell %s lacks %q:\n%s", strings.Join(tc.args, " "), w, stdout)
			}
		}
		if strings.Contains(stdout, "--config-topic dwell") || strings.Contains(stdout, " value ") {
			t.Errorf("dwell %s: a bogus placeholder:\n%s", strings.Join(tc.args, " "), stdout)
		}
	}
}

// TestCompletion: dwell completion writes a script for each of the four shells, and the
// completion of flags and commands comes from the commands themselves.
func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, stdout, stderr := runCLI(t, "", "completion", shell)
		if code != exitOK || !strings.Contains(stdout, "dwell") || len(stdout) < 1000 {
			t.Errorf("completion %s: exit %d, %d bytes, %s", shell, code, len(stdout), stderr)
		}
	}
	_, stdout, _ := runCLI(t, "", "__complete", "run", "--visit")
	if !strings.Contains(stdout, "--visit-gap") {
		t.Errorf("completing dwell run --visit: %q", stdout)
	}
	_, stdout, _ = runCLI(t, "", "__complete", "reg")
	if !strings.Contains(stdout, "registry") {
		t.Errorf("completing dwell reg: %q", stdout)
	}
}

// TestCommandLineErrors: errors are one short line that names the flag, variable, argument
// or command and what is wanted; exit 2.
func TestCommandLineErrors(t *testing.T) {
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "dwell.yaml")
	if err := os.WriteFile(badYAML, []byte("visit_gapp: 10m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badValue := filepath.Join(dir, "bad-value.yaml")
	if err := os.WriteFile(badValue, []byte("visit_gap: 5x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  []string // name, value
		args []string
		want string // the whole of stderr, or a part of it when it ends with "..."
	}{
		{nil, []string{"run", "--brokr", "x"}, "dwell run: unknown flag --brokr; did you mean --brokers? See 'dwell run -h'.\n"},
		{nil, []string{"run", "--zzzzzz"}, "dwell run: unknown flag --zzzzzz. See 'dwell run -h'.\n"},
		{nil, []string{"run", "--visit-gap", "5x"}, `dwell run: invalid value "5x" for --visit-gap: want a duration such as 30m, 1h30m or 90s. See 'dwell run -h'.` + "\n"},
		{nil, []string{"run", "--visit-gap"}, "dwell run: --visit-gap needs a value: a duration such as 30m, 1h30m or 90s. See 'dwell run -h'.\n"},
		{nil, []string{"run", "--max-poll-records", "lots"}, `dwell run: invalid value "lots" for --max-poll-records: want a whole number such as 100. See 'dwell run -h'.` + "\n"},
		{nil, []string{"run", "--max-event-bytes", "1MB"}, `dwell run: invalid value "1MB" for --max-event-bytes: want a size in bytes, a whole number such as 1048576. See 'dwell run -h'.` + "\n"},
		{nil, []string{"run", "--create-topics=maybe"}, `dwell run: invalid value "maybe" for --create-topics: want true or false. See 'dwell run -h'.` + "\n"},
		{nil, []string{"gen", "--malformed", "some"}, `dwell gen: invalid value "some" for --malformed: want a number such as 0.5 or 250. See 'dwell gen -h'.` + "\n"},
		{nil, []string{"process", "--disable", "visit-bogus"}, `dwell process: invalid value "visit-bogus" for --disable: unknown system-event type "visit-bogus"...`},
		{[]string{"DWELL_VISIT_GAP", "5x"}, []string{"process", "--in", "-"}, `dwell process: DWELL_VISIT_GAP="5x": want a duration such as 30m, 1h30m or 90s` + "\n"},
		{[]string{"DWELL_MAX_POLL_RECORDS", "x"}, []string{"run"}, `dwell run: DWELL_MAX_POLL_RECORDS="x": want a whole number...`},
		{nil, []string{"run", "--config", badYAML}, `dwell run: config ` + badYAML + `: unknown key "visit_gapp" (known: brokers, ...`},
		{nil, []string{"run", "--config", badValue}, `dwell run: config ` + badValue + `: visit_gap: "5x": want a duration such as 30m, 1h30m or 90s` + "\n"},
		{nil, []string{"run", "extra"}, `dwell run: unexpected argument "extra"; see 'dwell run -h'` + "\n"},
		{nil, []string{"tail", "a", "b"}, `dwell tail: unexpected argument "b" after the TOPIC; see 'dwell tail -h'` + "\n"},
		{nil, []string{"rnu"}, `dwell: unknown command "rnu"; did you mean "run"?` + "\n"},
		{nil, []string{"frobnicate"}, `dwell: unknown command "frobnicate"; see 'dwell -h'` + "\n"},
		{nil, []string{"config", "valdate"}, `dwell config: unknown command "valdate"; did you mean "validate"?` + "\n"},
		{nil, []string{"config"}, "dwell config: name a command: apply, validate; see 'dwell config -h'\n"},
		{nil, []string{"savepoints"}, "dwell savepoints: name a command: list; see 'dwell savepoints -h'\n"},
		{nil, []string{"bench", "nope"}, `dwell bench: unknown command "nope" (collect, nexmark, restore, web); see 'dwell bench -h'` + "\n"},
		{[]string{"DWELL_TEST_BROKERS", ""}, []string{"bench", "web", "--level", "broker"}, "dwell: bench: --level broker needs brokers: pass --brokers HOST:PORT,... (or set DWELL_BROKERS)\n"},
	} {
		for i := 0; i+1 < len(tc.env); i += 2 {
			t.Setenv(tc.env[i], tc.env[i+1])
		}
		code, stdout, stderr := runCLI(t, "", tc.args...)
		ok := stderr == tc.want
		if w, prefix := strings.CutSuffix(tc.want, "..."); prefix {
			ok = strings.HasPrefix(stderr, w) && strings.Count(stderr, "\n") == 1
		}
		if code != exitUsage || !ok || stdout != "" {
			t.Errorf("dwell %s: exit %d, stdout %q, stderr\n%q; want exit 2 and\n%q", strings.Join(tc.args, " "), code, stdout, stderr, tc.want)
		}
		for i := 0; i+1 < len(tc.env); i += 2 {
			os.Unsetenv(tc.env[i])
		}
	}
}

// TestSingleDashFlags: the Go-style single-dash long flags of old scripts still work.
func TestSingleDashFlags(t *testing.T) {
	input := `{"type":"a","profile":"p","time":0,"id":"x"}
{"type":"a","profile":"p","time":120000,"id":"y"}
`
	for _, args := range [][]string{
		{"process", "-in", "-", "-visit-gap=1m", "-session-timeout", "1m"},
		{"process", "--in", "-", "--visit-gap=1m", "--session-timeout", "1m"},
	} {
		code, stdout, stderr := runCLI(t, input, args...)
		if code != exitOK || strings.Count(stdout, `"type":"visit-started"`) != 2 {
			t.Errorf("%v: exit %d, %s\n%s; want two visits with a 1m gap", args, code, stderr, stdout)
		}
	}
	fs := newFlags("x", nil)
	fs.String("brokers", "", "")
	fs.BoolP("verbose", "v", false, "")
	got := rewriteSingleDash(fs, []string{"-brokers", "a", "-brokers=b", "-v", "-nope", "--brokers", "-", "-help", "--", "-brokers"})
	want := []string{"--brokers", "a", "--brokers=b", "-v", "-nope", "--brokers", "-", "--help", "--", "-brokers"}
	if !slices.Equal(got, want) {
		t.Errorf("rewriteSingleDash = %q, want %q", got, want)
	}
}

// TestRegistryErrorsLabel: a registry file's errors say registry:, not rules:.
func TestRegistryErrorsLabel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.yaml")
	if err := os.WriteFile(path, []byte("types:\n  x:\n    bogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "", "registry", "validate", path)
	if code != exitFailure || !strings.Contains(stderr, "registry: ") || strings.Contains(stderr, "rules:") {
		t.Errorf("registry validate of a bad file: exit %d, %q; want registry: and no rules:", code, stderr)
	}
}

// TestDataDirInUse: a second process on a data dir in use fails at once and says who holds it.
func TestDataDirInUse(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	st, err := state.Open(state.Options{Dir: dir, CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	code, _, stderr := runCLI(t, "", "run", "--brokers", strings.Join(c.ListenAddrs(), ","), "--data-dir", dir,
		"--create-topics", "--metrics-addr", "", "--admin-addr", "")
	want := `dwell: data dir "` + dir + `" is in use by PID ` + strconv.Itoa(os.Getpid()) +
		" (another dwell run?); stop it or pass another --data-dir\n"
	if code != exitFailure || !strings.HasSuffix(stderr, want) {
		t.Errorf("exit %d, stderr %q; want exit 1 and %q", code, stderr, want)
	}
}

// TestDemoOfflineLeavesNothing: dwell demo --offline removes its temporary directory, after a
// whole run and after Ctrl-C, which exits 0.
func TestDemoOfflineLeavesNothing(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	code, stdout, stderr := runCLI(t, "", "demo", "--offline", "--events", "3000", "--idle-every", "1000")
	if code != exitOK || !strings.Contains(stdout, "session-closed") {
		t.Fatalf("demo --offline: exit %d, %s\n%s", code, stderr, stdout)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Ctrl-C before it starts
	var out, errb strings.Builder
	if code := run(ctx, []string{"demo", "--offline", "--events", "3000"}, strings.NewReader(""), &out, &errb); code != exitOK {
		t.Errorf("demo --offline interrupted: exit %d, %s", code, errb.String())
	}
	if ents, err := os.ReadDir(tmp); err != nil || len(ents) > 0 {
		t.Errorf("left in TMPDIR: %v %v", ents, err)
	}
}

// TestPrecedenceThroughTheCommand: through a cobra command, a flag beats its DWELL_* variable,
// which beats the --config file, which beats the default (dwell run refuses a stall timeout
// under 10s before it dials a broker, naming the value it got).
func TestPrecedenceThroughTheCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dwell.yaml")
	if err := os.WriteFile(path, []byte("stall_timeout: 1s\nbrokers: [127.0.0.1:1]\nmetrics-addr: \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"", nil, "stall timeout 1s"},
		{"2s", nil, "stall timeout 2s"},
		{"2s", []string{"--stall-timeout", "3s"}, "stall timeout 3s"},
		{"2s", []string{"-stall-timeout=4s"}, "stall timeout 4s"},
	} {
		if tc.env != "" {
			t.Setenv("DWELL_STALL_TIMEOUT", tc.env)
		}
		code, _, stderr := runCLI(t, "", append([]string{"run", "--config", path}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("DWELL_STALL_TIMEOUT=%q %v: exit %d, %q; want %q", tc.env, tc.args, code, stderr, tc.want)
		}
	}
}

// TestVerboseOldNames: -v, DWELL_V and a v: key still set --verbose, as when the flag was -v.
func TestVerboseOldNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dwell.yaml")
	if err := os.WriteFile(path, []byte("v: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		args []string
	}{
		{"", []string{"-v"}},
		{"", []string{"--verbose"}},
		{"true", nil},
		{"", []string{"--config", path}},
	} {
		fs := newFlags("run", nil)
		verbose := fs.BoolP("verbose", "v", false, "")
		fs.String("config", "", "")
		if tc.env != "" {
			t.Setenv("DWELL_V", tc.env)
		}
		if err := parse(fs, tc.args); err != nil || !*verbose {
			t.Errorf("DWELL_V=%q %v: %v, verbose %t", tc.env, tc.args, err, *verbose)
		}
		os.Unsetenv("DWELL_V")
	}
}
