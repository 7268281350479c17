package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// logFlags are the logging flags of every long-running command (run, deliver, demo):
// --log-format, --log-level, and -v/--verbose, which means --log-level debug (kept from before
// --log-level, with DWELL_V and a v: key; see applyEnvAndFile).
type logFlags struct {
	format, level string
	verbose       bool
}

// bindLog binds the logging flags in the Observability group; level is the default level.
func bindLog(fs *pflag.FlagSet, level string) *logFlags {
	l := &logFlags{format: "text", level: level}
	inGroup(fs, groupObserve, func() {
		fs.StringVar(&l.format, "log-format", l.format, "`FORMAT` of the log lines on stderr: text (key=value) or json (one object a line, for log collectors)")
		fs.StringVar(&l.level, "log-level", l.level, "the least `LEVEL` logged: debug, info, warn or error (the Kafka client's own lines: --kafka-log-level where there is one)")
		fs.BoolVarP(&l.verbose, "verbose", "v", false, "log at debug level (--log-level debug)")
	})
	return l
}

// logger returns the logger the flags describe, writing to w. Pebble's and the Kafka client's
// lines go through it too (state.Options.Logger, pipeline.LiveConfig.KafkaLogLevel).
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil || !validLevel(l.level) {
		return nil, usageError{fmt.Errorf("--log-level %q: use debug, info, warn or error", l.level)}
	}
	if l.verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: use text or json", l.format)}
}

// validLevel: one of the four names (slog also accepts offsets such as info+2, which the flag
// does not promise).
func validLevel(s string) bool {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}
