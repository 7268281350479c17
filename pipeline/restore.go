package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/state"
)

// Restore, apart from the cycle as Kafka Streams keeps its StoreChangelogReader apart from the
// StreamThread: a partition new to this instance (or whose state did not commit) is rebuilt
// before it processes anything. The changelog is read with read_committed isolation from the
// offset Pebble's state reflects to the last stable offset, once no transaction is open on it,
// and replayed into Pebble in whole cycles; Pebble is then loaded into a new sessionizer.

// restore rebuilds the partition: replay the changelog from the offset Pebble's state reflects
// to the last stable offset, then load Pebble into a new sessionizer.
func (w *worker) restore(ctx context.Context) error {
	l := w.l
	p, err := l.store.Load(w.partition, func([]byte) error { return nil })
	if err != nil {
		return err
	}
	from := max(p.ChangelogOffset, 0)
	end, err := l.stableChangelogEnd(ctx, w.partition)
	if err != nil {
		return err
	}
	// The changelog may start later than 0 (dwell reset truncates it up to its reset marker):
	// reading below its start would never end. State that Pebble holds from before the start
	// is dropped: what came between is gone, and it may have been a reset.
	start, err := l.changelogStart(ctx, w.partition)
	if err != nil {
		return err
	}
	if from < start {
		if p.ChangelogOffset >= 0 {
			l.log.Info("local state is older than the changelog's start; rebuilding it from the changelog",
				"partition", w.partition, "local_offset", p.ChangelogOffset, "changelog_start", start)
			if err := l.store.Reset(w.partition); err != nil {
				return err
			}
		}
		from = start
	}
	if from < end.Offset {
		recs, err := l.readChangelog(ctx, w.partition, from, end.Offset)
		if err != nil {
			return err
		}
		// Only whole cycles: a cycle's changelog ends with its partition record, so key records
		// after the last one belong to a cycle that crashed before its end (possible without
		// transactions); its input is read again from the offsets that record holds.
		last := -1
		for i, r := range recs {
			if bytes.Equal(r.Key, state.PartitionRecordKey) || bytes.Equal(r.Key, state.ResetRecordKey) {
				last = i // a reset marker is written alone in its transaction: a whole cycle too
			}
		}
		recs = recs[:last+1]
		if err := l.store.Replay(w.partition, recs); err != nil {
			return err
		}
	}
	w.f = newFlow(l.rules.Load(), l.cfg.Topics, w.partition, l.logLevel, &w.out)
	w.f.clock = l.cfg.Now
	if w.f.nparts, err = l.inputPartitions(ctx); err != nil {
		return err
	}
	w.f.jobState = map[string]state.JobState{}
	w.f.sweepKeys = sweepKeys
	w.f.keysAfter = func(after string, n int, fn func(key []byte)) error {
		return l.store.KeysAfter(w.partition, after, n, fn)
	}
	if l.cfg.Metrics != nil {
		w.f.onJob = func(job string, ok bool, delayMs int64) {
			w.counts.jobs = append(w.counts.jobs, jobFire{job: job, ok: ok, delayMs: delayMs})
		}
	}
	s, err := operators.NewSessionizer(l.cfg.Operators, w.partition, w.f)
	if err != nil {
		return err
	}
	w.f.setSessionizer(s)
	// Keys are loaded under the key cap: clean restored keys are evicted as the load goes.
	s.SetColdStore(l.store.Cold(w.partition))
	n := 0
	loaded, err := l.store.Load(w.partition, func(b []byte) error {
		if err := s.RestoreKey(b); err != nil {
			return err
		}
		if n++; n%4096 == 0 && n > l.cfg.MaxCachedKeys {
			s.Evict(l.cfg.MaxCachedKeys)
		}
		return nil
	})
	if err != nil {
		return err
	}
	w.next, w.reset = map[string]int64{}, nil
	if loaded.Reset != nil {
		m, err := state.ParseResetMarker(loaded.Reset)
		if err != nil {
			return fmt.Errorf("pipeline: partition %d: %w", w.partition, err)
		}
		w.reset = &m
	}
	if loaded.Snapshot != nil {
		snap, err := state.ParsePartitionRecordJobs(loaded.Snapshot, w.next, w.f.jobState)
		if err != nil {
			return fmt.Errorf("pipeline: partition %d: %w", w.partition, err)
		}
		if err := s.RestorePartition(snap); err != nil {
			return err
		}
	}
	s.Evict(l.cfg.MaxCachedKeys)
	if err := l.checkOffsets(ctx, w.partition, w.next); err != nil {
		return err
	}
	w.s = s
	l.noteProgress(w.partition)
	l.restores.Add(1)
	if m := l.cfg.Metrics; m != nil {
		m.restores.Inc()
	}
	l.log.Info("partition restored", "partition", w.partition, "keys", loaded.Keys, "changelog_from", from, "changelog_end", end.Offset)
	return nil
}

// ErrOffsetsBehindState says a partition's committed input offset is behind the input its
// state already holds: the group was rewound without its state (by Kafka's own tools, say).
// Processing would skip the records in between; Run refuses and returns it.
var ErrOffsetsBehindState = errors.New("pipeline: the group's offsets are behind the state")

