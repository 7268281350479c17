package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline"
)

// Output file names under --out.
var outputFiles = [6]string{"system-events.jsonl", "events.jsonl", "late.jsonl", "dlq.jsonl", "rules.jsonl", "event-log.jsonl"}

func newProcessCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "process --in FILE|- [--out DIR] [flags]",
		Short: "process JSON Lines offline, as the live pipeline would",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	var cfg pipeline.OfflineConfig
	var in, outDir, rulesFile, registryFile *string
	inGroup(fs, groupIO, func() {
		in = fs.String("in", "", "JSON Lines input `FILE`, or - for standard input (required)")
		outDir = fs.String("out", "", "write system-events, events, late, dlq, rules and event-log .jsonl files into this `DIR` (default: system events to stdout)")
		fs.StringVar(&cfg.EventLog, "event-log", "", "`WHICH` events the event log records: all, errors or none (default: all with --rules or --registry, else none)")
		fs.IntVar(&cfg.Partitions, "key-partitions", 1, "hash keys over this many partitions, as a keyed Kafka topic would")
	})
	bindOperators(fs, &cfg.Operators)
	inGroup(fs, groupRules, func() {
		rulesFile = fs.String("rules", "", "run the rules (and registry section) of this YAML `FILE` on every event")
		registryFile = fs.String("registry", "", "check event types against this registry `FILE`")
	})
	inGroup(fs, groupState, func() {
		cfg.MaxCachedKeys = pipeline.DefaultLiveConfig().MaxCachedKeys
		fs.IntVar(&cfg.MaxCachedKeys, "max-cached-keys", cfg.MaxCachedKeys, "keys kept in memory per partition; the rest wait in a temporary Pebble store under --temp-dir")
		fs.StringVar(&cfg.TempDir, "temp-dir", os.TempDir(), "`DIR` for the temporary store of keys over --max-cached-keys (removed at the end)")
	})
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runProcess(cmd.Context(), e, cfg, *in, *outDir, *rulesFile, *registryFile)
	}
	return cmd
}

func runProcess(ctx context.Context, e *cliEnv, cfg pipeline.OfflineConfig, in, outDir, rulesFile, registryFile string) error {
	if rulesFile != "" || registryFile != "" {
		rs, err := pipeline.LoadRuleSet(rulesFile, registryFile, rules.Options{})
		if err != nil {
			return err
		}
		cfg.Rules = rs
		if cfg.EventLog == "" {
			cfg.EventLog = "all"
		}
	}
	if in == "" {
		return usageError{errors.New("process: --in is required (a file, or - for standard input)")}
	}
	if cfg.Partitions < 1 {
		return usageError{fmt.Errorf("process: --key-partitions must be at least 1, got %d", cfg.Partitions)}
	}
	if cfg.MaxCachedKeys < 1 {
		return usageError{fmt.Errorf("process: --max-cached-keys must be at least 1, got %d", cfg.MaxCachedKeys)}
	}
	if err := cfg.Operators.Validate(); err != nil {
		return usageError{err}
	}
	_, err := processFile(ctx, cfg, in, outDir, e.stdin, e.stdout, e.stderr)
	return err
}

// processFile runs the offline pipeline and prints the one-line summary to stderr.
func processFile(ctx context.Context, cfg pipeline.OfflineConfig, in, outDir string, stdin io.Reader, stdout, stderr io.Writer) (pipeline.OfflineSummary, error) {
	var r io.Reader = stdin
	if in != "-" {
		f, err := os.Open(in)
		if err != nil {
			return pipeline.OfflineSummary{}, fmt.Errorf("process: %w; pass an existing JSON Lines file or - for standard input", err)
		}
		defer f.Close()
		r = f
		cfg.Topic = filepath.Base(in)
	} else {
		cfg.Topic = "stdin"
	}
	outs := pipeline.OfflineOutputs{System: stdout}
	var files []*os.File
	if outDir != "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return pipeline.OfflineSummary{}, fmt.Errorf("process: creating output directory: %w", err)
		}
		for _, name := range outputFiles {
			f, err := os.Create(filepath.Join(outDir, name))
			if err != nil {
				closeAll(files)
				return pipeline.OfflineSummary{}, fmt.Errorf("process: %w", err)
			}
			files = append(files, f)
		}
		outs = pipeline.OfflineOutputs{System: files[0], Events: files[1], Late: files[2], Dead: files[3], Rules: files[4], EventLog: files[5]}
	}
	sum, err := pipeline.RunOffline(ctx, cfg, r, outs)
	if cerr := closeAll(files); err == nil {
		err = cerr
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, interruptedLine(sum, outDir))
	}
	if err != nil {
		return sum, err
	}
	fmt.Fprintln(stderr, summaryLine(sum))
	if hint := timeTooFarHint(sum, cfg.Operators.MaxTimeJump); hint != "" {
		fmt.Fprintln(stderr, hint)
	}
	return sum, nil
}

