package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dwellhq/dwell/pipeline"
)

// runDemoOffline generates a realistic sample and runs the offline pipeline on it, then shows
// one output of every kind. Without --dir it works in a temporary directory, removed at the end.
func runDemoOffline(ctx context.Context, e *cliEnv, d *demoFlags) error {
	stdout := e.stdout
	web := d.web
	web.Profiles, web.Rate = d.profiles, d.rate
	if web.Rate == 0 {
		web.Rate = 20
	}
	cfg := pipeline.OfflineConfig{Operators: d.ops, Partitions: d.partitions}
	events := &d.events
	dir := d.dir
	if dir == "" {
		t, err := os.MkdirTemp("", "dwell-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer os.RemoveAll(t)
		dir = t
		cfg.TempDir = t
	}
	if err := cfg.Operators.Validate(); err != nil {
		return usageError{err}
	}
	in := filepath.Join(dir, "sample.jsonl")
	out := filepath.Join(dir, "out")
	fmt.Fprintf(stdout, `dwell demo: offline mode (no broker). It generates %d web-tracking records
(%d profiles, page views, carts, purchases, anonymous and ephemeral events, %.1f%% malformed,
%.1f%% an hour late, a %s pause every %d records so visits end), processes them exactly as the
live pipeline would, and writes every output stream to %s.

`, *events, web.Profiles, web.MalformedShare*100, web.LateShare*100, web.EnsureDefaults().IdleGap, web.IdleEvery, out)
	start := time.Now()
	f, err := os.Create(in)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	err = writeWeb(ctx, web, *events, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	genTook := time.Since(start)
	start = time.Now()
	if _, err := processFile(ctx, cfg, in, out, nil, io.Discard, stdout); err != nil {
		return err
	}
	took := time.Since(start)
	fmt.Fprintf(stdout, "\ngenerated in %s, processed in %s (%.0f records/s, %d partitions, one core)\n\n",
		genTook.Round(time.Millisecond), took.Round(time.Millisecond), float64(*events)/took.Seconds(), cfg.Partitions)
	samples := []struct{ file, label, match string }{
		{"system-events.jsonl", "profile-created", `"type":"profile-created"`},
		{"system-events.jsonl", "session-opened", `"type":"session-opened"`},
		{"system-events.jsonl", "visit-started", `"type":"visit-started"`},
		{"system-events.jsonl", "visit-ended", `"type":"visit-ended"`},
		{"system-events.jsonl", "session-closed", `"type":"session-closed"`},
		{"events.jsonl", "enriched event", `"visit_id"`},
		{"late.jsonl", "late event", `"late":true`},
		{"dlq.jsonl", "dead letter", `"reason"`},
	}
	for _, s := range samples {
		line, err := firstMatch(filepath.Join(out, s.file), s.match)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		fmt.Fprintf(stdout, "%s (%s):\n  %s\n", s.label, s.file, line)
	}
	if d.dir == "" {
		fmt.Fprintf(stdout, "\n%s is removed now; dwell demo --offline --dir DIR keeps the sample and the outputs.\n", dir)
	}
	fmt.Fprintf(stdout, "\nRun it on your own data: dwell process --in FILE --out DIR\n")
	return nil
}

func firstMatch(path, match string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(match)) {
			return sc.Text(), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "(none in this sample)", nil
}
