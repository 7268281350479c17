package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// connectOptions are what every command that talks to Kafka connects with: --brokers (or
// DWELL_BROKERS) and the TLS/SASL options of kafkaFlags.opts.
type connectOptions struct {
	Brokers    []string
	ClientOpts []kgo.Opt
	// Timeout bounds the first metadata request, the check that the brokers answer. Default 5s.
	Timeout time.Duration
}

// defaultConnectTimeout is how long a command waits for the brokers to answer before it says it
// cannot reach them: long enough for a broker across a WAN, short enough that a wrong --brokers
// is reported before a user wonders whether dwell hangs.
const defaultConnectTimeout = 5 * time.Second

// connectKafka makes a client (with extra options, such as a consumer's topics) and checks that
// the brokers answer a metadata request within o.Timeout. An unreachable cluster is an error
// that says where dwell looked and what failed (the last dial error), for exit 1.
func connectKafka(ctx context.Context, o connectOptions, extra ...kgo.Opt) (*kgo.Client, *kadm.Client, error) {
	if len(o.Brokers) == 0 {
		return nil, nil, usageError{errors.New("no brokers: pass --brokers HOST:PORT or set DWELL_BROKERS")}
	}
	hook := &dialHook{}
	// A metadata answer is cached for MetadataMinAge (default 5s): a topic listed as missing
	// and then created would look missing that long to the wait for its leaders.
	opts := append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...), kgo.WithHooks(hook), kgo.MetadataMinAge(100 * time.Millisecond)}, o.ClientOpts...)
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("kafka client: %w", err)}
	}
	adm := kadm.NewClient(cl)
	if err := pingKafka(ctx, adm, o, hook); err != nil {
		cl.Close()
		return nil, nil, err
	}
	return cl, adm, nil
}

// checkBrokers is connectKafka for the commands that make their own clients (reset,
// savepoints, log, move, deliver, config apply): called first, it turns an unreachable cluster
// into the same error, within seconds, instead of the library's retries.
func checkBrokers(ctx context.Context, o connectOptions) error {
	_, adm, err := connectKafka(ctx, o)
	if err != nil {
		return err
	}
	adm.Close()
	return nil
}

// pingKafka asks for the cluster's brokers and nothing else.
func pingKafka(ctx context.Context, adm *kadm.Client, o connectOptions, hook *dialHook) error {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = defaultConnectTimeout
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := adm.BrokerMetadata(pctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err() // interrupted, not unreachable
	}
	cause := err
	if last := hook.last(); last != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		cause = last
	} else if errors.Is(err, context.DeadlineExceeded) {
		cause = fmt.Errorf("no answer within %s", timeout)
	}
	return unreachableError(o.Brokers, cause)
}

// unreachableError is the one wording of "the brokers do not answer" in every command.
func unreachableError(brokers []string, cause error) error {
	return fmt.Errorf("cannot reach Kafka at %s (%w); check --brokers or DWELL_BROKERS", strings.Join(brokers, ","), cause)
}

// dialHook keeps the last failed connection attempt, which says more than the deadline that
// ends the wait (connection refused, no such host, a TLS handshake error).
type dialHook struct {
	mu  sync.Mutex
	err error
}

func (h *dialHook) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		h.mu.Lock()
		h.err = err
		h.mu.Unlock()
	}
}

func (h *dialHook) last() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// topicNotFoundError is the one wording of a missing topic; withCreateTopics adds the
// --create-topics hint for the commands that have that flag.
func topicNotFoundError(topic string, withCreateTopics bool) error {
	msg := fmt.Sprintf("topic %q not found; create it with dwell topics create %s", topic, topic)
	if withCreateTopics {
		msg += " or pass --create-topics"
	}
	return errors.New(msg)
}

// requireTopics checks that every topic exists and has partitions, and returns their details.
func requireTopics(ctx context.Context, adm *kadm.Client, withCreateTopics bool, topics ...string) (kadm.TopicDetails, error) {
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	for _, t := range topics {
		d, ok := details[t]
		if !ok || d.Err != nil || len(d.Partitions) == 0 {
			return nil, topicNotFoundError(t, withCreateTopics)
		}
	}
	return details, nil
}
