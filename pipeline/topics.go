package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnsureTopics checks that cfg's inputs exist and are co-partitioned, and that every output and
// internal topic exists with the inputs' partition count (partition p of the changelog and of
// the savepoint topics holds input partition p's state). With create set, missing outputs and
// internal topics are created (topicConfigs); otherwise an error names them and says what to do.
// Missing inputs are an error: EnsureTopicsWith creates them too.
func EnsureTopics(ctx context.Context, cfg LiveConfig, create bool) error {
	return EnsureTopicsWith(ctx, cfg, TopicsPlan{Create: create})
}

// TopicsPlan says what EnsureTopicsWith may create.
type TopicsPlan struct {
	// Create creates missing output and internal topics.
	Create bool
	// InputPartitions > 0 creates missing inputs with this many partitions (with Create), the
	// settings InputTopicConfigs gives merged with InputConfigs. An input that exists keeps its
	// partition count, and the outputs take the inputs' count.
	InputPartitions int32
	InputConfigs    map[string]*string
	// ReplicationFactor of the topics created; 0 or -1: the brokers' default.
	ReplicationFactor int16
	// RuleTopics are the topics a rule set writes to (RuleSet.OutputTopics), checked, and with
	// Create created, with the inputs' partition count as NewLive and SetRules do.
	RuleTopics []string
}

// InputTopicConfigs are the settings of an input topic dwell creates: no time-based retention
// (retention.ms=-1). A replay of history (dwell produce --file) carries old event times as record
// timestamps, which time-based retention would delete at once, and dwell reset --to-earliest
// and --to-datetime need the input back to the savepoints they rewind to (--savepoint-retention,
// 7 days by default); bound the topic by size or set a retention.ms of at least that instead.
func InputTopicConfigs() map[string]*string {
	s := func(v string) *string { return &v }
	return map[string]*string{"retention.ms": s("-1")}
}

// OutputTopics returns the output and internal topics cfg writes to (the event log's only when
// it is on); its Topics must be filled (ensureDefaults, or a config from NewLive's flags).
func OutputTopics(cfg LiveConfig) []string {
	cfg.ensureDefaults()
	out := cfg.Topics
	outputs := []string{out.System, out.Events, out.Late, out.Dead, out.Changelog, out.Savepoints, out.SavepointData}
	if cfg.EventLog != "none" {
		outputs = append(outputs, out.EventLog)
	}
	return outputs
}

// EnsureTopicsWith is EnsureTopics that can create missing inputs too (plan).
func EnsureTopicsWith(ctx context.Context, cfg LiveConfig, plan TopicsPlan) error {
	cfg.ensureDefaults()
	rf := plan.ReplicationFactor
	if rf == 0 {
		rf = -1
	}
	// MetadataMinAge: a metadata answer is cached that long (default 5s), and the wait for the
	// leaders of topics just created would see the listing that found them missing.
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...), kgo.MetadataMinAge(100 * time.Millisecond)}, cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	out, inputs := cfg.Topics, cfg.Inputs
	outputs := OutputTopics(cfg)
	details, err := adm.ListTopics(ctx, append(slices.Clone(inputs), outputs...)...)
	if err != nil {
		return fmt.Errorf("pipeline: listing topics on %v: %w; check --brokers or DWELL_BROKERS and that the brokers are up", cfg.Brokers, err)
	}
	if plan.Create && plan.InputPartitions > 0 {
		var missingIn []string
		for _, in := range inputs {
			if d, ok := details[in]; !ok || d.Err != nil {
				missingIn = append(missingIn, in)
			}
		}
		if len(missingIn) > 0 {
			configs := InputTopicConfigs()
			maps.Copy(configs, plan.InputConfigs)
			perTopic := map[string]map[string]*string{}
			for _, in := range missingIn {
				perTopic[in] = configs
			}
			if err := createTopics(ctx, adm, missingIn, plan.InputPartitions, rf, perTopic); err != nil {
				return err
			}
			cfg.Logger.Info("created input topics", "topics", missingIn, "partitions", plan.InputPartitions)
			if details, err = adm.ListTopics(ctx, append(slices.Clone(inputs), outputs...)...); err != nil {
				return fmt.Errorf("pipeline: listing topics on %v: %w", cfg.Brokers, err)
			}
		}
	}
	partitions := int32(-1)
	for _, in := range inputs {
		d, ok := details[in]
		if !ok || d.Err != nil {
			return fmt.Errorf("pipeline: input topic %q not found; create it with dwell topics create %s (keyed by profile id) or pass --create-topics", in, in)
		}
		n := int32(len(d.Partitions))
		if partitions >= 0 && n != partitions {
			return fmt.Errorf("pipeline: input topics must have the same partition count (co-partitioned); %q has %d, another has %d", in, n, partitions)
		}
		partitions = n
	}
	var missing []string
	for _, o := range outputs {
		d, ok := details[o]
		if !ok || d.Err != nil {
			missing = append(missing, o)
			continue
		}
		if (o == out.Changelog || o == out.Savepoints || o == out.SavepointData) && int32(len(d.Partitions)) != partitions {
			return fmt.Errorf("pipeline: internal topic %q has %d partitions, the inputs %d; they must match", o, len(d.Partitions), partitions)
		}
	}
	if len(missing) > 0 {
		if !plan.Create {
			return fmt.Errorf("pipeline: topics %q not found; create them with %d partitions (%s) or pass --create-topics",
				missing, partitions, configsHelp(cfg))
		}
		if err := createTopics(ctx, adm, missing, partitions, rf, topicConfigs(cfg)); err != nil {
			return err
		}
		cfg.Logger.Info("created topics", "topics", missing, "partitions", partitions)
	}
	return ensureRuleTopics(ctx, adm, inputs, plan.RuleTopics, plan.Create, rf)
}

