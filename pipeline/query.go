package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Interactive queries (README, Admin API and interactive queries). A query is answered by the
// worker that owns the key's partition, on its goroutine, between two of its cycles' work: it
// runs as a query job the worker takes when it has no cycle job (worker.run), or between two
// records of a cycle (worker.answerQueries, so that a query waits for a few records rather
// than a whole cycle), so it never reads the state while the worker changes it. Run's
// goroutine, which changes a worker's sessionizer between jobs too (finish: eviction), holds
// the worker's stateMu meanwhile, as a query between jobs does. The answer reflects the records processed so far: they may not
// be committed yet, and a cycle that aborts is processed again after its partition restores.

// ErrNotOwner says the key's partition is not assigned to this instance: another instance of
// the group answers for it (or none, during a rebalance).
type ErrNotOwner struct{ Partition int32 }

func (e ErrNotOwner) Error() string {
	return fmt.Sprintf("pipeline: partition %d is not assigned to this instance", e.Partition)
}

// ErrRestoring says the key's partition is assigned to this instance but its state is still
// being restored (or rebuilt after a failed cycle): ask again shortly.
type ErrRestoring struct{ Partition int32 }

func (e ErrRestoring) Error() string {
	return fmt.Sprintf("pipeline: partition %d is restoring its state", e.Partition)
}

// ErrUnknownProfile says the owner of the profile's partition holds no state for it: no event
// of it was processed, or it was forgotten (profile_ttl).
var ErrUnknownProfile = errors.New("pipeline: no state for this profile")

// Profile returns the live state of profile, answered by the worker that owns its partition
// (KafkaPartition of the profile id over the inputs' partition count). Errors: ErrNotOwner,
// ErrRestoring, ErrUnknownProfile (wrapped, with the partition), or ctx's. Safe to call from
// any goroutine while Run runs.
func (l *Live) Profile(ctx context.Context, profile string) (ProfileView, error) {
	if profile == "" {
		return ProfileView{}, errors.New("pipeline: empty profile id")
	}
	n, err := l.inputPartitions(ctx)
	if err != nil {
		return ProfileView{}, err
	}
	p := KafkaPartition([]byte(profile), n)
	var (
		v     ProfileView
		found bool
	)
	key := "p" + profile
	err = l.onWorker(ctx, p, func(w *worker) error {
		kv, ok, err := w.s.Inspect(key)
		if err != nil || !ok {
			return err
		}
		found = true
		v = newProfileView(profile, kv)
		v.Offsets = maps.Clone(w.next)
		v.Watermark = watermarkTime(w.s.Watermark())
		return nil
	})
	if err != nil {
		return ProfileView{}, err
	}
	if !found {
		return ProfileView{}, fmt.Errorf("%w (profile %q, partition %d)", ErrUnknownProfile, profile, p)
	}
	v.Partition = p
	v.Rules = l.RuleSetVersion()
	return v, nil
}

// Partitions lists the partitions assigned to this instance, each answered by its worker
// (restoring ones without offsets), in partition order, with the rule set version.
func (l *Live) Partitions(ctx context.Context) (PartitionsView, error) {
	pv := PartitionsView{Partitions: []PartitionView{}, Rules: l.RuleSetVersion()}
	for _, p := range slices.Sorted(maps.Keys(l.assignedSet())) {
		v := PartitionView{Partition: p, State: stateRestoring}
		err := l.onWorker(ctx, p, func(w *worker) error {
			v.State = stateRunning
			v.Offsets = maps.Clone(w.next)
			v.Watermark = watermarkTime(w.s.Watermark())
			v.Keys = w.s.Stats().Keys
			v.Behind = w.s.Behind()
			return nil
		})
		var nr ErrRestoring
		var no ErrNotOwner
		switch {
		case errors.As(err, &no):
			continue // revoked meanwhile
		case err != nil && !errors.As(err, &nr):
			return PartitionsView{}, err
		}
		v.Lag = l.lag(p, v.Offsets)
		pv.Partitions = append(pv.Partitions, v)
	}
	return pv, nil
}

