package rulesrc

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/dwellhq/dwell/pipeline"
)

// FileConfig configures Files. Zero fields take the defaults given.
type FileConfig struct {
	// RulesPath and RegistryPath name the files; at least one is required.
	RulesPath, RegistryPath string
	// Interval is how often the files are checked for a change. Default 2s; negative: never
	// (only on a signal).
	Interval time.Duration
	// Signals, if set, reloads on every value received (the caller signal.Notify's SIGHUP on
	// it and owns it).
	Signals <-chan os.Signal
	// Logger, default discard. Metrics, if set, receives the reloads and the version.
	Logger  *slog.Logger
	Metrics *Metrics
}

// racyWindow: a file modified this close to (or after) the moment it was read may have changed
// again within its timestamp's granularity (coarse kernel clocks, 1-2s on some file systems)
// without its size or mtime showing it, so it is read again until it is older.
const racyWindow = 2 * time.Second

// Files is a Source that follows a rules file and a registry file.
type Files struct {
	cfg    FileConfig
	a      applier
	stamps [2]stamp  // rules, registry, as last seen
	read   time.Time // when the files were last read
	tried  [32]byte  // the content last parsed (or the read error last seen) by a poll
	loaded bool      // the files have been read once
}

// stamp is what a poll looks at before reading a file.
type stamp struct {
	exists bool
	mod    time.Time
	size   int64
}

// NewFiles returns a Source of the files in cfg.
func NewFiles(cfg FileConfig) *Files {
	if cfg.Interval == 0 {
		cfg.Interval = 2 * time.Second
	}
	return &Files{cfg: cfg, a: newApplier("file", cfg.Logger, cfg.Metrics)}
}

// WatchFiles applies the files' current version, then every change, until ctx is done.
func WatchFiles(ctx context.Context, cfg FileConfig, apply Apply) error {
	return NewFiles(cfg).Watch(ctx, apply)
}

// Load reads and parses the files; an invalid file is an error.
func (f *Files) Load(context.Context) (*pipeline.RuleSet, error) {
	f.stat(time.Now())
	c, err := ReadFiles(f.cfg.RulesPath, f.cfg.RegistryPath)
	if err != nil {
		return nil, err
	}
	rs, err := c.Parse()
	if err != nil {
		return nil, err
	}
	f.loaded, f.tried = true, c.sum()
	f.a.running(rs, f.tried)
	f.a.log.Info("rules loaded", "version", rs.Version, "rules_file", f.cfg.RulesPath, "registry_file", f.cfg.RegistryPath)
	return rs, nil
}

// Watch checks the files at once (applying what changed since Load, or without Load the
// current version), then at every interval and on every signal, until ctx is done.
func (f *Files) Watch(ctx context.Context, apply Apply) error {
	var tick <-chan time.Time
	if f.cfg.Interval > 0 {
		t := time.NewTicker(f.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	f.poll(apply, false)
	f.a.log.Info("watching rules files", "rules_file", f.cfg.RulesPath, "registry_file", f.cfg.RegistryPath,
		"interval", f.cfg.Interval, "on_signal", f.cfg.Signals != nil)
	signals := f.cfg.Signals
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			f.poll(apply, false)
		case sig, ok := <-signals:
			if !ok {
				signals = nil
				continue
			}
			f.a.log.Info("reloading rules", "signal", sig)
			f.poll(apply, true)
		}
	}
}

// Close does nothing: Files holds no resources between polls.
func (f *Files) Close() error { return nil }

// stat records the files' stamps and reports whether any may have changed since they were read.
func (f *Files) stat(now time.Time) bool {
	changed := !f.loaded
	for i, path := range []string{f.cfg.RulesPath, f.cfg.RegistryPath} {
		if path == "" {
			continue
		}
		var st stamp
		if fi, err := os.Stat(path); err == nil {
			st = stamp{exists: true, mod: fi.ModTime(), size: fi.Size()}
		} else if !errors.Is(err, fs.ErrNotExist) {
			changed = true // unreadable: read to report why
		}
		if st != f.stamps[i] || (st.exists && !st.mod.Before(f.read.Add(-racyWindow))) {
			changed = true
		}
		f.stamps[i] = st
	}
	if changed {
		f.read = now
	}
	return changed
}

// poll reads the files if they may have changed (always when forced) and applies a new valid
// version. Unforced, a content already tried is not tried again; forced (a signal), any content
// other than the running version's is.
func (f *Files) poll(apply Apply, force bool) {
	if !f.stat(time.Now()) && !force {
		return
	}
	c, err := ReadFiles(f.cfg.RulesPath, f.cfg.RegistryPath)
	sum := c.sum()
	if err != nil {
		sum = sha256.Sum256([]byte("error: " + err.Error()))
	}
	if sum == f.tried && !force {
		return
	}
	f.tried, f.loaded = sum, true
	if errors.Is(err, errEmpty) && !force {
		// Most likely truncated by a writer that has not written yet: its next write is a change.
		f.a.log.Warn("a rules file is empty; waiting for it to be written", "err", err)
		return
	}
	if err != nil {
		f.a.reject(err)
		return
	}
	if sum == f.a.sum {
		f.a.log.Debug("rules unchanged", "version", f.a.version)
		return
	}
	rs, err := c.Parse()
	if err != nil {
		f.a.reject(err)
		return
	}
	f.a.apply(apply, rs, sum, "rules_file", f.cfg.RulesPath, "registry_file", f.cfg.RegistryPath)
}