// topicConfigs are the settings of the internal topics --create-topics makes. The changelog is
// compacted and also deletable (cleanup.policy=compact,delete with no retention limit), so that
// dwell reset can truncate it with DeleteRecords (Kafka refuses that on a compact-only topic);
// the savepoint topics keep savepoints for the savepoint retention.
func topicConfigs(cfg LiveConfig) map[string]map[string]*string {
	s := func(v string) *string { return &v }
	retention := s(strconv.FormatInt(cfg.SavepointRetention.Milliseconds(), 10))
	return map[string]map[string]*string{
		cfg.Topics.Changelog:     {"cleanup.policy": s("compact,delete"), "retention.ms": s("-1"), "retention.bytes": s("-1")},
		cfg.Topics.Savepoints:    {"cleanup.policy": s("delete"), "retention.ms": retention},
		cfg.Topics.SavepointData: {"cleanup.policy": s("delete"), "retention.ms": retention},
	}
}

// configsHelp says the internal topics' settings, for an error that asks to create them.
func configsHelp(cfg LiveConfig) string {
	return fmt.Sprintf("%s with cleanup.policy=compact,delete and retention.ms=-1; %s and %s with retention.ms=%d",
		cfg.Topics.Changelog, cfg.Topics.Savepoints, cfg.Topics.SavepointData, cfg.SavepointRetention.Milliseconds())
}

// createTopics creates topics with partitions each and replication factor rf (-1: the
// brokers' default), with the settings configs holds for them (a topic that exists by now is
// fine), and waits until they have leaders.
func createTopics(ctx context.Context, adm *kadm.Client, topics []string, partitions int32, rf int16, configs map[string]map[string]*string) error {
	var errs []error
	for _, t := range topics {
		resp, err := adm.CreateTopic(ctx, partitions, rf, configs[t], t)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("pipeline: creating topic %q: %w", t, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return WaitForLeaders(ctx, adm, topics, partitions)
}

// WaitForLeaders waits until every partition of topics has a leader in the metadata a client
// sees: a created topic reaches the brokers' metadata caches asynchronously, and the first
// cycle would otherwise find its changelog without partitions.
func WaitForLeaders(ctx context.Context, adm *kadm.Client, topics []string, partitions int32) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		md, err := adm.Metadata(ctx, topics...)
		ready := err == nil
		for _, t := range topics {
			d, ok := md.Topics[t]
			if !ok || d.Err != nil || int32(len(d.Partitions)) != partitions {
				ready = false
				break
			}
			for _, p := range d.Partitions {
				if p.Leader < 0 || p.Err != nil {
					ready = false
				}
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pipeline: created topics %q but they have no leaders after 30s; check the brokers' health", topics)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ensureRuleTopics checks that the topics a rule set writes to exist and, with create, creates
// the missing ones with the inputs' partition count. A rule set whose topics are missing is
// refused before it runs: its first record would otherwise abort every cycle.
func ensureRuleTopics(ctx context.Context, adm *kadm.Client, inputs, topics []string, create bool, rf int16) error {
	if len(topics) == 0 {
		return nil
	}
	details, err := adm.ListTopics(ctx, append(slices.Clone(inputs), topics...)...)
	if err != nil {
		return fmt.Errorf("pipeline: listing topics: %w", err)
	}
	var missing []string
	for _, t := range topics {
		if d, ok := details[t]; !ok || d.Err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	partitions := int32(1)
	if d, ok := details[inputs[0]]; ok && d.Err == nil {
		partitions = int32(len(d.Partitions))
	}
	if !create {
		return configError(fmt.Errorf("pipeline: the rules write to topics %q, which do not exist; create them or pass --create-topics", missing))
	}
	return createTopics(ctx, adm, missing, partitions, rf, nil)
}
