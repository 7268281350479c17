package reset

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dwellhq/dwell/pipeline"
	"github.com/dwellhq/dwell/pipeline/savepoint"
	"github.com/dwellhq/dwell/pipeline/topicscan"
	"github.com/dwellhq/dwell/state"
)

// Config is a reset's settings. Exactly one target is set: ToEarliest, ToDatetime, ByDuration
// or ToOffsets.
type Config struct {
	// Brokers are the seed brokers; ClientOpts are added to every client (TLS, SASL).
	Brokers    []string
	ClientOpts []kgo.Opt
	// Group is the application's consumer group. Required.
	Group string
	// ApplicationID names the internal topics (pipeline.InternalTopics). Default: Group.
	ApplicationID string
	// Changelog, Savepoints and SavepointData override the internal topics' names.
	Changelog, Savepoints, SavepointData string
	// Inputs are the input topics. Default: the topics the group has committed offsets for.
	Inputs []string

	ToEarliest bool
	ToDatetime time.Time
	ByDuration time.Duration
	// ToOffsets is a file of lines "topic,partition,offset" (Kafka's reset tool's format);
	// partitions it leaves out are left alone.
	ToOffsets string

	// Execute carries the plan out; otherwise it is only printed.
	Execute bool
	// TransactionTimeout bounds the reset's transaction. Default 5m.
	TransactionTimeout time.Duration
	// Now is the wall clock (ByDuration, the reset's id). Default time.Now.
	Now func() time.Time

	// crashBeforeCommit, set by tests, abandons the reset with its transaction open, as a
	// SIGKILL would.
	crashBeforeCommit bool
}

// ErrConfig marks errors of a Config that cannot work; their text names the flag that fixes
// it. The CLI exits with its usage status.
var ErrConfig = errors.New("reset: invalid configuration")

type configError struct{ error }

func (e configError) Unwrap() []error { return []error{e.error, ErrConfig} }

// errCrashed ends a reset that a test abandons.
var errCrashed = errors.New("reset: crashed (test)")

// ErrMembers says the group has members: reset refuses to rewind a running application.
var ErrMembers = errors.New("reset: the group has members")

