// Command gate is dwell's benchmark regression gate: it builds the in-process benchmarks of a
// base commit (BASE, default the merge-base with main) and of the working tree, runs them
// interleaved (base, tree, base, tree, ...), compares them with benchstat, and fails when a
// benchmark's median time per op rises by more than -threshold percent with statistical
// significance (benchstat's Mann-Whitney test, alpha 0.05), or when its allocations per op
// rise at all. It needs only Go and git: benchstat is run at a pinned version with go run.
//
//	go run ./bench/gate                       # full: -count 6, -benchtime 1s
//	go run ./bench/gate -short                # CI budget: a subset, short benchtime (< 3 min on 2 cores)
//	BASE=HEAD~3 go run ./bench/gate -count 10
//
// Exit status: 0 no regression, 1 regression, 2 the gate could not run.
package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// benchstat is pinned so that every machine compares the same way.
const benchstat = "golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"

// The in-process benchmarks: deterministic work on one goroutine, no broker, no disk.
const (
	fullBenchmarks  = `^(BenchmarkDecode|BenchmarkSessionize|BenchmarkDecodeSessionize|BenchmarkProcess|BenchmarkNexmarkQ11)$`
	shortBenchmarks = `^(BenchmarkDecodeSessionize|BenchmarkNexmarkQ11)$`
)

type config struct {
	base, pkg, bench, benchtime string
	count                       int
	threshold                   float64
	args                        []string // extra test-binary flags, passed when both binaries know them
	keep                        bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	short := fs.Bool("short", os.Getenv("GATE_SHORT") != "", "CI budget: fewer benchmarks, short benchtime, a smaller warm state (also GATE_SHORT=1)")
	fs.StringVar(&c.base, "base", os.Getenv("BASE"), "base commit (default: the merge-base of HEAD and main, else origin/main, else HEAD; also BASE=)")
	fs.StringVar(&c.pkg, "pkg", "./bench", "package holding the benchmarks")
	fs.StringVar(&c.bench, "bench", "", "benchmark regexp (default: every in-process benchmark; -short: a subset)")
	fs.StringVar(&c.benchtime, "benchtime", envOr("BENCHTIME", ""), "go test -benchtime (default 1s; -short 200ms; also BENCHTIME=)")
	fs.IntVar(&c.count, "count", envInt("COUNT", 6), "runs of each side, interleaved (at least 6; also COUNT=)")
	fs.Float64Var(&c.threshold, "threshold", 10, "fail when a median slows by more than this many percent (significant)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory (results, binaries)")
	extra := fs.String("args", "", "extra test-binary flags, space-separated (default -bench.profiles=100000; -short: -bench.profiles=20000 -bench.rate=50 -bench.q11-rate=20000 -bench.q11-ooo=1ms)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if c.count < 6 {
		fmt.Fprintf(stderr, "gate: -count must be at least 6 for benchstat to find significance, got %d\n", c.count)
		return 2
	}
	if c.bench == "" {
		c.bench = fullBenchmarks
		if *short {
			c.bench = shortBenchmarks
		}
	}
	if c.benchtime == "" {
		c.benchtime = "1s"
		if *short {
			c.benchtime = "200ms"
		}
	}
	if *extra == "" {
		*extra = "-bench.profiles=100000"
		if *short {
			*extra = "-bench.profiles=20000 -bench.rate=50 -bench.q11-rate=20000 -bench.q11-ooo=1ms"
		}
	}
	c.args = strings.Fields(*extra)
	regressed, err := gate(c, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "gate:", err)
		return 2
	}
	if regressed {
		return 1
	}
	return 0
}

