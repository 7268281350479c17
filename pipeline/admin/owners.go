package admin

import (
	"context"
	"sync"
	"time"
)

// owners caches which admin URL owns each partition (Locator), read again when older than
// maxAge, when it names no owner for a partition or names this instance (a miss), and when
// forced (the supposed owner answered not_owner). Misses read the group at most every
// minRefresh, so that queries for a partition nobody advertises do not each describe the group.
type owners struct {
	loc    Locator
	maxAge time.Duration
	now    func() time.Time
	mu     struct {
		sync.Mutex
		m  map[int32]string
		at time.Time // when m was read; zero: never
	}
}

// minRefresh is how soon after a read a miss may read the owners again.
const minRefresh = 100 * time.Millisecond

// lookup returns the admin URL of partition p's owner ("" if none advertises it).
func (o *owners) lookup(ctx context.Context, p int32, force bool, self string) (string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	age := now.Sub(o.mu.at)
	url := o.mu.m[p]
	miss := url == "" || url == self
	if !o.mu.at.IsZero() && !force && age < o.maxAge && (!miss || age < minRefresh) {
		return url, nil
	}
	// Read under the lock: concurrent misses wait for one read instead of each making one.
	m, err := o.loc.PartitionOwners(ctx)
	if err != nil {
		return "", err
	}
	o.mu.m, o.mu.at = m, now
	return m[p], nil
}