func (c *Config) defaults() {
	if c.ApplicationID == "" {
		c.ApplicationID = c.Group
	}
	changelog, sps, data := pipeline.InternalTopics(c.ApplicationID)
	for _, f := range []struct {
		p *string
		d string
	}{{&c.Changelog, changelog}, {&c.Savepoints, sps}, {&c.SavepointData, data}} {
		if *f.p == "" {
			*f.p = f.d
		}
	}
	if c.TransactionTimeout == 0 {
		c.TransactionTimeout = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func (c *Config) validate() error {
	if len(c.Brokers) == 0 {
		return configError{errors.New("reset: no brokers; pass --brokers host:port")}
	}
	if c.Group == "" {
		return configError{errors.New("reset: name the application's group: pass --group")}
	}
	n := 0
	for _, set := range []bool{c.ToEarliest, !c.ToDatetime.IsZero(), c.ByDuration != 0, c.ToOffsets != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return configError{errors.New("reset: pass exactly one of --to-earliest, --to-datetime, --by-duration and --to-offsets")}
	}
	if c.ByDuration < 0 {
		return configError{fmt.Errorf("reset: --by-duration %s must be positive (how far back from now)", c.ByDuration)}
	}
	return nil
}

// Move is the plan for one partition of one input topic.
type Move struct {
	Topic     string
	Partition int32
	// From is the group's committed offset (-1: none); To the offset it is set to; Target the
	// offset the target asked for (To is at or before it).
	From, To, Target int64
}

// Partition is the plan for one partition: its input offsets and its state.
type Partition struct {
	Partition int32
	Moves     []Move
	// Savepoint is the state the partition restarts from; nil: empty.
	Savepoint *savepoint.Descriptor
	// NoSavepoint says no savepoint was at or before the target: the partition starts over.
	NoSavepoint bool
}

// Plan is what a reset does.
type Plan struct {
	ID         string
	Group      string
	App        string
	Changelog  string
	Partitions []Partition
}

// Run plans the reset, prints the plan to out and, with cfg.Execute, carries it out.
func Run(ctx context.Context, cfg Config, out io.Writer) (Plan, error) {
	if err := cfg.validate(); err != nil {
		return Plan{}, err
	}
	cfg.defaults()
	var offsets map[string]map[int32]int64
	if cfg.ToOffsets != "" {
		var err error
		if offsets, err = readOffsets(cfg.ToOffsets); err != nil {
			return Plan{}, configError{err}
		}
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.ClientOpts...)...)
	if err != nil {
		return Plan{}, fmt.Errorf("reset: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	plan, err := makePlan(ctx, adm, cfg, offsets)
	if err != nil {
		return plan, err
	}
	printPlan(out, plan, cfg)
	if !cfg.Execute {
		fmt.Fprintln(out, "dry run: nothing was changed; pass --execute to carry the plan out")
		return plan, nil
	}
	if len(plan.Partitions) == 0 {
		fmt.Fprintln(out, "nothing to reset")
		return plan, nil
	}
	if err := execute(ctx, adm, cfg, plan, out); err != nil {
		return plan, err
	}
	return plan, nil
}

// makePlan checks the group and the topics and decides each partition's offsets and state.
func makePlan(ctx context.Context, adm *kadm.Client, cfg Config, file map[string]map[int32]int64) (Plan, error) {
	plan := Plan{ID: resetID(cfg.Now()), Group: cfg.Group, App: cfg.ApplicationID, Changelog: cfg.Changelog}
	groups, err := describeGroup(ctx, adm, cfg.Group)
	if err != nil {
		return plan, fmt.Errorf("reset: describing group %q: %w; check --brokers and that the brokers are up", cfg.Group, err)
	}
	if g, ok := groups[cfg.Group]; ok && g.Err == nil && len(g.Members) > 0 {
		var names []string
		for _, m := range g.Members {
			names = append(names, fmt.Sprintf("%s (client %s, host %s)", m.MemberID, m.ClientID, m.ClientHost))
		}
		return plan, fmt.Errorf("%w: %q has %d: %s; stop every dwell run of the group (its state would not match), then reset",
			ErrMembers, cfg.Group, len(names), strings.Join(names, ", "))
	}
	committed, err := adm.FetchOffsets(ctx, cfg.Group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return plan, fmt.Errorf("reset: fetching group %q's offsets: %w", cfg.Group, err)
	}
	inputs := cfg.Inputs
	if len(inputs) == 0 {
		for t := range committed {
			inputs = append(inputs, t)
		}
		slices.Sort(inputs)
		if len(inputs) == 0 {
			return plan, configError{fmt.Errorf("reset: group %q has no committed offsets; name its input topics with --inputs", cfg.Group)}
		}
	}
	details, err := adm.ListTopics(ctx, append(slices.Clone(inputs), cfg.Changelog)...)
	if err != nil {
		return plan, fmt.Errorf("reset: listing topics: %w", err)
	}
	partitions := -1
	for _, t := range append(slices.Clone(inputs), cfg.Changelog) {
		d, ok := details[t]
		if !ok || d.Err != nil {
			return plan, fmt.Errorf("reset: topic %q not found; check --inputs, --group and --application-id", t)
		}
		if partitions >= 0 && len(d.Partitions) != partitions {
			return plan, fmt.Errorf("reset: %q has %d partitions, the others %d; the inputs and the changelog must match", t, len(d.Partitions), partitions)
		}
		partitions = len(d.Partitions)
	}
	starts, err := adm.ListStartOffsets(ctx, inputs...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return plan, fmt.Errorf("reset: listing offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, inputs...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return plan, fmt.Errorf("reset: listing offsets: %w", err)
	}
	var at kadm.ListedOffsets
	switch {
	case !cfg.ToDatetime.IsZero():
		at, err = adm.ListOffsetsAfterMilli(ctx, cfg.ToDatetime.UnixMilli(), inputs...)
	case cfg.ByDuration != 0:
		at, err = adm.ListOffsetsAfterMilli(ctx, cfg.Now().Add(-cfg.ByDuration).UnixMilli(), inputs...)
	}
	if err == nil && at != nil {
		err = at.Error()
	}
	if err != nil {
		return plan, fmt.Errorf("reset: listing offsets by time: %w", err)
	}
	var sps []savepoint.Descriptor
	if !cfg.ToEarliest {
		sps, err = savepoint.List(ctx, adm, cfg.Brokers, cfg.ClientOpts, savepoint.Topics{Descriptors: cfg.Savepoints, Data: cfg.SavepointData})
		var missing *topicscan.MissingError
		if errors.As(err, &missing) {
			err = nil // no savepoints: partitions start over
		}
		if err != nil {
			return plan, fmt.Errorf("reset: reading savepoints: %w", err)
		}
	}
	for p := range int32(partitions) {
		target := map[string]int64{}
		for _, t := range inputs {
			s, _ := starts.Lookup(t, p)
			e, _ := ends.Lookup(t, p)
			var off int64
			switch {
			case cfg.ToEarliest:
				off = s.Offset
			case file != nil:
				o, ok := file[t][p]
				if !ok {
					continue
				}
				off = o
			default:
				o, ok := at.Lookup(t, p)
				off = o.Offset
				if !ok || off < 0 {
					off = e.Offset
				}
			}
			target[t] = min(max(off, s.Offset), e.Offset)
		}
		if len(target) == 0 {
			continue // left out of the offsets file: left alone
		}
		part := Partition{Partition: p}
		if !cfg.ToEarliest {
			// A savepoint whose input the retention has deleted cannot be replayed from.
			for i := range sps {
				for _, t := range inputs {
					n, ok := sps[i].Next[t]
					if s, _ := starts.Lookup(t, p); ok && sps[i].Partition == p && n < s.Offset {
						sps[i].Expired = true
					}
				}
			}
			if d, ok := savepoint.Newest(sps, p, target); ok {
				part.Savepoint = &d
			} else {
				part.NoSavepoint = true
			}
		}
		for _, t := range inputs {
			from := int64(-1)
			if c, ok := committed.Lookup(t, p); ok && c.Err == nil {
				from = c.At
			}
			s, _ := starts.Lookup(t, p)
			to := s.Offset
			if part.Savepoint != nil {
				if n, ok := part.Savepoint.Next[t]; ok {
					to = n
				}
			}
			tg, ok := target[t]
			if !ok {
				tg = to
			}
			part.Moves = append(part.Moves, Move{Topic: t, Partition: p, From: from, To: to, Target: tg})
		}
		plan.Partitions = append(plan.Partitions, part)
	}
	return plan, nil
}

// describeGroup describes group, waiting up to 15s while the broker has no coordinator for it
// yet: a new cluster creates its offsets topic on the first group request.
func describeGroup(ctx context.Context, adm *kadm.Client, group string) (kadm.DescribedGroups, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		groups, err := adm.DescribeGroups(ctx, group)
		if err == nil || time.Now().After(deadline) ||
			!errors.Is(err, kerr.CoordinatorNotAvailable) && !errors.Is(err, kerr.CoordinatorLoadInProgress) {
			return groups, err
		}
		select {
		case <-ctx.Done():
			return groups, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// resetID names a reset: its time and a random suffix.
func resetID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "reset-" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

func printPlan(out io.Writer, plan Plan, cfg Config) {
	fmt.Fprintf(out, "reset %s of group %q (application %q, changelog %q)\n", plan.ID, plan.Group, plan.App, plan.Changelog)
	for _, p := range plan.Partitions {
		var moves []string
		for _, m := range p.Moves {
			from := "none"
			if m.From >= 0 {
				from = strconv.FormatInt(m.From, 10)
			}
			s := fmt.Sprintf("%s %s -> %d", m.Topic, from, m.To)
			if m.Target != m.To {
				s += fmt.Sprintf(" (target %d)", m.Target)
			}
			moves = append(moves, s)
		}
		var st string
		switch {
		case p.Savepoint != nil:
			st = fmt.Sprintf("from savepoint %s (%s, %d keys, %d bytes)", p.Savepoint.ID, p.Savepoint.Time.UTC().Format(time.RFC3339), p.Savepoint.Keys, p.Savepoint.Bytes)
		case p.NoSavepoint:
			st = "emptied: no savepoint at or before the target, so the partition starts over"
		default:
			st = "emptied"
		}
		fmt.Fprintf(out, "  partition %d: %s; state %s\n", p.Partition, strings.Join(moves, ", "), st)
	}
}

// execute carries the plan out in one transaction, then truncates the changelog.
func execute(ctx context.Context, adm *kadm.Client, cfg Config, plan Plan, out io.Writer) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...),
		kgo.TransactionalID("dwell-reset-" + cfg.ApplicationID), kgo.TransactionTimeout(cfg.TransactionTimeout),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.MaxBufferedRecords(100_000)}, cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		return fmt.Errorf("reset: beginning the transaction: %w", err)
	}
	abort := func(err error) error {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if aerr := cl.AbortBufferedRecords(actx); aerr == nil {
			_ = cl.EndTransaction(actx, kgo.TryAbort)
		}
		return err
	}
	var mu sync.Mutex // promises run on the client's goroutines
	var produceErr error
	markers := map[int32]int64{}
	promise := func(r *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil && produceErr == nil {
			produceErr = err
		}
		if err == nil && string(r.Key) == string(state.ResetRecordKey) {
			markers[r.Partition] = r.Offset
		}
	}
	offsets := map[string]map[int32]int64{}
	for _, p := range plan.Partitions {
		until := map[string]int64{}
		for _, m := range p.Moves {
			if m.From > m.To {
				until[m.Topic] = m.From
			}
			if offsets[m.Topic] == nil {
				offsets[m.Topic] = map[int32]int64{}
			}
			offsets[m.Topic][m.Partition] = m.To
		}
		marker := state.AppendResetMarker(nil, state.ResetMarker{ID: plan.ID, Time: cfg.Now().UnixMilli(), Until: until})
		cl.Produce(ctx, &kgo.Record{Topic: cfg.Changelog, Partition: p.Partition, Key: state.ResetRecordKey, Value: marker}, promise)
		if p.Savepoint != nil {
			err := savepoint.Read(ctx, cfg.Brokers, cfg.ClientOpts, savepoint.Topics{Descriptors: cfg.Savepoints, Data: cfg.SavepointData}, *p.Savepoint,
				func(k, v []byte) error {
					cl.Produce(ctx, &kgo.Record{Topic: cfg.Changelog, Partition: p.Partition, Key: k, Value: v}, promise)
					return nil
				})
			if err != nil {
				return abort(fmt.Errorf("reset: copying savepoint %s: %w", p.Savepoint.ID, err))
			}
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return abort(fmt.Errorf("reset: writing the changelog: %w", err))
	}
	if produceErr != nil {
		return abort(fmt.Errorf("reset: writing the changelog: %w", produceErr))
	}
	if err := commitOffsets(ctx, cl, cfg, offsets); err != nil {
		return abort(err)
	}
	if cfg.crashBeforeCommit {
		return errCrashed
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("reset: committing the transaction: %w; nothing was changed, run the reset again", err)
	}
	fmt.Fprintf(out, "reset %s done: group %q's offsets and the state of %d partitions moved together\n", plan.ID, cfg.Group, len(plan.Partitions))
	truncate(ctx, adm, cfg, markers, out)
	return nil
}

// commitOffsets adds the group's new offsets to the open transaction, as a producer's
// sendOffsetsToTransaction does for a group without members (generation -1).
func commitOffsets(ctx context.Context, cl *kgo.Client, cfg Config, offsets map[string]map[int32]int64) error {
	id, epoch, err := cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	txnID := "dwell-reset-" + cfg.ApplicationID
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txnID, id, epoch, cfg.Group
	addResp, err := add.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(addResp.ErrorCode)
	}
	if err != nil {
		return fmt.Errorf("reset: adding the group's offsets to the transaction: %w", err)
	}
	// TxnOffsetCommit v6+ names topics by id (KIP-1319), earlier versions by name: send both.
	topics := make([]string, 0, len(offsets))
	for t := range offsets {
		topics = append(topics, t)
	}
	details, err := kadm.NewClient(cl).ListTopics(ctx, topics...)
	if err != nil {
		return fmt.Errorf("reset: listing topics: %w", err)
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch = txnID, cfg.Group, id, epoch
	req.Generation, req.MemberID = -1, ""
	for t, ps := range offsets {
		rt := kmsg.NewTxnOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = t, details[t].ID
		for p, o := range ps {
			rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = p, o, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("reset: committing the group's offsets: %w", err)
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("reset: committing the group's offset of partition %d: %w", p.Partition, err)
			}
		}
	}
	return nil
}

// truncate deletes the changelog's records before each marker, best effort: the reset is
// exact without it, restores only read more.
func truncate(ctx context.Context, adm *kadm.Client, cfg Config, markers map[int32]int64, out io.Writer) {
	var o kadm.Offsets
	for p, off := range markers {
		o.AddOffset(cfg.Changelog, p, off, -1)
	}
	resp, err := adm.DeleteRecords(ctx, o)
	if err == nil {
		err = resp.Error()
	}
	switch {
	case err == nil:
		fmt.Fprintf(out, "truncated changelog %q up to the reset markers\n", cfg.Changelog)
	case errors.Is(err, kerr.PolicyViolation):
		fmt.Fprintf(out, "note: changelog %q is compact-only, so Kafka refuses to truncate it; the state before the reset stays in it and restores read past it (exact, only slower). Set cleanup.policy=compact,delete and retention.ms=-1 on it to let dwell reset truncate it\n", cfg.Changelog)
	default:
		fmt.Fprintf(out, "note: truncating changelog %q failed (%v); the reset is complete, restores read past the old state\n", cfg.Changelog, err)
	}
}

// readOffsets reads a file of lines "topic,partition,offset"; blank lines and lines starting
// with # are skipped.
func readOffsets(path string) (map[string]map[int32]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reset: --to-offsets: %w", err)
	}
	defer f.Close()
	out := map[string]map[int32]int64{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ",")
		var p, o int64
		if len(f) == 3 {
			p, err = strconv.ParseInt(strings.TrimSpace(f[1]), 10, 32)
			if err == nil {
				o, err = strconv.ParseInt(strings.TrimSpace(f[2]), 10, 64)
			}
		}
		if len(f) != 3 || err != nil || p < 0 || o < 0 {
			return nil, fmt.Errorf("reset: --to-offsets %s line %d: want topic,partition,offset; got %q", path, n, line)
		}
		t := strings.TrimSpace(f[0])
		if out[t] == nil {
			out[t] = map[int32]int64{}
		}
		out[t][int32(p)] = o
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reset: --to-offsets %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("reset: --to-offsets %s holds no offsets", path)
	}
	return out, nil
}

// Validate reports what Run would refuse in cfg (ErrConfig), contacting no broker.
func (c Config) Validate() error { return c.validate() }
