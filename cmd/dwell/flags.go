package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

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
// variable (--visit-gap from DWELL_VISIT_GAP).
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
	return nil
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
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "wall-clock silence after which the watermark follows the clock")
	fs.DurationVar(&c.MaxFutureSkew, "max-future-skew", c.MaxFutureSkew, "replace event times this far ahead of the record timestamp")
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

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
