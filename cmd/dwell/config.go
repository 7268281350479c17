package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/rulesrc"
)

const configUsage = `Usage:
  dwell config validate FILE [--registry FILE]     check a rules file (and a registry file)
  dwell config apply FILE [--registry FILE] [flags]
                                                   check them, then publish them to the config
                                                   topic: every dwell run --config-topic applies
                                                   them at its next cycle boundary
FILE may be left out when --registry is given. Exit 0: ok; 1: invalid (the error says where)
or not published; 2: usage.
`

// cmdConfig validates rule sets and publishes them to the config topic (pipeline/rulesrc).
func cmdConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, configUsage)
		if len(args) == 0 {
			return usageError{errors.New("config: validate or apply?")}
		}
		return errHelp
	}
	sub := args[0]
	if sub != "validate" && sub != "apply" {
		fmt.Fprint(stderr, configUsage)
		return usageError{fmt.Errorf("config: unknown subcommand %q", sub)}
	}
	var file string
	rest := args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		file, rest = rest[0], rest[1:]
	}
	fs := newFlags("config "+sub, stderr)
	registry := fs.String("registry", "", "event registry file (unless the rules file has a registry section)")
	prefix := fs.String("queue-topic-prefix", pipeline.DefaultTopics().QueuePrefix, "prefix of queue topics, to name the topics the rules write to")
	var (
		brokers, topic, by *string
		create             *bool
		kafka              *kafkaFlags
	)
	if sub == "apply" {
		brokers = bindBrokers(fs)
		topic = fs.String("topic", rulesrc.DefaultTopic, "config topic (compacted, one partition)")
		create = fs.Bool("create-topic", false, "create the config topic if it is missing")
		by = fs.String("by", whoami(), "who publishes, recorded with the rule set")
		kafka = bindKafka(fs)
	}
	if err := parse(fs, rest); err != nil {
		return err
	}
	if file == "" && *registry == "" {
		return usageError{fmt.Errorf("config %s: name the rules FILE (or --registry FILE)", sub)}
	}
	c, err := rulesrc.ReadFiles(file, *registry)
	if err != nil {
		return err
	}
	rs, err := c.Parse()
	if err != nil {
		return err
	}
	if sub == "validate" {
		printRuleSet(stdout, c, rs, *prefix)
		return nil
	}
	kopts, err := kafka.opts()
	if err != nil {
		return usageError{err}
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