// timeTooFarHint says what to do about time-too-far dead letters: offline, a partition whose
// events pause for longer than --max-time-jump dead-letters everything after the pause.
func timeTooFarHint(sum pipeline.OfflineSummary, jump time.Duration) string {
	n := sum.Totals.DeadByReason[operators.ReasonTimeTooFar]
	if n == 0 || jump < 0 {
		return ""
	}
	return fmt.Sprintf("dwell: %d events were more than --max-time-jump (%s) ahead of their partition's watermark, or too late in year 9999 "+
		"(each dead letter's detail says which); if the input pauses for longer than that, raise --max-time-jump above the longest pause, "+
		"or pass --max-time-jump -1s to turn the check off", n, jump)
}

// interruptedLine says what an interrupted run wrote: whole lines, up to where it stopped.
func interruptedLine(sum pipeline.OfflineSummary, outDir string) string {
	w := sum.Written
	what := fmt.Sprintf("%d system events", w.System)
	where := "stdout got"
	if outDir != "" {
		what = fmt.Sprintf("%s %d, %s %d, %s %d, %s %d, %s %d, %s %d", outputFiles[0], w.System, outputFiles[1], w.Events,
			outputFiles[2], w.Late, outputFiles[3], w.Dead, outputFiles[4], w.Rules, outputFiles[5], w.EventLog)
		where = outDir + " holds"
	}
	return fmt.Sprintf("dwell: process interrupted after %d input lines; %s the whole lines written until then (%s); "+
		"visits and sessions still open were not closed", sum.Lines, where, what)
}

func closeAll(files []*os.File) error {
	var errs []error
	for _, f := range files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// summaryLine is the one-line account of a run: events in, system events by type, late and
// dead letters by reason, schedules left pending at the end of input, and, when the key cap
// was reached, the keys evicted and loaded back.
func summaryLine(sum pipeline.OfflineSummary) string {
	t := sum.Totals
	var b strings.Builder
	fmt.Fprintf(&b, "dwell: %d records, %d events in (%d pass-through, %d ephemeral); system events:", t.Records, t.Events, t.PassThrough, t.Ephemeral)
	for _, ty := range operators.SystemTypes() {
		fmt.Fprintf(&b, " %s=%d", ty, t.System[ty])
	}
	byReason := func(n uint64, of map[operators.Reason]uint64) {
		if n == 0 {
			return
		}
		reasons := make([]string, 0, len(of))
		for r, n := range of {
			reasons = append(reasons, fmt.Sprintf("%s=%d", r, n))
		}
		slices.Sort(reasons)
		fmt.Fprintf(&b, " (%s)", strings.Join(reasons, " "))
	}
	fmt.Fprintf(&b, "; late=%d", t.Late)
	byReason(t.Late, t.LateByReason)
	// Dead letters from every source: undecodable or rejected input, and events whose rules
	// failed under on_error: dead-letter; the lines dlq.jsonl holds.
	r := sum.Rules
	dead := maps.Clone(t.DeadByReason)
	if r.RuleDead > 0 {
		if dead == nil {
			dead = map[operators.Reason]uint64{}
		}
		dead[rules.ReasonRuleError] += r.RuleDead
	}
	fmt.Fprintf(&b, "; dead letters=%d", t.Dead+r.RuleDead)
	byReason(t.Dead+r.RuleDead, dead)
	if r.Logged > 0 || r.Scheduled > 0 || r.RuleErrors > 0 || r.Outputs != [rules.NumOutputKinds]uint64{} {
		fmt.Fprintf(&b, "; rule outputs:")
		for k, n := range r.Outputs {
			fmt.Fprintf(&b, " %s=%d", rules.OutputKind(k), n)
		}
		fmt.Fprintf(&b, "; schedules fired=%d; rule errors=%d; events by state:", r.Scheduled, r.RuleErrors)
		for st, n := range r.States {
			if n > 0 {
				fmt.Fprintf(&b, " %s=%d", rules.LogState(st), n)
			}
		}
	}
	// Schedules due after the last event time seen do not fire at the end of input.
	fmt.Fprintf(&b, "; pending schedules=%d", t.ExtPending)
	if t.Evicted > 0 {
		fmt.Fprintf(&b, "; keys over --max-cached-keys: evicted=%d loaded=%d", t.Evicted, t.Loaded)
	}
	return b.String()
}
