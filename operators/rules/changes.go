package rules

// This file is the persistence seam for the pipeline, as operators/changes.go is for the
// sessionizer: the keys whose ProfileState changed in a processing cycle, with the one timer
// deadline each key has in a time-ordered timer index (its earliest scheduled event) and the
// deadline persisted before, which the index must delete when it differs.

// Change describes a key whose rule state changed since the last drain.
type Change struct {
	Key string
	// State is the key's state now; encode it with AppendEncode. Nil when Deleted.
	State *ProfileState
	// Deadline is the key's earliest scheduled event (0: none); Persisted the one reported at
	// the previous drain (or at Decode).
	Deadline, Persisted int64
	// Deleted: the state is empty; delete it and its Persisted timer entry.
	Deleted bool
}

// Changes collects changed keys between drains. The zero value is ready; like an Engine it is
// owned by the partition's goroutine.
type Changes struct {
	order []string
	state map[string]*ProfileState
}

// Note records that key's state changed (Outcome.StateChanged, or timers taken by PopDue).
// key is copied when first noted; st must stay the key's state until the drain.
func (c *Changes) Note(key string, st *ProfileState) {
	if c.state == nil {
		c.state = map[string]*ProfileState{}
	}
	if _, ok := c.state[key]; ok {
		return
	}
	key = string([]byte(key)) // key may be a view of a record
	c.state[key] = st
	c.order = append(c.order, key)
}

// Len is the number of keys noted since the last drain.
func (c *Changes) Len() int { return len(c.order) }

// Drain calls fn for every key noted since the last drain, in the order first noted, and
// forgets them; each state's persisted deadline becomes its current one.
func (c *Changes) Drain(fn func(Change)) {
	for i, key := range c.order {
		st := c.state[key]
		ch := Change{Key: key, Deadline: st.NextDeadline(), Persisted: st.persisted}
		if st.Empty() {
			ch.Deleted, ch.Deadline = true, 0
		} else {
			ch.State = st
		}
		st.persisted = ch.Deadline
		fn(ch)
		delete(c.state, key)
		c.order[i] = ""
	}
	c.order = c.order[:0]
}