func gate(c config, stdout, stderr io.Writer) (bool, error) {
	root, err := output("", "git", "rev-parse", "--show-toplevel")
	if err != nil {
		return false, err
	}
	if c.base == "" {
		for _, ref := range []string{"main", "origin/main"} {
			if c.base, err = output(root, "git", "merge-base", "HEAD", ref); err == nil {
				break
			}
		}
		if err != nil {
			// A clone without main (a detached CI checkout): gate the working tree against
			// its own commit, which catches uncommitted changes only.
			fmt.Fprintln(stderr, "gate: no merge-base with main or origin/main; comparing with HEAD (pass BASE=<commit> to choose)")
			c.base = "HEAD"
		}
	}
	baseRev, err := output(root, "git", "rev-parse", "--short", c.base+"^{commit}")
	if err != nil {
		return false, err
	}
	tmp, err := os.MkdirTemp("", "dwell-gate-")
	if err != nil {
		return false, err
	}
	if c.keep {
		fmt.Fprintln(stderr, "gate: keeping", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	wt := filepath.Join(tmp, "base")
	if _, err := output(root, "git", "worktree", "add", "--detach", wt, baseRev); err != nil {
		return false, err
	}
	defer func() { _, _ = output(root, "git", "worktree", "remove", "--force", wt) }()

	fmt.Fprintf(stderr, "gate: base %s vs the working tree; %s, -count %d, -benchtime %s\n", baseRev, c.bench, c.count, c.benchtime)
	oldBin, newBin := filepath.Join(tmp, "old.test"), filepath.Join(tmp, "new.test")
	for _, b := range []struct{ dir, out string }{{wt, oldBin}, {root, newBin}} {
		if _, err := output(b.dir, "go", "test", "-c", "-o", b.out, c.pkg); err != nil {
			return false, fmt.Errorf("building the benchmarks in %s: %w", b.dir, err)
		}
		if _, err := os.Stat(b.out); err != nil {
			return false, fmt.Errorf("%s has no tests in %s", c.pkg, b.dir)
		}
	}
	// Extra flags only where both sides define them (an older base may lack a flag).
	var args []string
	for _, a := range c.args {
		name := strings.SplitN(strings.TrimLeft(a, "-"), "=", 2)[0]
		if knowsFlag(oldBin, name) && knowsFlag(newBin, name) {
			args = append(args, a)
		} else {
			fmt.Fprintf(stderr, "gate: not passing %s: one side does not define it\n", a)
		}
	}
	oldTxt, newTxt := filepath.Join(tmp, "old.txt"), filepath.Join(tmp, "new.txt")
	start := time.Now()
	for i := range c.count {
		for _, side := range []struct{ bin, dir, out string }{{oldBin, filepath.Join(wt, c.pkg), oldTxt}, {newBin, filepath.Join(root, c.pkg), newTxt}} {
			cmd := exec.Command(side.bin, append([]string{"-test.run", "^$", "-test.bench", c.bench, "-test.benchtime", c.benchtime,
				"-test.count", "1", "-test.cpu", "1", "-test.benchmem"}, args...)...)
			cmd.Dir = side.dir
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, stderr
			if err := cmd.Run(); err != nil {
				return false, fmt.Errorf("running %s: %w\n%s", side.bin, err, out.Bytes())
			}
			if err := appendFile(side.out, out.Bytes()); err != nil {
				return false, err
			}
		}
		fmt.Fprintf(stderr, "gate: round %d of %d done (%s)\n", i+1, c.count, time.Since(start).Round(time.Second))
	}
	table, err := output(tmp, "go", "run", benchstat, "old.txt", "new.txt")
	if err != nil {
		return false, err
	}
	fmt.Fprintln(stdout, table)
	csvOut, err := output(tmp, "go", "run", benchstat, "-format", "csv", "old.txt", "new.txt")
	if err != nil {
		return false, err
	}
	problems, err := verdict(csvOut, c.threshold)
	if err != nil {
		return false, err
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, "REGRESSION:", p)
	}
	if len(problems) == 0 {
		fmt.Fprintf(stdout, "gate: no benchmark slowed by more than %g%% (significant) and none allocates more\n", c.threshold)
	}
	return len(problems) > 0, nil
}

// verdict reads benchstat's CSV (sections of: a files row, a unit row, then one row per
// benchmark: name, old center, CI, new center, CI, delta or "~", p) and lists regressions.
func verdict(csvText string, threshold float64) ([]string, error) {
	r := csv.NewReader(strings.NewReader(csvText))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("reading benchstat output: %w", err)
	}
	var problems []string
	unit := ""
	for _, row := range rows {
		if len(row) < 7 {
			continue
		}
		if row[0] == "" {
			if row[1] != "" && row[1] != "old.txt" {
				unit = row[1]
			}
			continue
		}
		name, delta := row[0], row[5]
		if name == "geomean" || row[1] == "" || row[3] == "" {
			continue // a benchmark only one side has
		}
		oldV, err1 := strconv.ParseFloat(row[1], 64)
		newV, err2 := strconv.ParseFloat(row[3], 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("benchstat row %q: %w", row, err)
		}
		switch unit {
		case "sec/op":
			if delta == "~" || delta == "" {
				continue
			}
			pct, err := strconv.ParseFloat(strings.TrimSuffix(delta, "%"), 64)
			if err != nil {
				return nil, fmt.Errorf("benchstat delta %q: %w", delta, err)
			}
			if pct > threshold {
				problems = append(problems, fmt.Sprintf("%s: median time per op %+.1f%% (%s), over the %g%% allowed", name, pct, row[6], threshold))
			}
		case "allocs/op":
			if newV > oldV {
				problems = append(problems, fmt.Sprintf("%s: allocations per op rose from %g to %g", name, oldV, newV))
			}
		}
	}
	return problems, nil
}

func knowsFlag(bin, name string) bool {
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	return bytes.Contains(out, []byte("-"+name+" "))
}

func output(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, errb.Bytes())
	}
	return strings.TrimSpace(out.String()), nil
}

func appendFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Close())
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
