package pipeline

import (
	"context"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators/rules"
)

// What one record may weigh on each output topic.
//
// A broker refuses a record batch larger than its topic's max.message.bytes (the broker's
// message.max.bytes unless the topic overrides it) with MESSAGE_TOO_LARGE, and franz-go refuses,
// before sending, a record that alone makes a batch larger than ProducerBatchMaxBytes (default
// 1,000,012). Either way the record's transaction cannot commit, and since a cycle is processed
// again byte for byte, it never would. So the producer's limit follows each topic's
// max.message.bytes (limits, read at start and when a rule set names new topics), and the
// emitter checks every record against it before producing (emit.go): an output that cannot be
// written is dead-lettered instead, and a dead letter is cut to fit.

const (
	// KafkaDefaultMaxMessageBytes is Kafka's default message.max.bytes (and so a topic's
	// max.message.bytes): the limit assumed for a topic whose configuration cannot be read.
	KafkaDefaultMaxMessageBytes = 1_048_588
	// producePrefixBytes: franz-go counts against ProducerBatchMaxBytes, besides the batch, the
	// 4-byte length a batch has in a produce request.
	producePrefixBytes = 4
	// franz-go accepts batch limits in [512, 1 GiB].
	minProducerBatch, maxProducerBatch = 512, 1 << 30
)

// limits holds the largest record batch each output topic takes (its max.message.bytes, within
// what franz-go can send), and gives franz-go the same numbers (ProducerBatchMaxBytesFn), so
// that the emitter's checks and the producer agree. A topic's limit is fixed the first time it
// is read or asked for: franz-go asks once per partition and keeps the answer, so a limit that
// changed afterwards would let through what franz-go then refuses. A topic whose configuration
// cannot be read (ACLs, a topic not there yet) gets Kafka's default; that is logged once.
type limits struct {
	log *slog.Logger
	// cap bounds every limit: franz-go's BrokerMaxWriteBytes less a produce request's own
	// bytes, which franz-go also takes off. Set once the client exists.
	cap    atomic.Int64
	mu     sync.Mutex // serialises writers
	topics atomic.Pointer[map[string]int]
	warned atomic.Bool
}

func newLimits(log *slog.Logger) *limits {
	lm := &limits{log: log}
	lm.cap.Store(maxProducerBatch)
	lm.topics.Store(&map[string]int{})
	return lm
}

// of is the largest record batch topic takes, in bytes.
func (lm *limits) of(topic string) int {
	if n, ok := (*lm.topics.Load())[topic]; ok {
		return n
	}
	return lm.set(map[string]int{topic: KafkaDefaultMaxMessageBytes})[topic]
}

// producerMax is the kgo.ProducerBatchMaxBytesFn: the topic's limit as franz-go counts it.
func (lm *limits) producerMax(topic string) int32 { return int32(lm.of(topic) + producePrefixBytes) }

// set adds the limits of topics not known yet, bounded, and returns the table.
func (lm *limits) set(add map[string]int) map[string]int {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	m := *lm.topics.Load()
	fresh := false
	for t, n := range add {
		if _, ok := m[t]; ok {
			continue
		}
		if !fresh {
			m, fresh = maps.Clone(m), true
		}
		m[t] = min(max(n, minProducerBatch-producePrefixBytes), int(lm.cap.Load())-producePrefixBytes)
	}
	if fresh {
		lm.topics.Store(&m)
	}
	return m
}

// setClient bounds the limits by what cl can send in one produce request.
func (lm *limits) setClient(cl *kgo.Client, txnID string) {
	if v, ok := cl.OptValue(kgo.BrokerMaxWriteBytes).(int32); ok {
		// A request's header and one partition's framing: well under 1 KiB with the longest
		// topic name (249 bytes), the client id and the transactional id.
		lm.cap.Store(min(maxProducerBatch, int64(v)-1024-int64(len(txnID))))
	}
}

// load reads the max.message.bytes of topics not known yet (DescribeConfigs gives the
// effective value: the topic's own, else the broker's message.max.bytes, else Kafka's
// default). What cannot be read is assumed to be Kafka's default, and said once.
func (lm *limits) load(ctx context.Context, adm *kadm.Client, topics []string) {
	known := *lm.topics.Load()
	var want []string
	for _, t := range topics {
		if _, ok := known[t]; !ok && t != "" {
			want = append(want, t)
		}
	}
	if len(want) == 0 {
		return
	}
	got := map[string]int{}
	rcs, err := adm.DescribeTopicConfigs(ctx, want...) // partial results come with a shard error
	var firstErr error
	for _, rc := range rcs {
		if rc.Err != nil {
			firstErr = rc.Err
			continue
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			if n, perr := strconv.Atoi(*c.Value); perr == nil && n > 0 {
				got[rc.Name] = n
			}
		}
	}
	if err != nil {
		firstErr = err
	}
	var unread []string
	for _, t := range want {
		if _, ok := got[t]; !ok {
			unread = append(unread, t)
			got[t] = KafkaDefaultMaxMessageBytes
		}
	}
	m := lm.set(got)
	for _, t := range want {
		lm.log.Debug("producer limit", "topic", t, "max_message_bytes", m[t])
	}
	if len(unread) > 0 && lm.warned.CompareAndSwap(false, true) {
		lm.log.Warn("cannot read max.message.bytes of output topics (DescribeConfigs); assuming Kafka's default for them",
			"topics", unread, "assumed", KafkaDefaultMaxMessageBytes, "err", firstErr)
	}
}

// loadLimits reads the limits of the processor's own output topics (the event log's when it is
// written), bounded by what the client can send, before anything is produced.
func (l *Live) loadLimits(t Topics) {
	txnID, _ := l.cl.OptValue(kgo.TransactionalID).(string)
	l.limits.setClient(l.cl, txnID)
	topics := []string{t.System, t.Events, t.Late, t.Dead, t.Changelog}
	if l.logLevel != rules.LogNone {
		topics = append(topics, t.EventLog)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.limits.load(ctx, l.adm, topics)
}
