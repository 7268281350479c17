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
	// The default names are dwell's wherever it runs; a deployment's own names are checked
	// again when the rule set is applied (Live.SetRules).
	def := DefaultTopics()
	if err := rs.checkReserved(def.QueuePrefix, ReservedTopics(nil, def, DefaultConfigTopic)); err != nil {
		return nil, err
	}
	return rs, nil
}

// DefaultConfigTopic is the default topic of published rule sets (pipeline/rulesrc).
const DefaultConfigTopic = "dwell.config"

// ReservedTopics names the topics dwell itself reads or writes, with what each is: the inputs,
// the outputs in t (queues aside) and the config topic ("" for none). Rules may not write to
// them: an emit there would feed dwell's own input, corrupt its state, or pass for one of its
// outputs.
func ReservedTopics(inputs []string, t Topics, configTopic string) map[string]string {
	m := map[string]string{t.System: "the system-events output", t.Events: "the events output",
		t.Late: "the late-events output", t.Dead: "the dead-letter output", t.Changelog: "the state changelog",
		t.EventLog: "the event log", configTopic: "the config topic"}
	for _, in := range inputs {
		m[in] = "an input topic"
	}
	delete(m, "")
	return m
}

// checkReserved refuses a rule set that writes to a reserved topic, naming each rule (or
// registry type) that would.
func (rs *RuleSet) checkReserved(prefix string, reserved map[string]string) error {
	var errs []error
	rs.writes(prefix, func(topic, who string) {
		if what, ok := reserved[topic]; ok {
			errs = append(errs, fmt.Errorf("pipeline: %s writes to %q, %s; rules write only to queues and topics of their own", who, topic, what))
		}
	})
	return errors.Join(errs...)
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

// writes calls fn for every topic the rule set can write to, with who writes it: each emit
// topic, queue and default queue of its rules, and each registry type's queue (under prefix).
func (rs *RuleSet) writes(prefix string, fn func(topic, who string)) {
	if rs == nil {
		return
	}
	if rs.Rules != nil {
		for _, r := range rs.Rules.Rules {
			for _, a := range r.Actions {
				switch {
				case a.Topic != "":
					fn(a.Topic, fmt.Sprintf("rule %q", r.Name))
				case a.Queue != "":
					fn(QueueTopic(prefix, a.Queue), fmt.Sprintf("rule %q (queue %q)", r.Name, a.Queue))
				case a.Kind == rules.ActNotify:
					fn(QueueTopic(prefix, DefaultQueue), fmt.Sprintf("rule %q (the default queue)", r.Name))
				}
			}
		}
	}
	if rs.Registry != nil {
		for _, t := range rs.Registry.Types() {
			if t.Queue != "" {
				fn(QueueTopic(prefix, t.Queue), fmt.Sprintf("registry type %q (queue %q)", t.Type, t.Queue))
			}
		}
	}
}

// OutputTopics lists every topic the rule set can write to, sorted: queue topics (under
// prefix) and the topics of emit actions.
func (rs *RuleSet) OutputTopics(prefix string) []string {
	set := map[string]bool{}
	rs.writes(prefix, func(topic, _ string) { set[topic] = true })
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
