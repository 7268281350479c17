package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnsureTopics checks that the inputs exist and are co-partitioned, and that every output
// topic exists with the inputs' partition count (the changelog must have it: its partition p
// holds input partition p's state). With create set, missing outputs are created (the
// changelog compacted); otherwise an error names them and says what to do.
func EnsureTopics(ctx context.Context, brokers []string, inputs []string, out Topics, create bool, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	outputs := []string{out.System, out.Events, out.Late, out.Dead, out.Changelog}
	if out.EventLog != "" {
		outputs = append(outputs, out.EventLog)
	}
	details, err := adm.ListTopics(ctx, append(slices.Clone(inputs), outputs...)...)
	if err != nil {
		return fmt.Errorf("pipeline: listing topics on %v: %w; check --brokers and that the brokers are up", brokers, err)
	}
	partitions := int32(-1)
	for _, in := range inputs {
		d, ok := details[in]
		if !ok || d.Err != nil {
			return fmt.Errorf("pipeline: input topic %q not found; create it (keyed by profile id) and produce to it", in)
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
		if o == out.Changelog && int32(len(d.Partitions)) != partitions {
			return fmt.Errorf("pipeline: changelog topic %q has %d partitions, the inputs %d; they must match", o, len(d.Partitions), partitions)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if !create {
		return fmt.Errorf("pipeline: topics %q not found; create them with %d partitions (the changelog compacted) or pass --create-topics", missing, partitions)
	}
	return createTopics(ctx, adm, missing, partitions, out.Changelog)
}

// createTopics creates topics with partitions each (compacted, the one named so; a topic that
// exists by now is fine) and waits until they have leaders.
func createTopics(ctx context.Context, adm *kadm.Client, topics []string, partitions int32, compacted string) error {
	var errs []error
	for _, t := range topics {
		var cfg map[string]*string
		if t == compacted {
			compact := "compact"
			cfg = map[string]*string{"cleanup.policy": &compact}
		}
		resp, err := adm.CreateTopic(ctx, partitions, -1, cfg, t)
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
	return waitForLeaders(ctx, adm, topics, partitions)
}

// waitForLeaders waits until every partition of topics has a leader in the metadata a client
// sees: a created topic reaches the brokers' metadata caches asynchronously, and the first
// cycle would otherwise find its changelog without partitions.
func waitForLeaders(ctx context.Context, adm *kadm.Client, topics []string, partitions int32) error {
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
func ensureRuleTopics(ctx context.Context, adm *kadm.Client, inputs, topics []string, create bool) error {
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
	return createTopics(ctx, adm, missing, partitions, "")
}
