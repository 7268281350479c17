package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/dwellhq/dwell/operators"
)

// newFlags returns a flag set that keeps the order flags were bound in (the help follows it)
// and reports errors instead of printing them.
func newFlags(name string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("dwell "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	return fs
}

// parse parses args as one command's flags (no positional arguments), then applies the
// DWELL_* variables and the --config file (applyEnvAndFile). The commands parse through cobra;
// this is for tests of the flag layer alone.
func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(rewriteSingleDash(fs, args)); err != nil {
		return usageError{flagError(fs, err)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return applyEnvAndFile(fs, os.LookupEnv)
}

// envName is the variable that sets a flag: --visit-gap from DWELL_VISIT_GAP.
func envName(flag string) string {
	return "DWELL_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnvAndFile fills every flag not given on the command line from its DWELL_* variable
// (--visit-gap from DWELL_VISIT_GAP), and then, for commands with --config, from the YAML
// file: flag > environment > file > default.
func applyEnvAndFile(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) error {
	fromEnv := map[string]bool{}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		env := envName(f.Name)
		v, ok := lookupEnv(env)
		if !ok && f.Shorthand != "" { // DWELL_V, from when -v was the flag's name
			env = envName(f.Shorthand)
			v, ok = lookupEnv(env)
		}
		if ok {
			fromEnv[f.Name] = true
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %s", env, v, want(f, err)))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	if cf := fs.Lookup("config"); cf != nil && cf.Value.String() != "" {
		given := func(name string) bool {
			f := fs.Lookup(name)
			return f.Changed || fromEnv[name]
		}
		if err := applyConfigFile(fs, cf.Value.String(), given); err != nil {
			return usageError{err}
		}
	}
	return nil
}

// applyConfigFile sets flags from a YAML file whose keys are flag names (underscores may stand
// for dashes); lists become comma-separated values. Flags for which given is true keep their
// value. An unknown key is an error, so a typo is not silently ignored.
func applyConfigFile(fs *pflag.FlagSet, path string, given func(string) bool) error {
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
		if f == nil && len(name) == 1 { // v: from when -v was the flag's name
			if f = fs.ShorthandLookup(name); f != nil {
				name = f.Name
			}
		}
		if f == nil || name == "config" || name == "help" {
			var known []string
			fs.VisitAll(func(f *pflag.Flag) {
				if f.Name != "config" && f.Name != "help" {
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
			errs = append(errs, fmt.Errorf("config %s: %s: %q: %s", path, k, v, want(f, err)))
		}
	}
	return errors.Join(errs...)
}

// want says what a flag's value should look like, after a value was refused: the expected
// format for the usual kinds, else the refusal itself (a list flag's own check).
func want(f *pflag.Flag, err error) string {
	switch f.Value.Type() {
	case "duration":
		return "want a duration such as 30m, 1h30m or 90s"
	case "int", "int64":
		if strings.HasSuffix(f.Name, "-bytes") {
			return "want a size in bytes, a whole number such as 1048576"
		}
		return "want a whole number such as 100"
	case "uint64":
		return "want a whole number, 0 or more"
	case "float64":
		return "want a number such as 0.5 or 250"
	case "bool":
		return "want true or false"
	}
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return ne.Err.Error()
	}
	return err.Error()
}

// flagError turns pflag's parse errors into short ones that name the flag and what it wants.
func flagError(fs *pflag.FlagSet, err error) error {
	var (
		inv *pflag.InvalidValueError
		req *pflag.ValueRequiredError
		nx  *pflag.NotExistError
	)
	switch {
	case errors.As(err, &inv):
		return fmt.Errorf("invalid value %q for --%s: %s", inv.GetValue(), inv.GetFlag().Name, want(inv.GetFlag(), errors.Unwrap(inv)))
	case errors.As(err, &req):
		f := req.GetFlag()
		return fmt.Errorf("--%s needs a value: %s", f.Name, strings.TrimPrefix(want(f, errors.New("")), "want "))
	case errors.As(err, &nx):
		name := nx.GetSpecifiedName()
		if nx.GetSpecifiedShortnames() != "" {
			return fmt.Errorf("unknown flag -%s", nx.GetSpecifiedShortnames())
		}
		if s := suggestFlag(fs, name); s != "" {
			return fmt.Errorf("unknown flag --%s; did you mean --%s?", name, s)
		}
		return fmt.Errorf("unknown flag --%s", name)
	}
	return err
}

// suggestFlag returns the known flag closest to name, or "".
func suggestFlag(fs *pflag.FlagSet, name string) string {
	best, bestD := "", 3
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		d := levenshtein(name, f.Name)
		if len(name) >= 3 && strings.HasPrefix(f.Name, name) {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = f.Name, d
		}
	})
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// rewriteSingleDash turns the Go-style single-dash long flags of old scripts (-brokers x,
// -visit-gap=5m) into --brokers and --visit-gap=5m when fs knows the name; anything else,
// and everything after --, is left alone.
func rewriteSingleDash(fs *pflag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && (fs.Lookup(name) != nil || name == "help") {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}

// Flag groups: the help lists a command's flags under these headings, in the order bound.
const (
	groupKafka    = "Kafka"
	groupIO       = "Input and outputs"
	groupSessions = "Sessions and time"
	groupRules    = "Rules"
	groupState    = "State"
	groupLimits   = "Limits"
	groupObserve  = "Observability"
	groupAdmin    = "Admin API"
	groupGen      = "Generated stream"
	groupSelect   = "Selection"
	groupDelivery = "Delivery"
	groupBench    = "Measurement"
	groupOther    = "Other"
	groupAnn      = "dwell_group" // the pflag annotation that holds a flag's group
)

// inGroup runs bind and files every flag it adds to fs, and not already in a group, under
// group.
func inGroup(fs *pflag.FlagSet, group string, bind func()) {
	before := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) { before[f.Name] = true })
	bind()
	fs.VisitAll(func(f *pflag.Flag) {
		if !before[f.Name] && len(f.Annotations[groupAnn]) == 0 {
			_ = fs.SetAnnotation(f.Name, groupAnn, []string{group})
		}
	})
}

// listValue is a comma-separated list flag whose elements set checks.
type listValue struct {
	s   string
	set func([]string) error
}

func (l *listValue) String() string { return l.s }
func (l *listValue) Type() string   { return "list" }
func (l *listValue) Set(s string) error {
	if err := l.set(splitList(s)); err != nil {
		return err
	}
	l.s = s
	return nil
}

// bindOperators binds the sessionizer settings to flags on fs.
func bindOperators(fs *pflag.FlagSet, c *operators.Config) {
	c.EnsureDefaults()
	inGroup(fs, groupSessions, func() {
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
		fs.Var(&listValue{s: strings.Join(c.SessionEndTypes, ","), set: func(l []string) error {
			c.SessionEndTypes = l
			return nil
		}}, "session-end-types", "event `TYPE,...` that close their session")
		fs.Var(&listValue{set: func(l []string) error {
			var d []operators.SystemType
			for _, n := range l {
				t, ok := operators.ParseSystemType(n)
				if !ok {
					return fmt.Errorf("unknown system-event type %q (known: profile-created, session-opened, visit-started, visit-ended, session-closed)", n)
				}
				d = append(d, t)
			}
			c.Disabled = d
			return nil
		}}, "disable", "system-event `TYPE,...` not to emit")
	})
	inGroup(fs, groupLimits, func() {
		fs.IntVar(&c.MaxEventBytes, "max-event-bytes", c.MaxEventBytes, "dead-letter records larger than this many `BYTES`")
	})
}

// defaultBrokers is where every command looks for Kafka unless told otherwise.
const defaultBrokers = "localhost:9092"

// bindBrokers binds --brokers, the same in every command that talks to Kafka.
func bindBrokers(fs *pflag.FlagSet) *string {
	var s *string
	inGroup(fs, groupKafka, func() { s = fs.String("brokers", defaultBrokers, "`HOST:PORT,...`: the seed brokers") })
	return s
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