// onWorker runs fn on the goroutine of partition p's worker, between its cycles' work, and
// returns fn's error: ErrNotOwner when p is not assigned here, ErrRestoring when it has no
// running worker yet (or it stopped meanwhile).
func (l *Live) onWorker(ctx context.Context, p int32, fn func(*worker) error) error {
	l.mu.Lock()
	assigned, w := l.mu.assigned[p], l.mu.workers[p]
	l.mu.Unlock()
	if !assigned {
		return ErrNotOwner{p}
	}
	if w == nil {
		return ErrRestoring{p}
	}
	done := make(chan error, 1)
	q := func() { done <- fn(w) }
	select {
	case w.queries <- q:
	case <-w.exited:
		return l.notServing(p)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// notServing is the error for a partition whose worker stopped: revoked, or restoring again.
func (l *Live) notServing(p int32) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.assigned[p] {
		return ErrRestoring{p}
	}
	return ErrNotOwner{p}
}

// assignedSet is a copy of the partitions assigned to this instance.
func (l *Live) assignedSet() map[int32]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.mu.assigned)
}

// setWorker records partition p's running worker (nil: none), in l.parts for Run's goroutine
// and under l.mu for queries.
func (l *Live) setWorker(p int32, w *worker) {
	if w == nil {
		delete(l.parts, p)
	} else {
		l.parts[p] = w
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w == nil {
		delete(l.mu.workers, p)
	} else {
		l.mu.workers[p] = w
	}
}

// inputPartitions is the inputs' partition count (they are co-partitioned), read once.
func (l *Live) inputPartitions(ctx context.Context) (int32, error) {
	if n := l.nparts.Load(); n > 0 {
		return n, nil
	}
	td, err := l.adm.ListTopics(ctx, l.cfg.Inputs[0])
	if err == nil {
		err = td.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("pipeline: reading the partition count of %q: %w", l.cfg.Inputs[0], err)
	}
	n := int32(len(td[l.cfg.Inputs[0]].Partitions))
	if n == 0 {
		return 0, fmt.Errorf("pipeline: input topic %q has no partitions", l.cfg.Inputs[0])
	}
	l.nparts.Store(n)
	return n, nil
}

// highWatermarks are the inputs' high watermarks as last fetched, for Partitions' lag.
type highWatermarks struct {
	sync.Mutex
	m map[int32]map[string]int64 // partition -> topic -> high watermark
}

func (h *highWatermarks) set(p int32, topic string, hw int64) {
	h.Lock()
	defer h.Unlock()
	if h.m == nil {
		h.m = map[int32]map[string]int64{}
	}
	if h.m[p] == nil {
		h.m[p] = map[string]int64{}
	}
	h.m[p][topic] = hw
}

// lag is partition p's records per topic between next and the last fetched high watermark.
func (l *Live) lag(p int32, next map[string]int64) map[string]int64 {
	l.hwm.Lock()
	defer l.hwm.Unlock()
	var lag map[string]int64
	for t, hw := range l.hwm.m[p] {
		if n, ok := next[t]; ok {
			if lag == nil {
				lag = map[string]int64{}
			}
			lag[t] = max(0, hw-n)
		}
	}
	return lag
}

// AdminURLClientIDPrefix starts the Kafka client id of an instance that advertises an admin
// URL (LiveConfig.AdvertisedAdminURL): the rest of the client id is the URL. The group's
// description then tells every instance which URL answers for which partitions.
const AdminURLClientIDPrefix = "dwell-admin="

// PartitionOwners describes the group and returns, per partition of the inputs, the admin URL
// its owner advertises (members that advertise none are left out). Safe to call from any
// goroutine.
func (l *Live) PartitionOwners(ctx context.Context) (map[int32]string, error) {
	groups, err := l.adm.DescribeGroups(ctx, l.cfg.Group)
	if err == nil {
		err = groups.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("pipeline: describing group %q: %w", l.cfg.Group, err)
	}
	owners := map[int32]string{}
	for _, g := range groups {
		for _, m := range g.Members {
			url, ok := strings.CutPrefix(m.ClientID, AdminURLClientIDPrefix)
			if !ok {
				continue
			}
			a, ok := m.Assigned.AsConsumer()
			if !ok {
				continue
			}
			for _, t := range a.Topics {
				if t.Topic != l.cfg.Inputs[0] {
					continue
				}
				for _, p := range t.Partitions {
					owners[p] = url
				}
			}
		}
	}
	return owners, nil
}
