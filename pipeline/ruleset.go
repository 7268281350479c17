package pipeline

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/dwellhq/dwell/operators/rules"
)

// RuleSet is one version of the workflow configuration: the rules and the event registry,
// loaded and replaced together. It is immutable; Live.SetRules swaps the running one at a cycle
// boundary, and a rule set that fails to load never replaces the one running.
type RuleSet struct {
	// Rules is nil when there are no rules.
	Rules *rules.Config
	// Registry is nil when there is none (every event type is accepted).
	Registry *rules.Registry
	// Version names the rule set: the rules file's version, the registry's, or both as
	// "RULES/REGISTRY" when they come from two files.
	Version string
}

// ParseRuleSet loads a rule set from a rules file (which may carry a `registry` section) and
// a registry file; either may be empty (absent). A registry given both ways is an error.
func ParseRuleSet(rulesYAML, registryYAML []byte, opt rules.Options) (*RuleSet, error) {
	rs := &RuleSet{}
	if len(rulesYAML) > 0 {
		cfg, err := rules.Load(rulesYAML, opt)
		if err != nil {
			return nil, err
		}
		rs.Rules, rs.Registry, rs.Version = cfg, cfg.Registry, cfg.Version
	}
	if len(registryYAML) > 0 {
		if rs.Registry != nil {
			return nil, errors.New("pipeline: the rules file has a registry section and a registry file is given too; use one")
		}
		reg, err := rules.LoadRegistry(registryYAML)
		if err != nil {
			return nil, err
		}
		rs.Registry = reg
		if rs.Version == "" {
			rs.Version = reg.Version
		} else {
			rs.Version += "/" + reg.Version
		}
	}
	if rs.Version == "" {
		rs.Version = "none"
	}
	return rs, nil
}

// LoadRuleSet reads and parses the files (an empty path: absent).
func LoadRuleSet(rulesPath, registryPath string, opt rules.Options) (*RuleSet, error) {
	var rulesYAML, registryYAML []byte
	var err error
	if rulesPath != "" {
		if rulesYAML, err = os.ReadFile(rulesPath); err != nil {
			return nil, fmt.Errorf("pipeline: reading rules: %w", err)
		}
		if len(rulesYAML) == 0 {
			return nil, fmt.Errorf("pipeline: rules file %s is empty", rulesPath)
		}
	}
	if registryPath != "" {
		if registryYAML, err = os.ReadFile(registryPath); err != nil {
			return nil, fmt.Errorf("pipeline: reading registry: %w", err)
		}
		if len(registryYAML) == 0 {
			return nil, fmt.Errorf("pipeline: registry file %s is empty", registryPath)
		}
	}
	// Each file alone first, so that an error names the file it is in.
	if _, err := ParseRuleSet(rulesYAML, nil, opt); err != nil {
		return nil, fmt.Errorf("%s: %w", rulesPath, err)
	}
	if _, err := ParseRuleSet(nil, registryYAML, opt); err != nil {
		return nil, fmt.Errorf("%s: %w", registryPath, err)
	}
	return ParseRuleSet(rulesYAML, registryYAML, opt)
}

// DefaultQueue is the queue of notifications and routes whose action names none and whose
// event type's registry entry names none either.
const DefaultQueue = "notifications"

// QueueTopic is the topic of queue q under prefix (Topics.QueuePrefix).
func QueueTopic(prefix, q string) string { return prefix + q }

// OutputTopics lists every topic the rule set can write to, sorted: queue topics (under
// prefix) and the topics of emit actions.
func (rs *RuleSet) OutputTopics(prefix string) []string {
	if rs == nil {
		return nil
	}
	set := map[string]bool{}
	if rs.Rules != nil {
		for _, r := range rs.Rules.Rules {
			for _, a := range r.Actions {
				switch {
				case a.Topic != "":
					set[a.Topic] = true
				case a.Queue != "":
					set[QueueTopic(prefix, a.Queue)] = true
				case a.Kind == rules.ActNotify:
					set[QueueTopic(prefix, DefaultQueue)] = true
				}
			}
		}
	}
	if rs.Registry != nil {
		for _, t := range rs.Registry.Types() {
			if t.Queue != "" {
				set[QueueTopic(prefix, t.Queue)] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

func (rs *RuleSet) versionOrNone() string {
	if rs == nil {
		return "none"
	}
	return rs.Version
}
