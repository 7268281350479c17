package rulesrc

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline"
)

// Apply installs a rule set in the processor (Live.SetRules). An error means the processor
// refused it and runs the version it had.
type Apply func(*pipeline.RuleSet) error

// Source is where rule-set versions come from: Files or Topic.
type Source interface {
	// Load returns the current version, to start the processor with (nil: none yet), and
	// records it as running. An error means the source is unusable or, for files, invalid.
	Load(ctx context.Context) (*pipeline.RuleSet, error)
	// Watch applies every new valid version until ctx is done, then returns nil; it returns
	// an error only when it cannot go on.
	Watch(ctx context.Context, apply Apply) error
	// Close releases what the source holds.
	Close() error
}

var (
	_ Source = (*Files)(nil)
	_ Source = (*Topic)(nil)
)

// Content is a rule set as text: what the files hold and what a config-topic record carries.
// Either part may be empty (absent).
type Content struct {
	Rules, Registry []byte
	// RulesName and RegistryName say where the parts come from (file paths); errors start
	// with the name of the part at fault.
	RulesName, RegistryName string
}

var (
	// ErrNoTopic is returned when the config topic does not exist.
	ErrNoTopic = errors.New("rulesrc: config topic not found")
	// errEmpty: an empty file is far more often a write in progress than an intent.
	errEmpty = errors.New("rulesrc: empty file")
)

// ReadFiles reads a rules file and a registry file (an empty path: absent). An empty file is
// an error.
func ReadFiles(rulesPath, registryPath string) (Content, error) {
	c := Content{RulesName: rulesPath, RegistryName: registryPath}
	if rulesPath == "" && registryPath == "" {
		return c, errors.New("rulesrc: neither a rules file nor a registry file is given")
	}
	var err error
	if c.Rules, err = readNonEmpty(rulesPath); err != nil {
		return c, err
	}
	if c.Registry, err = readNonEmpty(registryPath); err != nil {
		return c, err
	}
	return c, nil
}

func readNonEmpty(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rulesrc: %w", err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: %s", errEmpty, path)
	}
	return b, nil
}

// Parse validates and compiles c (pipeline.ParseRuleSet). A load error is returned wrapped
// (errors.As finds the *rules.LoadError), prefixed with the name of the part it is in.
func (c Content) Parse() (*pipeline.RuleSet, error) {
	if len(c.Rules) == 0 && len(c.Registry) == 0 {
		return nil, errors.New("rulesrc: the rule set is empty: no rules and no registry")
	}
	rs, err := pipeline.ParseRuleSet(c.Rules, c.Registry, rules.Options{})
	if err == nil {
		return rs, nil
	}
	// ParseRuleSet does not say which part failed: the rules do if they fail alone.
	where := c.RulesName
	if len(c.Rules) == 0 {
		where = c.RegistryName
	} else if len(c.Registry) > 0 {
		if _, rerr := rules.Load(c.Rules, rules.Options{}); rerr == nil {
			var le *rules.LoadError
			if errors.As(err, &le) {
				where = c.RegistryName
			} else {
				where = c.RulesName + ", " + c.RegistryName
			}
		}
	}
	if where == "" {
		return nil, err
	}
	return nil, fmt.Errorf("%s: %w", where, err)
}

// sum identifies the content of a rule set: a version is applied only when it changes.
func (c Content) sum() [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, part := range [][]byte{c.Rules, c.Registry} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// applier is what both sources share: the version running, and how a new one is applied or
// rejected, logged and counted. It is used by one goroutine at a time.
type applier struct {
	source  string // metric label: file, topic
	log     *slog.Logger
	m       *Metrics
	sum     [32]byte // content of the version running; zero before the first
	version string
}

func newApplier(source string, log *slog.Logger, m *Metrics) applier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m.init(source)
	return applier{source: source, log: log.With("component", "rules", "source", source), m: m}
}

func (a *applier) running(rs *pipeline.RuleSet, sum [32]byte) {
	a.sum, a.version = sum, rs.Version
	a.m.running(rs.Version)
}

// apply hands rs to the processor; it reports whether it was applied.
func (a *applier) apply(apply Apply, rs *pipeline.RuleSet, sum [32]byte, attrs ...any) bool {
	if err := apply(rs); err != nil {
		a.reject(err, append(attrs, "version", rs.Version)...)
		return false
	}
	prev := a.version
	attrs = append(attrs, "version", rs.Version, "previous", prev)
	if prev == rs.Version {
		a.log.Warn("rules applied; the content changed but the version did not: bump `version` to tell them apart", attrs...)
	} else {
		a.log.Info("rules applied", attrs...)
	}
	// The metrics move last: whoever sees them sees the log line.
	a.running(rs, sum)
	a.m.reload(a.source, resultApplied)
	return true
}

// reject logs and counts a version that does not replace the one running.
func (a *applier) reject(err error, attrs ...any) {
	var le *rules.LoadError
	if errors.As(err, &le) {
		if le.Line > 0 {
			attrs = append(attrs, "line", le.Line, "column", le.Column)
		}
		if le.Rule != "" {
			attrs = append(attrs, "rule", le.Rule)
		}
		if le.Type != "" {
			attrs = append(attrs, "type", le.Type)
		}
	}
	running := a.version
	if running == "" {
		running = "(none)"
	}
	a.log.Error("rules rejected; the running version stays", append(attrs, "running", running, "err", err)...)
	a.m.reload(a.source, resultRejected)
}
