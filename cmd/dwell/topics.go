package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dwellhq/dwell/pipeline"
)

// defaultPartitions is the partition count of the topics dwell creates unless told otherwise:
// enough for a few instances of dwell run to share the work (a topic's partitions bound the
// instances that process it in parallel, and adding partitions later moves keys).
const defaultPartitions = 6

// Topic kinds of dwell topics create.
const (
	topicKindInput  = "input"
	topicKindOutput = "output"
)

// topicsCreateOptions are dwell topics create's settings.
type topicsCreateOptions struct {
	Topics []string
	// Kind is input (the default: no time-based retention, pipeline.InputTopicConfigs) or
	// output (the brokers' defaults).
	Kind              string
	Partitions        int32             // default defaultPartitions
	ReplicationFactor int16             // 0 or -1: the brokers' default
	Configs           map[string]string // topic settings, over the kind's defaults
	// IfNotExists makes an existing topic with the same partition count fine; one with another
	// count is still an error that says so.
	IfNotExists bool
}

// topicsCreate creates the topics and waits until every partition has a leader, so that a
// producer or dwell run started next finds them. It prints one line per topic to stdout.
func topicsCreate(ctx context.Context, conn connectOptions, o topicsCreateOptions, stdout io.Writer) error {
	if len(o.Topics) == 0 {
		return usageError{errors.New("topics create: name at least one topic")}
	}
	if o.Partitions == 0 {
		o.Partitions = defaultPartitions
	}
	if o.Partitions < 0 {
		return usageError{fmt.Errorf("topics create: --partitions must be positive, got %d", o.Partitions)}
	}
	rf := o.ReplicationFactor
	if rf == 0 {
		rf = -1
	}
	configs := map[string]*string{}
	switch o.Kind {
	case "", topicKindInput:
		configs = pipeline.InputTopicConfigs()
	case topicKindOutput:
	default:
		return usageError{fmt.Errorf("topics create: --kind %q: use input or output", o.Kind)}
	}
	for k, v := range o.Configs {
		configs[k] = &v
	}
	_, adm, err := connectKafka(ctx, conn)
	if err != nil {
		return err
	}
	defer adm.Close()
	existing, err := adm.ListTopics(ctx, o.Topics...)
	if err != nil {
		return fmt.Errorf("topics create: listing topics: %w", err)
	}
	var created []string
	var errs []error
	for _, t := range o.Topics {
		if err := checkExisting(existing, t, o.Partitions, o.IfNotExists); err != nil {
			errs = append(errs, err)
			continue
		} else if existing.Has(t) {
			fmt.Fprintf(stdout, "topic %s exists with %d partitions\n", t, len(existing[t].Partitions))
			continue
		}
		resp, err := adm.CreateTopic(ctx, o.Partitions, rf, configs, t)
		if err == nil {
			err = resp.Err
			if err != nil && resp.ErrMessage != "" {
				err = fmt.Errorf("%w: %s", err, resp.ErrMessage)
			}
		}
		switch {
		case errors.Is(err, kerr.TopicAlreadyExists) && o.IfNotExists:
			// Created by someone else since the listing: checked below with the others.
			created = append(created, t)
		case errors.Is(err, kerr.TopicAlreadyExists):
			errs = append(errs, fmt.Errorf("topic %q exists; pass --if-not-exists to accept it", t))
		case err != nil:
			errs = append(errs, fmt.Errorf("creating topic %q: %w", t, err))
		default:
			created = append(created, t)
		}
	}
	if len(created) > 0 {
		if err := pipeline.WaitForLeaders(ctx, adm, created, o.Partitions); err != nil {
			errs = append(errs, err)
		} else {
			for _, t := range created {
				fmt.Fprintf(stdout, "created topic %s: %d partitions, %s\n", t, o.Partitions, configLine(configs))
			}
		}
	}
	return errors.Join(errs...)
}

// checkExisting says whether topic t, if it exists, is an error: always without ifNotExists,
// and with it when its partition count is not the one asked for.
func checkExisting(existing kadm.TopicDetails, t string, partitions int32, ifNotExists bool) error {
	if !existing.Has(t) {
		return nil
	}
	d := existing[t]
	if d.Err != nil {
		return fmt.Errorf("topic %q: %w", t, d.Err)
	}
	have := int32(len(d.Partitions))
	switch {
	case !ifNotExists:
		return fmt.Errorf("topic %q exists (%d partitions); pass --if-not-exists to accept it", t, have)
	case have != partitions:
		return fmt.Errorf("topic %q exists with %d partitions, not %d; a topic's partition count decides which partition a key goes to, so dwell does not change it (use --partitions %d, or another topic)", t, have, partitions, have)
	}
	return nil
}