// checkOffsets compares the group's committed offsets of partition with next, the input the
// restored state holds. Behind it, the records in between would be skipped: refused, unless
// (without transactions) the gap is at most a cycle's records, which a crash between the
// state's commit and the offsets' leaves (skipped, and counted: worker.skip). Without a
// committed offset (a new group, or offsets the broker expired), consuming starts where the
// state ends.
func (l *Live) checkOffsets(ctx context.Context, partition int32, next map[string]int64) error {
	if len(next) == 0 {
		return nil
	}
	committed, err := l.adm.FetchOffsets(ctx, l.cfg.Group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return failed("offsets", fmt.Errorf("pipeline: fetching group %q's offsets: %w", l.cfg.Group, err))
	}
	seek := map[string]map[int32]kgo.EpochOffset{}
	for _, topic := range l.cfg.Inputs {
		n, ok := next[topic]
		if !ok {
			continue
		}
		c, ok := committed.Lookup(topic, partition)
		if !ok || c.At < 0 {
			l.log.Info("the group has no offset for the partition; consuming from where its state ends",
				"topic", topic, "partition", partition, "offset", n)
			seek[topic] = map[int32]kgo.EpochOffset{partition: {Epoch: -1, Offset: n}}
			continue
		}
		gap := n - c.At
		if gap <= 0 || l.sess == nil && gap <= int64(l.cfg.MaxPollRecords) {
			continue
		}
		return fmt.Errorf("%w: topic %q partition %d: the group %q has committed offset %d, but the state already holds input up to offset %d; "+
			"the group was rewound without its state (Kafka's consumer-group tool resets offsets only). "+
			"Stop every instance and rewind with dwell reset --group %s (to the earliest offsets, or to a time: offsets and state move together), "+
			"or set the group's offset back to %d to go on where the state is",
			ErrOffsetsBehindState, topic, partition, l.cfg.Group, c.At, n, l.cfg.Group, n)
	}
	if len(seek) > 0 {
		l.cl.SetOffsets(seek)
	}
	return nil
}

// changelogStart returns the changelog partition's log start offset.
func (l *Live) changelogStart(ctx context.Context, partition int32) (int64, error) {
	topic := l.cfg.Topics.Changelog
	starts, err := l.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("pipeline: listing changelog offsets: %w", err)
	}
	s, ok := starts.Lookup(topic, partition)
	if !ok || s.Err != nil {
		return 0, fmt.Errorf("pipeline: topic %q has no partition %d; create it with as many partitions as the inputs (or pass --create-topics)", topic, partition)
	}
	return s.Offset, nil
}

// stableChangelogEnd waits until the changelog partition has no open transaction (its last
// stable offset reached its high watermark) and returns that end. A transaction left open by a
// crashed process hides every record after it from read_committed readers, including cycles that
// a later owner committed; restoring before the broker aborts it (after the transaction timeout)
// would miss them while the group's offsets already count them.
func (l *Live) stableChangelogEnd(ctx context.Context, partition int32) (kadm.ListedOffset, error) {
	topic := l.cfg.Topics.Changelog
	waited := false
	for {
		stable, err := l.adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			return kadm.ListedOffset{}, fmt.Errorf("pipeline: listing changelog offsets: %w", err)
		}
		end, ok := stable.Lookup(topic, partition)
		if !ok || end.Err != nil {
			return kadm.ListedOffset{}, fmt.Errorf("pipeline: topic %q has no partition %d; create it with as many partitions as the inputs, compacted (or pass --create-topics)", topic, partition)
		}
		hw, err := l.adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return kadm.ListedOffset{}, fmt.Errorf("pipeline: listing changelog offsets: %w", err)
		}
		if h, ok := hw.Lookup(topic, partition); ok && h.Err == nil && h.Offset <= end.Offset {
			return end, nil
		}
		if !waited {
			l.log.Info("waiting for an open transaction on the changelog to end (a crashed process's, aborted after its timeout)",
				"partition", partition)
			waited = true
		}
		select {
		case <-ctx.Done():
			return kadm.ListedOffset{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readChangelog reads partition's changelog records in [from, end) with read_committed
// isolation; transaction markers are kept so that reaching end needs no timeout.
func (l *Live) readChangelog(ctx context.Context, partition int32, from, end int64) ([]state.ChangelogRecord, error) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(l.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{l.cfg.Topics.Changelog: {partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	}, l.cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	defer cl.Close()
	var recs []state.ChangelogRecord
	for next := from; next < end; {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			return nil, fmt.Errorf("pipeline: reading changelog partition %d: %w", partition, errs[0].Err)
		}
		l.noteProgress(partition) // a long restore is progress, not a stall
		fetches.EachRecord(func(r *kgo.Record) {
			next = r.Offset + 1
			if !r.Attrs.IsControl() && r.Offset < end {
				recs = append(recs, state.ChangelogRecord{Offset: r.Offset, Key: r.Key, Value: r.Value})
			}
		})
	}
	return recs, nil
}
