package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/collect"
	"github.com/dwellhq/dwell/pipeline/rulesrc"
)

// newConfigCmd is dwell config: validate rule sets and publish them to the config topic
// (pipeline/rulesrc).
func newConfigCmd(e *cliEnv) *cobra.Command {
	cmd := parentCmd("config", "check rules; publish them to running instances")
	cmd.Long = `Check rules; publish them to running instances.

FILE may be left out when --registry or --sources is given. Exit 0: ok; 1: invalid (the error says where)
or not published; 2: usage.`
	newSub := func(use, short string) (*cobra.Command, *configFlags) {
		c := &cobra.Command{Use: use, Short: short, Args: maxArgs(1, "FILE")}
		f := &configFlags{}
		fs := c.Flags()
		inGroup(fs, groupRules, func() {
			f.registry = fs.String("registry", "", "event registry `FILE` (unless the rules file has a registry section)")
			f.prefix = fs.String("queue-topic-prefix", pipeline.DefaultTopics().QueuePrefix, "`PREFIX` of queue topics, to name the topics the rules write to")
			f.sources = fs.String("sources", "", "event sources `FILE` of dwell collect (with or without rules)")
		})
		return c, f
	}
	validate, vf := newSub("validate [FILE] [--registry FILE] [--sources FILE]", "check a rules file (and a registry file, a sources file)")
	validate.RunE = func(cmd *cobra.Command, args []string) error {
		return runConfig(cmd.Context(), e, "validate", firstArg(args), vf)
	}
	apply, af := newSub("apply [FILE] [--registry FILE] [--sources FILE] [flags]", "check rules (or sources), then publish them to the config topic")
	apply.Long = `Check rules, then publish them to the config topic: every dwell run --config-topic applies
them at its next cycle boundary. With --sources, the event sources file is checked and
published too (under its own key): every dwell collect --config-topic applies it at once.`
	fs := apply.Flags()
	af.brokers = bindBrokers(fs)
	af.kafka = bindKafka(fs)
	inGroup(fs, groupKafka, func() {
		af.topic = fs.String("topic", rulesrc.DefaultTopic, "config `TOPIC` (compacted, one partition)")
		af.create = fs.Bool("create-topic", false, "create the config topic if it is missing")
		// dwell run and dwell topics say --create-topics; both spellings work here.
		fs.BoolVar(af.create, "create-topics", false, "the same as --create-topic")
		_ = fs.MarkHidden("create-topics")
	})
	inGroup(fs, groupRules, func() {
		af.by = fs.String("by", whoami(), "who publishes (`NAME`), recorded with the rule set")
	})
	apply.RunE = func(cmd *cobra.Command, args []string) error {
		return runConfig(cmd.Context(), e, "apply", firstArg(args), af)
	}
	cmd.AddCommand(validate, apply)
	return cmd
}

func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// configFlags are dwell config's flags; apply's only for apply.
type configFlags struct {
	registry, prefix   *string
	sources            *string
	brokers, topic, by *string
	create             *bool
	kafka              *kafkaFlags
}

func runConfig(ctx context.Context, e *cliEnv, sub, file string, f *configFlags) error {
	stdout, stderr := e.stdout, e.stderr
	registry, prefix, brokers, topic, create, by, kafka := f.registry, f.prefix, f.brokers, f.topic, f.create, f.by, f.kafka
	if file == "" && *registry == "" && *f.sources == "" {
		return usageError{fmt.Errorf("config %s: name the rules FILE (or --registry FILE, --sources FILE)", sub)}
	}
	var sources []byte
	if *f.sources != "" {
		var err error
		if sources, err = os.ReadFile(*f.sources); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		ss, err := collect.ValidateSources(sources)
		if err != nil {
			return fmt.Errorf("config: %s: %w", *f.sources, err)
		}
		if sub == "validate" {
			fmt.Fprintf(stdout, "%s: %d event sources: %s\n", *f.sources, len(ss.IDs()), strings.Join(ss.IDs(), ", "))
		}
	}
	var c rulesrc.Content
	var rs *pipeline.RuleSet
	if file != "" || *registry != "" {
		var err error
		if c, err = rulesrc.ReadFiles(file, *registry); err != nil {
			return err
		}
		if rs, err = c.Parse(); err != nil {
			return err
		}
		if sub == "validate" {
			printRuleSet(stdout, c, rs, *prefix)
		}
	}
	if sub == "validate" {
		return nil
	}
	kopts, err := kafka.opts()
	if err != nil {
		return usageError{err}
	}
	if err := checkBrokers(ctx, connectOptions{Brokers: splitList(*brokers), ClientOpts: kopts}); err != nil {
		return err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(splitList(*brokers)...)}, kopts...)...)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer cl.Close()
	if err := rulesrc.EnsureTopic(ctx, cl, *topic, *create); err != nil {
		if errors.Is(err, rulesrc.ErrNoTopic) {
			return fmt.Errorf("config: %w, or pass --create-topic", err)
		}
		return fmt.Errorf("config: %w", err)
	}
	if sources != nil {
		ss, err := collect.PublishSources(ctx, cl, *topic, sources, *by)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		fmt.Fprintf(stdout, "published %d event sources to %s\n", len(ss.IDs()), *topic)
	}
	if rs == nil {
		return nil
	}
	if missing, err := missingTopics(ctx, cl, rs.OutputTopics(*prefix)); err != nil {
		return fmt.Errorf("config: %w", err)
	} else if len(missing) > 0 {
		fmt.Fprintf(stderr, "dwell: warning: the rules write to topics %q, which do not exist: instances refuse this version unless they run with --create-topics\n", missing)
	}
	if _, err := rulesrc.Publish(ctx, cl, *topic, c, *by); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	fmt.Fprintf(stdout, "published version %s to %s\n", rs.Version, *topic)
	return nil
}

// printRuleSet describes a valid rule set.
func printRuleSet(w io.Writer, c rulesrc.Content, rs *pipeline.RuleSet, prefix string) {
	name := c.RulesName
	if name == "" {
		name = c.RegistryName
	} else if c.RegistryName != "" {
		name += ", " + c.RegistryName
	}
	nRules, registry := 0, "none"
	if rs.Rules != nil {
		nRules = len(rs.Rules.Rules)
	}
	if rs.Registry != nil {
		registry = fmt.Sprintf("%d types", len(rs.Registry.Types()))
	}
	writes := strings.Join(rs.OutputTopics(prefix), ", ")
	if writes == "" {
		writes = "no topics"
	}
	fmt.Fprintf(w, "%s: ok: version %s, %d rules, registry: %s, writes to %s\n", name, rs.Version, nRules, registry, writes)
}

// missingTopics returns those of topics that do not exist.
func missingTopics(ctx context.Context, cl *kgo.Client, topics []string) ([]string, error) {
	if len(topics) == 0 {
		return nil, nil
	}
	details, err := kadm.NewClient(cl).ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	var missing []string
	for _, t := range topics {
		if d, ok := details[t]; !ok || d.Err != nil {
			missing = append(missing, t)
		}
	}
	return missing, nil
}

// whoami is user@host, as well as it can be told.
func whoami() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	switch {
	case name == "":
		return host
	case host == "":
		return name
	}
	return name + "@" + host
}
