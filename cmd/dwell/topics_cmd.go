package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dwellhq/dwell/operators/rules"
	"github.com/dwellhq/dwell/pipeline"
)

// newTopicsCmd is dwell topics create|list|describe: the topic tool a Kafka download without
// kafka-topics (or a managed cluster) lacks, with the settings dwell's inputs need.
func newTopicsCmd(e *cliEnv) *cobra.Command {
	cmd := parentCmd("topics", "create, list and describe topics (inputs with the retention dwell needs)")
	cmd.AddCommand(newTopicsCreateCmd(e), newTopicsListCmd(e), newTopicsDescribeCmd(e))
	return cmd
}

func newTopicsCreateCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create TOPIC... [--partitions N] [--replication-factor N] [--kind input|output] [--topic-config KEY=VALUE]... [--if-not-exists] | create --all [--inputs T,...] [--group G]",
		Short: "create topics and wait until every partition has a leader",
		Long: `Create topics and wait until every partition has a leader.

An input topic (the default --kind) gets retention.ms=-1: replayed history carries old event
times as record timestamps, which time-based retention would delete at once, and dwell reset
rewinds the input. An output topic gets the brokers' defaults. An existing topic is an error;
with --if-not-exists it is accepted when its partition count is the one asked for.
With --all, create every topic a dwell run with the same --inputs, --group, --application-id
and topic flags needs, exactly as its --create-topics would.`,
		Args: cobra.ArbitraryArgs,
	}
	fs := cmd.Flags()
	brokers := bindBrokers(fs)
	kafka := bindKafka(fs)
	cfg := pipeline.DefaultLiveConfig()
	cfg.Topics.Changelog, cfg.Topics.Savepoints, cfg.Topics.SavepointData = "", "", "" // from the application id
	var (
		partitions, rf               *int
		kind, inputs                 *string
		configs                      *[]string
		ifNotExists, all             *bool
		rulesFile, regFile, eventLog *string
	)
	inGroup(fs, groupIO, func() {
		partitions = fs.Int("partitions", defaultPartitions, "`N` partitions per topic (outputs of --all take the inputs' count)")
		rf = fs.Int("replication-factor", -1, "`N` replicas per partition (-1: the brokers' default)")
		kind = fs.String("kind", topicKindInput, "`KIND`: input (retention.ms=-1) or output (the brokers' defaults)")
		configs = fs.StringArrayP("topic-config", "c", nil, "a topic setting `KEY=VALUE` over the kind's defaults (repeatable)")
		ifNotExists = fs.Bool("if-not-exists", false, "accept an existing topic with the same partition count")
	})
	inGroup(fs, groupSelect, func() {
		all = fs.Bool("all", false, "create every topic dwell run with these flags needs: inputs, outputs, changelog, savepoints")
		inputs = fs.String("inputs", "events", "with --all: input `TOPIC,...`")
		fs.StringVar(&cfg.Group, "group", cfg.Group, "with --all: consumer `GROUP`")
		fs.StringVar(&cfg.ApplicationID, "application-id", "", "with --all: `ID` naming the internal topics; default the --group")
		bindOutputTopics(fs, &cfg)
		fs.DurationVar(&cfg.SavepointRetention, "savepoint-retention", cfg.SavepointRetention, "with --all: retention of the savepoint topics")
		fs.StringVar(&cfg.Topics.QueuePrefix, "queue-topic-prefix", cfg.Topics.QueuePrefix, "with --all: queue topics are this `PREFIX` plus the queue name")
		rulesFile = fs.String("rules", "", "with --all: the rules `FILE` dwell run will run, for the topics it writes to (queues) and the event log")
		regFile = fs.String("registry", "", "with --all: the event registry `FILE`, for its queues")
		eventLog = fs.String("event-log", "", "with --all: `WHICH` events dwell run logs (all, errors, none; default all with --rules, else none), for the event log topic")
	})
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		conn, err := kafka.conn(*brokers)
		if err != nil {
			return err
		}
		if *rf < -1 || *rf == 0 || *rf > 32767 {
			return usageError{fmt.Errorf("topics create: --replication-factor must be -1 or 1 or more, got %d", *rf)}
		}
		if *partitions <= 0 {
			return usageError{fmt.Errorf("topics create: --partitions must be positive, got %d", *partitions)}
		}
		if *all {
			if len(args) > 0 {
				return usageError{errors.New("topics create: --all names its topics from --inputs and the topic flags; pass no TOPIC")}
			}
			cfg.Brokers, cfg.ClientOpts, cfg.Inputs = conn.Brokers, conn.ClientOpts, splitList(*inputs)
			if len(cfg.Inputs) == 0 {
				return usageError{errors.New("topics create: --all needs --inputs")}
			}
			var ruleTopics []string
			cfg.EventLog = "none"
			if *rulesFile != "" || *regFile != "" {
				rs, err := pipeline.LoadRuleSet(*rulesFile, *regFile, rules.Options{})
				if err != nil {
					return err
				}
				ruleTopics = rs.OutputTopics(cfg.Topics.QueuePrefix)
				cfg.EventLog = "all"
			}
			switch *eventLog {
			case "":
			case "all", "errors", "none":
				cfg.EventLog = *eventLog
			default:
				return usageError{fmt.Errorf("topics create: --event-log %q: use all, errors or none", *eventLog)}
			}
			plan := pipeline.TopicsPlan{InputPartitions: int32(*partitions), ReplicationFactor: int16(*rf)}
			return topicsCreateAll(cmd.Context(), cfg, plan, ruleTopics, 0, e.stdout)
		}
		kv, err := parseTopicConfigs(*configs)
		if err != nil {
			return usageError{fmt.Errorf("topics create: %w", err)}
		}
		return topicsCreate(cmd.Context(), conn, topicsCreateOptions{
			Topics: args, Kind: *kind, Partitions: int32(*partitions), ReplicationFactor: int16(*rf),
			Configs: kv, IfNotExists: *ifNotExists,
		}, e.stdout)
	}
	return cmd
}

func newTopicsListCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [--internal] [--json]",
		Short: "list topics with their partition count and replication factor",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	brokers := bindBrokers(fs)
	kafka := bindKafka(fs)
	var internal, asJSON *bool
	inGroup(fs, groupSelect, func() {
		internal = fs.Bool("internal", false, "also the __ topics (consumer offsets, transaction state)")
		asJSON = fs.Bool("json", false, "one JSON object per topic and line")
	})
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		conn, err := kafka.conn(*brokers)
		if err != nil {
			return err
		}
		return topicsList(cmd.Context(), conn, topicsListOptions{Internal: *internal, JSON: *asJSON}, e.stdout)
	}
	return cmd
}

func newTopicsDescribeCmd(e *cliEnv) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "describe TOPIC... [--json]",
		Short: "show partitions (leader, replicas, ISR, offsets) and the settings that are not defaults",
		Args:  cobra.ArbitraryArgs,
	}
	fs := cmd.Flags()
	brokers := bindBrokers(fs)
	kafka := bindKafka(fs)
	var asJSON *bool
	inGroup(fs, groupSelect, func() {
		asJSON = fs.Bool("json", false, "one JSON object per topic and line")
	})
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usageError{errors.New("topics describe: name at least one topic: dwell topics describe TOPIC...")}
		}
		conn, err := kafka.conn(*brokers)
		if err != nil {
			return err
		}
		return topicsDescribe(cmd.Context(), conn, topicsDescribeOptions{Topics: args, JSON: *asJSON}, e.stdout)
	}
	return cmd
}
