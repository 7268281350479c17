package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dwellhq/dwell/operators"
)

var errHelp = errors.New("help requested")

// newFlags returns a flag set that prints its usage to stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("dwell "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses args, then fills every flag not given on the command line from its DWELL_*
// variable (--visit-gap from DWELL_VISIT_GAP), and then, for commands with --config, from the
// YAML file: flag > environment > file > default.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "DWELL_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	if cf := fs.Lookup("config"); cf != nil && cf.Value.String() != "" {
		fromEnv := map[string]bool{}
		fs.VisitAll(func(f *flag.Flag) {
			if _, ok := os.LookupEnv("DWELL_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))); ok {
				fromEnv[f.Name] = true
			}
		})
		if err := applyConfigFile(fs, cf.Value.String(), func(name string) bool { return set[name] || fromEnv[name] }); err != nil {
			return usageError{err}
		}
	}
	return nil
}

// applyConfigFile sets flags from a YAML file whose keys are flag names (underscores may stand
// for dashes); lists become comma-separated values. Flags for which given is true keep their
// value. An unknown key is an error, so a typo is not silently ignored.
func applyConfigFile(fs *flag.FlagSet, path string, given func(string) bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var errs []error
	for _, k := range keys {
		name := strings.ReplaceAll(k, "_", "-")
		f := fs.Lookup(name)
		if f == nil || name == "config" {
			var known []string
			fs.VisitAll(func(f *flag.Flag) {
				if f.Name != "config" {
					known = append(known, f.Name)
				}
			})
			errs = append(errs, fmt.Errorf("config %s: unknown key %q (known: %s)", path, k, strings.Join(known, ", ")))
			continue
		}
		if given(name) {
			continue
		}
		var v string
		switch x := doc[k].(type) {
		case []any:
			parts := make([]string, len(x))
			for i, p := range x {
				parts[i] = fmt.Sprint(p)
			}
			v = strings.Join(parts, ",")
		case nil:
			continue
		default:
			v = fmt.Sprint(x)
		}
		if err := f.Value.Set(v); err != nil {
			errs = append(errs, fmt.Errorf("config %s: %s: %q: %w", path, k, v, err))
		}
	}
	return errors.Join(errs...)
}

// bindOperators binds the sessionizer settings to flags on fs.
func bindOperators(fs *flag.FlagSet, c *operators.Config) {
	c.EnsureDefaults()
	fs.DurationVar(&c.VisitGap, "visit-gap", c.VisitGap, "end a visit after this much event time without activity")
	fs.DurationVar(&c.SessionTimeout, "session-timeout", c.SessionTimeout, "close a session after this much event time without activity")
	fs.DurationVar(&c.MaxVisitDuration, "max-visit-duration", c.MaxVisitDuration, "end a visit that lasts this long")
	fs.DurationVar(&c.MaxSessionDuration, "max-session-duration", c.MaxSessionDuration, "close a session that lasts this long")
	fs.DurationVar(&c.ProfileTTL, "profile-ttl", c.ProfileTTL, "forget a profile unseen for this long (profile-created again)")
	fs.DurationVar(&c.MaxOutOfOrderness, "max-out-of-orderness", c.MaxOutOfOrderness, "how far the watermark trails the largest event time")
	fs.DurationVar(&c.AllowedLateness, "allowed-lateness", c.AllowedLateness, "an event further behind its partition's watermark than this is late (beyond-allowed-lateness) and creates nothing; 0: the visit gap")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "wall-clock silence after which the watermark follows the clock")
	fs.DurationVar(&c.MaxFutureSkew, "max-future-skew", c.MaxFutureSkew, "replace event times this far ahead of the record timestamp; live, dead-letter those this far ahead of the clock")
	fs.DurationVar(&c.MaxTimeJump, "max-time-jump", c.MaxTimeJump, "dead-letter events this far ahead of their partition's watermark (negative: off)")
	fs.Func("session-end-types", "comma-separated event types that close their session (default logout)", func(s string) error {
		c.SessionEndTypes = splitList(s)
		return nil
	})
	fs.Func("disable", "comma-separated system-event types not to emit", func(s string) error {
		c.Disabled = c.Disabled[:0]
		for _, n := range splitList(s) {
			t, ok := operators.ParseSystemType(n)
			if !ok {
				return fmt.Errorf("unknown system-event type %q (known: profile-created, session-opened, visit-started, visit-ended, session-closed)", n)
			}
			c.Disabled = append(c.Disabled, t)
		}
		return nil
	})
	fs.IntVar(&c.MaxEventBytes, "max-event-bytes", c.MaxEventBytes, "dead-letter records larger than this")
}

// defaultBrokers is where every command looks for Kafka unless told otherwise.
const defaultBrokers = "localhost:9092"

// bindBrokers binds --brokers, the same in every command that talks to Kafka.
func bindBrokers(fs *flag.FlagSet) *string {
	return fs.String("brokers", defaultBrokers, "comma-separated seed brokers")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseWindow reads the --since and --until of dwell move and dwell log (parseWhen).
func parseWindow(since, until string, now time.Time) (time.Time, time.Time, error) {
	s, err := parseWhen(since, now)
	if err != nil {
		return s, time.Time{}, fmt.Errorf("--since: %w", err)
	}
	u, err := parseWhen(until, now)
	if err != nil {
		return s, u, fmt.Errorf("--until: %w", err)
	}
	return s, u, nil
}

// parseWhen reads RFC 3339 or a duration before now (Go durations, plus d for days); "" is
// the zero time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if d, err := strconv.ParseFloat(n, 64); err == nil && d >= 0 {
			return now.Add(-time.Duration(d * 24 * float64(time.Hour))), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2026-01-02T15:04:05Z) nor a duration ago (90m, 2h, 7d)", s)
	}
	return now.Add(-d), nil
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