func configLine(configs map[string]*string) string {
	if len(configs) == 0 {
		return "the brokers' default settings"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(configs)) {
		parts = append(parts, k+"="+*configs[k])
	}
	return strings.Join(parts, " ")
}

// parseTopicConfigs reads repeated --topic-config key=value settings.
func parseTopicConfigs(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usageError{fmt.Errorf("--topic-config %q: use key=value, e.g. retention.ms=604800000", kv)}
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

// topicsCreateAll creates every topic a dwell run with cfg needs (its inputs, with
// inputPartitions partitions and the input settings, then its outputs and internal topics with
// the inputs' partition count, exactly as dwell run --create-topics does) and prints the ones it
// created. cfg carries the brokers, inputs, group/application id and topic names of dwell run's
// flags.
//
// ruleTopics are the topics a rule set writes to (pipeline.RuleSet.OutputTopics), created like
// the outputs, as dwell run --create-topics creates them when it loads the rules.
func topicsCreateAll(ctx context.Context, cfg pipeline.LiveConfig, plan pipeline.TopicsPlan, ruleTopics []string, connectTimeout time.Duration, stdout io.Writer) error {
	conn := connectOptions{Brokers: cfg.Brokers, ClientOpts: cfg.ClientOpts, Timeout: connectTimeout}
	_, adm, err := connectKafka(ctx, conn)
	if err != nil {
		return err
	}
	defer adm.Close()
	want := append(append(slices.Clone(cfg.Inputs), pipeline.OutputTopics(cfg)...), ruleTopics...)
	before, err := adm.ListTopics(ctx, want...)
	if err != nil {
		return fmt.Errorf("topics create: listing topics: %w", err)
	}
	plan.Create, plan.RuleTopics = true, ruleTopics
	if plan.InputPartitions == 0 {
		plan.InputPartitions = defaultPartitions
	}
	if err := pipeline.EnsureTopicsWith(ctx, cfg, plan); err != nil {
		return err
	}
	after, err := adm.ListTopics(ctx, want...)
	if err != nil {
		return fmt.Errorf("topics create: listing topics: %w", err)
	}
	for _, t := range want {
		verb := "exists"
		if !before.Has(t) {
			verb = "created"
		}
		fmt.Fprintf(stdout, "%s topic %s: %d partitions\n", verb, t, len(after[t].Partitions))
	}
	return nil
}

// ensureRunTopics is dwell run's topic check: with create (--create-topics) it creates the
// missing inputs too, with inputPartitions partitions (--partitions), then the outputs and
// internal topics with the inputs' count. It replaces cmdRun's call of pipeline.EnsureTopics.
func ensureRunTopics(ctx context.Context, cfg pipeline.LiveConfig, create bool, inputPartitions int32, connectTimeout time.Duration) error {
	if err := checkBrokers(ctx, connectOptions{Brokers: cfg.Brokers, ClientOpts: cfg.ClientOpts, Timeout: connectTimeout}); err != nil {
		return err
	}
	if inputPartitions == 0 {
		inputPartitions = defaultPartitions
	}
	plan := pipeline.TopicsPlan{Create: create}
	if create {
		plan.InputPartitions = inputPartitions
	}
	return pipeline.EnsureTopicsWith(ctx, cfg, plan)
}

// topicsListOptions are dwell topics list's settings.
type topicsListOptions struct {
	Internal bool // also the __ topics (consumer offsets, transaction state)
	JSON     bool
}

type topicSummary struct {
	Topic             string `json:"topic"`
	Partitions        int    `json:"partitions"`
	ReplicationFactor int    `json:"replication_factor"`
	Internal          bool   `json:"internal,omitempty"`
}

// topicsList prints the cluster's topics with their partition count and replication factor,
// sorted by name: a table, or with JSON one object per line.
func topicsList(ctx context.Context, conn connectOptions, o topicsListOptions, stdout io.Writer) error {
	_, adm, err := connectKafka(ctx, conn)
	if err != nil {
		return err
	}
	defer adm.Close()
	details, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		return fmt.Errorf("topics list: %w", err)
	}
	var rows []topicSummary
	for _, d := range details.Sorted() {
		internal := d.IsInternal || strings.HasPrefix(d.Topic, "__")
		if internal && !o.Internal {
			continue
		}
		rows = append(rows, topicSummary{Topic: d.Topic, Partitions: len(d.Partitions), ReplicationFactor: replicationFactor(d), Internal: internal})
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tRF")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", r.Topic, r.Partitions, r.ReplicationFactor)
	}
	return tw.Flush()
}

