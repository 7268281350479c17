package pipeline_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/pipelinetest"
)

// emitRules is a rule set whose one rule emits to topic, and routes to queue when set.
func emitRules(topic, queue string) []byte {
	y := fmt.Sprintf("version: v1\nrules:\n  - name: copy\n    on: page-view\n    actions:\n      - emit: {type: copied, topic: %q}\n", topic)
	if queue != "" {
		y += fmt.Sprintf("      - route: %q\n", queue)
	}
	return []byte(y)
}

// TestRulesRefuseReservedTopics: a rule set that writes to a topic dwell owns is refused when
// it loads (dwell config validate, apply, process) for the default names, naming the rule and
// the topic's role; a queue of its own and a topic of its own are fine.
func TestRulesRefuseReservedTopics(t *testing.T) {
	def := pipeline.DefaultTopics()
	for topic, role := range map[string]string{def.System: "system-events output", def.Events: "events output",
		def.Late: "late-events output", def.Dead: "dead-letter output", def.Changelog: "state changelog",
		def.EventLog: "event log", pipeline.DefaultConfigTopic: "config topic"} {
		_, err := pipeline.ParseRuleSet(emitRules(topic, ""), nil, rules.Options{})
		if err == nil || !strings.Contains(err.Error(), `rule "copy" writes to "`+topic+`"`) || !strings.Contains(err.Error(), role) {
			t.Errorf("emit to %s: %v; want it refused as the %s", topic, err, role)
		}
	}
	if _, err := pipeline.ParseRuleSet(emitRules("orders", "slow-lane"), nil, rules.Options{}); err != nil {
		t.Errorf("a topic and a queue of the rules' own: %v", err)
	}
}

// TestSetRulesRefusesReservedTopics: a running processor refuses a rule set that writes to its
// own input or to its (renamed) outputs, and keeps the rule set it runs.
func TestSetRulesRefusesReservedTopics(t *testing.T) {
	k := pipelinetest.New(t, 1, []string{"clicks", "orders"})
	topics := pipeline.Topics{System: "sys-out", Events: "ev-out", Late: "late-out", Dead: "dead-out",
		Changelog: "state-log", EventLog: "elog", QueuePrefix: "q."}
	l, err := pipeline.NewLive(pipeline.LiveConfig{Brokers: k.Brokers, Group: k.Name("g"), Inputs: []string{k.Name("clicks")},
		Topics: topics, DataDir: "data", FS: vfs.NewMem(), ConfigTopic: "my-config"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, topic := range []string{k.Name("clicks"), "sys-out", "state-log", "my-config"} {
		rs, err := pipeline.ParseRuleSet(emitRules(topic, ""), nil, rules.Options{})
		if err != nil {
			t.Fatalf("%s is not a default name, so loading is fine: %v", topic, err)
		}
		if err := l.SetRules(rs); err == nil || !errors.Is(err, pipeline.ErrConfig) || !strings.Contains(err.Error(), topic) {
			t.Errorf("emit to %s: SetRules = %v; want a configuration error naming it", topic, err)
		}
		if v := l.RuleSetVersion(); v != "none" {
			t.Errorf("after refusing a rule set the processor runs %q", v)
		}
	}
	rs, err := pipeline.ParseRuleSet(emitRules(k.Name("orders"), ""), nil, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetRules(rs); err != nil {
		t.Errorf("a topic of the rules' own: %v", err)
	}
}
