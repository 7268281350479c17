package pipeline

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The group's callbacks run on the client's goroutines; they only note what changed, under
// l.mu, and Run's goroutine acts on it at the start of its next cycle: a revoked or lost
// partition's worker stops there (dropRevoked), an assigned one is restored there (cycle.go).
// Under exactly-once, the transact session holds a revoke until the transaction in flight has
// ended; under at-least-once, BlockRebalanceOnPoll holds it until the cycle has committed its
// offsets.

// onRevokedOrLost notes partitions revoked (in a rebalance) or lost (the session expired, or
// the coordinator cannot be reached): either way this instance no longer owns them, and is not
// ready until its next cycle ends with its assignment restored.
func (l *Live) onRevokedOrLost(_ context.Context, _ *kgo.Client, gone map[string][]int32) {
	if m := l.cfg.Metrics; m != nil {
		m.rebalances.Inc()
	}
	l.ready.Store(false)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ps := range gone {
		for _, p := range ps {
			l.mu.revoked[p] = true
			delete(l.mu.assigned, p)
		}
		l.noteGone(ps)
	}
}

// onAssigned notes partitions assigned to this instance: not ready until they are restored.
func (l *Live) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	if m := l.cfg.Metrics; m != nil {
		m.rebalances.Inc()
	}
	l.ready.Store(false)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ps := range assigned {
		for _, p := range ps {
			l.mu.assigned[p] = true
			delete(l.mu.revoked, p)
		}
		l.noteAssigned(ps)
	}
}

// dropRevoked stops the workers of partitions revoked or lost since the last cycle.
func (l *Live) dropRevoked() {
	l.mu.Lock()
	revoked := l.mu.revoked
	l.mu.revoked = map[int32]bool{}
	l.mu.Unlock()
	for p := range revoked {
		if w, ok := l.parts[p]; ok {
			w.stop()
			l.setWorker(p, nil)
		}
	}
}

// assignedPartitions returns the partitions currently assigned to this instance.
func (l *Live) assignedPartitions() []int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	ps := make([]int32, 0, len(l.mu.assigned))
	for p := range l.mu.assigned {
		ps = append(ps, p)
	}
	return ps
}

// updateReady records whether every assigned partition has a running worker.
func (l *Live) updateReady() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := range l.mu.assigned {
		if _, ok := l.parts[p]; !ok {
			l.ready.Store(false)
			return
		}
	}
	l.ready.Store(len(l.mu.assigned) > 0)
}