func replicationFactor(d kadm.TopicDetail) int {
	rf := 0
	for _, p := range d.Partitions {
		rf = max(rf, len(p.Replicas))
	}
	return rf
}

// topicsDescribeOptions are dwell topics describe's settings.
type topicsDescribeOptions struct {
	Topics []string
	JSON   bool
}

type partitionDescription struct {
	Partition   int32   `json:"partition"`
	Leader      int32   `json:"leader"`
	Replicas    []int32 `json:"replicas"`
	ISR         []int32 `json:"isr"`
	StartOffset int64   `json:"start_offset"`
	EndOffset   int64   `json:"end_offset"`
}

type topicDescription struct {
	Topic             string                 `json:"topic"`
	ReplicationFactor int                    `json:"replication_factor"`
	Partitions        []partitionDescription `json:"partitions"`
	Configs           map[string]string      `json:"configs"` // the settings that are not the brokers' defaults
}

// topicsDescribe prints each topic's partitions (leader, replicas, in-sync replicas, log start
// and end offsets) and the settings that differ from the defaults; a missing topic is an error.
func topicsDescribe(ctx context.Context, conn connectOptions, o topicsDescribeOptions, stdout io.Writer) error {
	if len(o.Topics) == 0 {
		return usageError{errors.New("topics describe: name at least one topic")}
	}
	_, adm, err := connectKafka(ctx, conn)
	if err != nil {
		return err
	}
	defer adm.Close()
	details, err := requireTopics(ctx, adm, false, o.Topics...)
	if err != nil {
		return err
	}
	starts, err := adm.ListStartOffsets(ctx, o.Topics...)
	if err != nil {
		return fmt.Errorf("topics describe: log start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, o.Topics...)
	if err != nil {
		return fmt.Errorf("topics describe: log end offsets: %w", err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, o.Topics...)
	if err != nil {
		return fmt.Errorf("topics describe: configs: %w", err)
	}
	var descs []topicDescription
	for _, t := range o.Topics {
		d := details[t]
		td := topicDescription{Topic: t, ReplicationFactor: replicationFactor(d), Configs: map[string]string{}}
		for _, p := range d.Partitions.Sorted() {
			pd := partitionDescription{Partition: p.Partition, Leader: p.Leader, Replicas: p.Replicas, ISR: p.ISR, StartOffset: -1, EndOffset: -1}
			if s, ok := starts.Lookup(t, p.Partition); ok && s.Err == nil {
				pd.StartOffset = s.Offset
			}
			if e, ok := ends.Lookup(t, p.Partition); ok && e.Err == nil {
				pd.EndOffset = e.Offset
			}
			td.Partitions = append(td.Partitions, pd)
		}
		if rc, err := rcs.On(t, nil); err == nil && rc.Err == nil {
			for _, c := range rc.Configs {
				if c.Source == kmsg.ConfigSourceDynamicTopicConfig && !c.Sensitive {
					td.Configs[c.Key] = c.MaybeValue()
				}
			}
		}
		descs = append(descs, td)
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		for _, d := range descs {
			if err := enc.Encode(d); err != nil {
				return err
			}
		}
		return nil
	}
	for i, d := range descs {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "topic %s: %d partitions, replication factor %d\n", d.Topic, len(d.Partitions), d.ReplicationFactor)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION\tLEADER\tREPLICAS\tISR\tSTART\tEND")
		for _, p := range d.Partitions {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%d\n", p.Partition, p.Leader, ints(p.Replicas), ints(p.ISR), p.StartOffset, p.EndOffset)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(d.Configs) == 0 {
			fmt.Fprintln(stdout, "configs: the defaults")
			continue
		}
		fmt.Fprintln(stdout, "configs (not the defaults):")
		for _, k := range slices.Sorted(maps.Keys(d.Configs)) {
			fmt.Fprintf(stdout, "  %s=%s\n", k, d.Configs[k])
		}
	}
	return nil
}

func ints(xs []int32) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}
