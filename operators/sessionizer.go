package operators

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/dwellhq/dwell/operators/internal/jsonx"
	"github.com/dwellhq/dwell/operators/internal/timerwheel"
)

// Sessionizer turns the records of one partition into system events, enriched events, late
// events and dead letters. It owns the partition's state, timers and watermark and is used by
// one goroutine; see doc.go for the semantics it implements.
type Sessionizer struct {
	cfg       Config
	gap       int64 // the durations of cfg, in ms
	sessTO    int64
	maxVisit  int64
	maxSess   int64
	ttl       int64
	ooo       int64
	lateness  int64 // cfg.Lateness()
	idle      int64
	endTypes  map[string]bool
	enabled   [numSystemTypes]bool
	out       Emitter
	dec       *Decoder
	keys      map[string]*keyState
	wheel     *timerwheel.Wheel[*keyState]
	buf       reorderBuffer
	watermark int64 // reached: events up to it processed, timers before it fired
	target    int64 // asked for by the input; the watermark trails it while a budget stops the work (budget.go)
	maxSeen   int64
	flushing  bool // the end of input: what is open ends with reason shutdown-flush
	ending    bool // Flush was called

	// Bounded work (budget.go): the budget in force, and the records that arrived while the
	// watermark trailed the target, processed from heldNext on once it has caught up.
	bud      budget
	held     []Record
	heldNext int
	catching bool

	// Idle advancement, driven by Tick.
	received bool
	lastRecv int64

	guard guard // the watermark guard (guard.go)

	// Allocation pools: key states and key strings are carved from chunks; visits and
	// sessions, with their buffers, are recycled through free lists.
	slab      []keyState
	slabs     [][]keyState // every chunk, for Evict's clock hand
	freeKeys  []*keyState
	arena     []byte
	freeVisit []*visitState

	// batchEv holds a batch record's own fields while its events are processed, elemRec the
	// record standing for the element at hand (its dead letters' value).
	batchEv  Event
	elemRec  Record
	freeSess []*sessionState
	keyBuf   []byte
	hashBuf  []byte
	extBuf   []byte
	o        Output
	se       SystemEvent
	ev       Event

	// Bounded memory (cold.go).
	cold       ColdStore
	coldTimers coldHeap
	// forgotten holds the keys forgotten since the last DrainChanges: the cold store still
	// has their old state until the deletion is stored, and must not bring it back.
	forgotten map[string]struct{}
	hand      struct{ slab, i int }
	err       error

	partition int32 // the partition this sessionizer owns (for error messages)

	// Key extensions (ext.go).
	extDec func([]byte) (KeyExt, error)
	admit  func(*Event) Admission

	track bool // record changed keys for DrainChanges
	dirty []*keyState
	stats Stats
}

// Stats are the sessionizer's counters and gauges.
type Stats struct {
	Records      uint64
	Events       uint64
	PassThrough  uint64
	Ephemeral    uint64
	Late         uint64
	LateByReason map[Reason]uint64
	Dead         uint64
	DeadByReason map[Reason]uint64
	System       [numSystemTypes]uint64
	OpenVisits   int
	OpenSessions int
	Keys         int
	Buffered     int
	Timers       int
	Watermark    int64 // math.MinInt64 before the first event
	// Evicted and Loaded count keys moved out of and back into memory (bounded memory).
	Evicted, Loaded uint64
	ColdTimers      int // evicted keys waiting on a deadline
	// Held is the records waiting for the watermark to catch up; Behind is 1 for a partition
	// whose budget stopped its work (budget.go), so that a sum counts such partitions.
	Held, Behind int
	// ExtPending counts what Flush left pending of key extensions: deadlines after the largest
	// event time seen (rules: scheduled events), which do not fire at the end of input (ext.go).
	ExtPending uint64
}

// Add sums o into st, counters and gauges alike (a sum over partitions); Watermark is left
// alone, since watermarks do not add.
func (st *Stats) Add(o Stats) {
	st.Records += o.Records
	st.Events += o.Events
	st.PassThrough += o.PassThrough
	st.Ephemeral += o.Ephemeral
	st.Late += o.Late
	if len(o.LateByReason) > 0 && st.LateByReason == nil {
		st.LateByReason = make(map[Reason]uint64, len(o.LateByReason))
	}
	for r, n := range o.LateByReason {
		st.LateByReason[r] += n
	}
	st.Dead += o.Dead
	if len(o.DeadByReason) > 0 && st.DeadByReason == nil {
		st.DeadByReason = make(map[Reason]uint64, len(o.DeadByReason))
	}
	for r, n := range o.DeadByReason {
		st.DeadByReason[r] += n
	}
	for i, n := range o.System {
		st.System[i] += n
	}
	st.OpenVisits += o.OpenVisits
	st.OpenSessions += o.OpenSessions
	st.Keys += o.Keys
	st.Buffered += o.Buffered
	st.Timers += o.Timers
	st.Evicted += o.Evicted
	st.Loaded += o.Loaded
	st.ColdTimers += o.ColdTimers
	st.Held += o.Held
	st.Behind += o.Behind
	st.ExtPending += o.ExtPending
}

// Timer kinds: each key has at most one pending deadline of each.
const (
	timerSession = 0
	timerVisit   = 1
	timerForget  = 2
	timerExt     = 3
	numTimers    = 4
)

// keyState is what dwell keeps for one key (a profile, or the session of a profile-less
// event). It stays small, since a profile is remembered long after its visits: the open visit
// and sessions, with their buffers, are recycled objects it points to while they exist.
type keyState struct {
	key string // 'p'+profile or 's'+session
	// lastSeen is the key's last event time (seen says there is one): profile_ttl counts from
	// it, both for profile-created and for forgetting the key.
	lastSeen int64
	seen     bool
	// visitSeq numbers the key's visits and sessSeq its sessions, so that a session reopened
	// in the same millisecond gets new ids, and a session is counted once per visit.
	visitSeq uint64
	sessSeq  uint64
	deleted  bool // forgotten; reported by DrainChanges, then recycled
	ref      bool // used since Evict's clock hand last passed
	// visitEnd is the last activity of the key's most recent ended visit (late detection);
	// ended says there is one.
	visitEnd int64
	ended    bool
	dirty    bool
	visit    *visitState   // nil: no open visit
	sessions *sessionState // open sessions, a list through sessionState.next
	lastSess *sessionState // the session of the key's last event, checked first
	nsess    int
	timers   [numTimers]timerwheel.Node[*keyState]
	// persisted are the deadlines last reported by DrainChanges (or restored).
	persisted [numTimers]int64
	ext       KeyExt // the layer above's state for the key (ext.go); nil: none
}

// activity is an open visit or session.
type activity struct {
	id       [32]byte // hex
	cause    EventRef // the last event
	causeBuf []byte   // owns cause.ID
	Summary
}

type visitState struct {
	activity
	session   []byte // the session of the latest event
	entryTime int64  // the time of the event EntryURL came from
}

type sessionState struct {
	activity
	id        []byte
	seq       uint64 // keyState.sessSeq when it opened
	countedIn uint64 // the visitSeq of the last visit that counted it in SessionCount
	next      *sessionState
}

// NewSessionizer returns a sessionizer for partition that emits to out. cfg is copied; its
// zero fields take their defaults. The wall clock (for idle advancement) is not its own: Tick
// passes it in.
func NewSessionizer(cfg Config, partition int32, out Emitter) (*Sessionizer, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sessionizer{
		cfg:       cfg,
		gap:       cfg.VisitGap.Milliseconds(),
		sessTO:    cfg.SessionTimeout.Milliseconds(),
		maxVisit:  cfg.MaxVisitDuration.Milliseconds(),
		maxSess:   cfg.MaxSessionDuration.Milliseconds(),
		ttl:       cfg.ProfileTTL.Milliseconds(),
		ooo:       cfg.MaxOutOfOrderness.Milliseconds(),
		lateness:  cfg.Lateness().Milliseconds(),
		idle:      cfg.IdleTimeout.Milliseconds(),
		endTypes:  map[string]bool{},
		out:       out,
		dec:       NewDecoder(&cfg),
		keys:      make(map[string]*keyState),
		watermark: math.MinInt64,
		target:    math.MinInt64,
		maxSeen:   math.MinInt64,
		guard:     newGuard(&cfg),
	}
	s.partition = partition
	for _, t := range cfg.SessionEndTypes {
		s.endTypes[NormalizeType(t)] = true
	}
	for i := range s.enabled {
		s.enabled[i] = true
	}
	for _, t := range cfg.Disabled {
		s.enabled[t] = false
	}
	s.wheel = timerwheel.New(0, timerLess)
	s.stats.DeadByReason = make(map[Reason]uint64)
	s.stats.LateByReason = make(map[Reason]uint64)
	return s, nil
}

// timerLess orders timers that share a deadline: by kind (session, visit, forget), then key, the
// order of the persisted timer index (AppendTimerKey), so that a key's session-closed precedes
// its visit-ended and timers restored from the index fire in the same order.
func timerLess(a, b *timerwheel.Node[*keyState]) bool {
	if ka, kb := a.Value.timerKind(a), b.Value.timerKind(b); ka != kb {
		return ka < kb
	}
	return a.Value.key < b.Value.key
}

func (k *keyState) timerKind(n *timerwheel.Node[*keyState]) int {
	for i := range k.timers {
		if n == &k.timers[i] {
			return i
		}
	}
	panic("operators: timer of another key")
}

// Stats returns the counters and gauges.
func (s *Sessionizer) Stats() Stats {
	st := s.stats
	st.DeadByReason = make(map[Reason]uint64, len(s.stats.DeadByReason))
	for k, v := range s.stats.DeadByReason {
		st.DeadByReason[k] = v
	}
	st.LateByReason = make(map[Reason]uint64, len(s.stats.LateByReason))
	for k, v := range s.stats.LateByReason {
		st.LateByReason[k] = v
	}
	st.Keys = len(s.keys)
	st.Buffered = s.buf.len()
	st.Timers = s.wheel.Len()
	st.Watermark = s.watermark
	st.ColdTimers = len(s.coldTimers)
	st.Held = s.heldLen()
	if s.Behind() {
		st.Behind = 1
	}
	return st
}

// Watermark is the partition's event-time watermark (math.MinInt64 before the first event).
func (s *Sessionizer) Watermark() int64 { return s.watermark }

// MaxSeen returns the largest event time the partition has seen, and whether it has seen one.
func (s *Sessionizer) MaxSeen() (int64, bool) { return s.maxSeen, s.maxSeen != math.MinInt64 }

// Process decodes one record and processes it. Bad records, and events whose time the guard
// rejects (guard.go), become dead letters. While the partition is Behind, the record is held
// (copied) and processed once the watermark has caught up, where an unbounded run would have
// processed it.
func (s *Sessionizer) Process(rec *Record) {
	s.received = true
	if s.Behind() {
		s.hold(rec)
		s.catchUp()
		return
	}
	s.process(rec)
}

func (s *Sessionizer) process(rec *Record) {
	s.stats.Records++
	ev := &s.ev
	err := s.dec.Decode(rec, ev)
	switch {
	case err == ErrBatch:
		s.processBatch(rec)
		return
	case err != nil:
		s.stats.Dead++
		s.stats.DeadByReason[err.Reason]++
		s.o = Output{Kind: KindDead, Record: rec, Reason: err.Reason, Detail: err.Detail}
		s.out.Emit(&s.o)
		return
	}
	s.processDecoded(rec, ev)
}

// processBatch processes each event of a batch record (Decoder.Elements) as if it were a
// record of its own at rec's offset: an element that fails is dead-lettered alone, with its
// bytes as the value.
func (s *Sessionizer) processBatch(rec *Record) {
	s.batchEv = s.ev // the batch's own fields
	s.dec.Elements(rec, &s.batchEv, &s.ev, func(_ int, elem []byte, ev *Event, err *DecodeError) {
		s.elemRec = Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Value: elem, Timestamp: rec.Timestamp}
		if err != nil {
			s.stats.Dead++
			s.stats.DeadByReason[err.Reason]++
			s.o = Output{Kind: KindDead, Record: &s.elemRec, Reason: err.Reason, Detail: err.Detail}
			s.out.Emit(&s.o)
			return
		}
		s.processDecoded(&s.elemRec, ev)
	})
}

// processDecoded guards, admits and processes the event decoded from rec.
func (s *Sessionizer) processDecoded(rec *Record, ev *Event) {
	if s.guardTime(rec, ev) {
		return
	}
	if s.admit != nil {
		a := s.admit(ev)
		switch {
		case a.Reason != "":
			s.stats.Dead++
			s.stats.DeadByReason[a.Reason]++
			s.o = Output{Kind: KindDead, Record: rec, Reason: a.Reason, Detail: a.Detail}
			s.out.Emit(&s.o)
			return
		case a.Drop:
			return
		case a.Ephemeral:
			ev.Ephemeral = true
		}
	}
	s.ProcessEvent(ev)
}

// ProcessEvent processes one decoded event. ev is copied when it must wait in the reorder
// buffer; the bytes it points to must stay unchanged until the event is emitted.
func (s *Sessionizer) ProcessEvent(ev *Event) {
	s.stats.Events++
	s.received = true
	if ev.Time < s.target {
		// Behind the watermark: it joins the open visit if it can, without changing history.
		// (Records reach here only once the watermark has caught up: target == watermark.)
		s.processLate(ev)
		s.advanceTimers(s.watermark)
		return
	}
	s.buf.push(ev)
	if ev.Time > s.maxSeen {
		s.maxSeen = ev.Time
		if w := ev.Time - s.ooo; w > s.target {
			s.setWatermark(w)
		}
	}
}

// Tick drives idle advancement with the wall clock: once no record has arrived for IdleTimeout,
// the watermark follows now minus MaxOutOfOrderness. Call it periodically (e.g. every second).
func (s *Sessionizer) Tick(now time.Time) {
	nowMS := now.UnixMilli()
	s.guard.setWall(nowMS)
	if s.received || s.lastRecv == 0 {
		s.received = false
		s.lastRecv = nowMS
		return
	}
	if s.idle < 0 || nowMS-s.lastRecv < s.idle {
		return
	}
	if w := nowMS - s.ooo; w > s.target {
		s.setWatermark(w)
	}
}

// Flush ends input: every buffered event is processed and every open visit and session ends
// with reason shutdown-flush, as if the watermark had reached +infinity. Offline mode calls it at
// the end of the input. Under a budget it may stop early (Behind); call it, or Continue, again
// until it has finished.
func (s *Sessionizer) Flush() {
	if !s.ending {
		// Input ended at the largest event time seen: what ended before it ended for its own
		// reason.
		s.ending = true
		s.target = max(s.target, s.maxSeen)
	}
	if !s.flushing {
		if s.catchUp(); s.Behind() {
			return
		}
		s.flushing = true
	}
	s.setWatermark(math.MaxInt64)
}

// setWatermark asks for the watermark to move to w, and moves it as far as the budget allows
// (budget.go): before an event at t, every timer due before t fires.
func (s *Sessionizer) setWatermark(w int64) {
	s.target = max(s.target, w)
	s.catchUp()
}

// advanceTimers fires every timer whose deadline is before t, without a budget: after a late
// event, the few timers it moved before the watermark.
func (s *Sessionizer) advanceTimers(t int64) {
	b := s.bud
	s.bud = budget{}
	s.fireBefore(t)
	s.bud = b
}

// stateKey builds the state key of ev into s.keyBuf: 'p'+profile, or 's'+session for a
// profile-less event; ok is false for an event with neither.
func (s *Sessionizer) stateKey(ev *Event) (key []byte, ok bool) {
	switch {
	case len(ev.Profile) > 0:
		s.keyBuf = append(append(s.keyBuf[:0], 'p'), ev.Profile...)
	case len(ev.Session) > 0:
		s.keyBuf = append(append(s.keyBuf[:0], 's'), ev.Session...)
	default:
		return nil, false
	}
	return s.keyBuf, true
}

// lookup finds the key in memory or, when evicted, in the cold store.
func (s *Sessionizer) lookup(key []byte) *keyState {
	if k := s.keys[string(key)]; k != nil {
		return k
	}
	k := s.loadCold(key)
	if k != nil {
		s.spend() // a key loaded back (a new key, not found, costs no load)
	}
	return k
}

// create makes the state of a new key. Key states come from a free list or a chunk, key bytes
// from an arena (internKey).
func (s *Sessionizer) create(key []byte) *keyState {
	k := popFree(&s.freeKeys)
	if k == nil {
		if len(s.slab) == 0 {
			s.slab = make([]keyState, 256)
			s.slabs = append(s.slabs, s.slab)
		}
		k = &s.slab[0]
		s.slab = s.slab[1:]
		for i := range k.timers {
			k.timers[i].Value = k
		}
	}
	k.key = s.internKey(key)
	s.keys[k.key] = k
	return k
}

// internKey copies key into an arena chunk and returns it as a string, so that new keys cost no
// allocation. A chunk is never written again once strings point into it, and the collector
// frees it when every key in it has been forgotten; keys forgotten by profile_ttl were created
// at similar times, so old chunks do empty.
func (s *Sessionizer) internKey(key []byte) string {
	if len(key) > 256 {
		return string(key)
	}
	if cap(s.arena)-len(s.arena) < len(key) {
		s.arena = make([]byte, 0, 32<<10)
	}
	start := len(s.arena)
	s.arena = append(s.arena, key...)
	return jsonx.String(s.arena[start:len(s.arena):len(s.arena)])
}

// forget removes a key unseen for profile_ttl with nothing open. With change tracking on, the
// state stays on the dirty list, marked deleted, until DrainChanges reports it.
func (s *Sessionizer) forget(k *keyState) {
	delete(s.keys, k.key)
	for i := range k.timers {
		s.wheel.Cancel(&k.timers[i])
	}
	if s.track {
		k.deleted = true
		s.markDirty(k)
		if s.cold != nil {
			if s.forgotten == nil {
				s.forgotten = map[string]struct{}{}
			}
			s.forgotten[k.key] = struct{}{}
		}
		return
	}
	s.release(k)
}

// release recycles a forgotten key state.
func (s *Sessionizer) release(k *keyState) {
	timers := k.timers
	*k = keyState{timers: timers}
	s.freeKeys = append(s.freeKeys, k)
}

func (s *Sessionizer) markDirty(k *keyState) {
	if s.track && !k.dirty {
		k.dirty = true
		s.dirty = append(s.dirty, k)
	}
}

// processLate handles an event older than the watermark. One further behind it than the
// allowed lateness is late whatever its key's state (LateBeyondLateness). Otherwise it joins the
// key's open visit when it falls inside it; if it would fall into or extend a visit that has
// ended or predate the open one, it is late. An event of a key with no visit near it starts one
// as usual.
//
// A late event changes nothing: no key is created, no time, counter or timer of its key moves.
// The key is looked up (loaded back when evicted, as an unbounded run has it in memory) only
// because its late output carries the key's open visit and extension, which rules flagged late
// read.
func (s *Sessionizer) processLate(ev *Event) {
	key, keyed := s.stateKey(ev)
	// s.target is the watermark here: records reach processLate only once it has caught up.
	if ev.Time < s.target-s.lateness {
		var k *keyState
		if keyed {
			if k = s.lookup(key); s.err != nil {
				return
			}
		}
		s.emitLate(ev, key, k, LateBeyondLateness)
		return
	}
	if !keyed {
		s.processEvent(ev)
		return
	}
	if k := s.lookup(key); k != nil {
		var reason Reason
		switch v := k.visit; {
		case v != nil && ev.Time < v.StartedAt:
			reason = LateBeforeVisit
		case v == nil && k.ended && ev.Time <= k.visitEnd+s.gap:
			reason = LateVisitEnded
		}
		if reason != "" {
			s.emitLate(ev, key, k, reason)
			return
		}
	}
	s.processEvent(ev)
}

// emitLate emits ev as late for reason. key is its state key (nil for an event with neither
// profile nor session) and k the key's state, nil when it has none: then nothing is created,
// and rules see a key without state.
func (s *Sessionizer) emitLate(ev *Event, key []byte, k *keyState, reason Reason) {
	s.stats.Late++
	s.stats.LateByReason[reason]++
	s.o = Output{Kind: KindLate, Event: ev, Reason: reason, k: k}
	if key != nil {
		s.o.Key = key[1:]
	}
	if k != nil && k.visit != nil {
		s.o.VisitID, s.o.Visit = k.visit.id[:], &k.visit.Summary
	}
	s.out.Emit(&s.o)
}

// processEvent sessionizes one event whose time the watermark allows.
func (s *Sessionizer) processEvent(ev *Event) {
	if ev.Ephemeral {
		s.stats.Ephemeral++
	}
	key, ok := s.stateKey(ev)
	if !ok {
		s.stats.PassThrough++
		if !ev.Ephemeral || s.extDec != nil {
			s.o = Output{Kind: KindPassThrough, Event: ev}
			s.out.Emit(&s.o)
		}
		return
	}
	k := s.lookup(key)
	if s.err != nil {
		return
	}
	if k == nil {
		k = s.create(key)
	}
	k.ref = true
	s.markDirty(k)
	outKey := k.key[1:]
	t := ev.Time
	profile := k.key[0] == 'p'

	if profile && (!k.seen || t-k.lastSeen > s.ttl) {
		s.emitOpen(ProfileCreated, k, ev, nil, nil)
	}
	if !k.seen {
		k.seen, k.lastSeen = true, t
		s.arm(&k.timers[timerForget], t+s.ttl)
	}
	k.lastSeen = max(k.lastSeen, t)

	var sess *sessionState
	newSess, newVisit := false, false
	if len(ev.Session) > 0 {
		sess = k.findSession(ev.Session)
		if sess == nil {
			sess, newSess = s.openSession(k, ev), true
		}
		k.lastSess = sess
	}
	v := k.visit
	if v == nil {
		newVisit = true
		v = s.newVisit()
		k.visit = v
		k.visitSeq++
		s.startActivity(&v.activity, k, ev, 'v', nil, 0)
		v.entryTime = ev.Time
		s.emitOpen(VisitStarted, k, ev, v.id[:], nil)
	}
	if sess != nil && sess.countedIn != k.visitSeq {
		sess.countedIn = k.visitSeq
		v.SessionCount++
	}
	if len(ev.URL) > 0 && (len(v.EntryURL) == 0 || ev.Time < v.entryTime) {
		v.EntryURL, v.entryTime = append(v.EntryURL[:0], ev.URL...), ev.Time
	}
	if ev.Time >= v.LastActivity {
		v.session = append(v.session[:0], ev.Session...)
	}
	s.record(&v.activity, ev)
	if sess != nil {
		s.record(&sess.activity, ev)
	}

	if !ev.Ephemeral || s.extDec != nil {
		s.o = Output{Kind: KindEvent, Key: jsonx.Bytes(outKey), Event: ev, VisitID: v.id[:], Visit: &v.Summary, k: k}
		if sess != nil {
			s.o.Session, s.o.SessionID = &sess.Summary, sess.id
		}
		s.out.Emit(&s.o)
	}

	// Activity only moves deadlines later, and timers are lazy: only what just opened needs
	// arming (see arm).
	if newVisit {
		s.arm(&k.timers[timerVisit], s.visitDeadline(v))
	}
	if sess != nil && s.endTypes[ev.Type] {
		s.closeSession(k, sess, ReasonEndEvent, t)
	} else if newSess {
		s.arm(&k.timers[timerSession], s.sessionDeadline(sess))
	}
}

// openSession opens a session for ev's session id, closing the least recently active one when
// the key is at MaxOpenSessions.
func (s *Sessionizer) openSession(k *keyState, ev *Event) *sessionState {
	if k.nsess >= s.cfg.MaxOpenSessions {
		oldest := k.sessions
		for o := oldest.next; o != nil; o = o.next {
			if o.LastActivity < oldest.LastActivity {
				oldest = o
			}
		}
		s.closeSession(k, oldest, ReasonMaxOpenSessions, ev.Time)
	}
	ss := s.newSession()
	ss.id = append(ss.id[:0], ev.Session...)
	k.sessSeq++
	ss.seq, ss.countedIn = k.sessSeq, 0
	s.startActivity(&ss.activity, k, ev, 's', ss.id, ss.seq)
	k.addSession(ss)
	s.emitOpen(SessionOpened, k, ev, nil, ss)
	return ss
}

// popFree takes the last entry of a free list, or returns nil when it is empty.
func popFree[T any](free *[]*T) *T {
	n := len(*free)
	if n == 0 {
		return nil
	}
	v := (*free)[n-1]
	(*free)[n-1] = nil
	*free = (*free)[:n-1]
	return v
}

func (s *Sessionizer) newSession() *sessionState {
	if ss := popFree(&s.freeSess); ss != nil {
		return ss
	}
	ss := new(sessionState)
	ss.activity.initBuffers()
	ss.id = make([]byte, 0, 48)
	return ss
}

func (s *Sessionizer) newVisit() *visitState {
	if v := popFree(&s.freeVisit); v != nil {
		return v
	}
	v := new(visitState)
	v.activity.initBuffers()
	v.session = make([]byte, 0, 48)
	return v
}

// addSession appends ss to k's open sessions, which stay in the order they opened.
func (k *keyState) addSession(ss *sessionState) {
	ss.next = nil
	p := &k.sessions
	for *p != nil {
		p = &(*p).next
	}
	*p = ss
	k.nsess++
}

// initBuffers gives a new activity buffers sized for typical events, carved from one block
// with capped capacities (a longer value reallocates its own buffer, never its neighbour's), so
// that recycled visits and sessions stop allocating at once instead of each growing its own.
func (a *activity) initBuffers() {
	block := make([]byte, 512)
	carve := func(from, to int) []byte { return block[from:from:to] }
	a.EntryURL, a.ExitURL = carve(0, 160), carve(160, 320)
	a.causeBuf = carve(320, 384)
	a.Source, a.Device = carve(384, 448), carve(448, 512)
	a.Types = make([]TypeCount, 0, 8)
}

func (k *keyState) findSession(id []byte) *sessionState {
	if ss := k.lastSess; ss != nil && bytes.Equal(ss.id, id) {
		return ss
	}
	for ss := k.sessions; ss != nil; ss = ss.next {
		if bytes.Equal(ss.id, id) {
			return ss
		}
	}
	return nil
}

// startActivity resets a to a new visit or session that starts with ev.
func (s *Sessionizer) startActivity(a *activity, k *keyState, ev *Event, kind byte, sessionID []byte, seq uint64) {
	a.Summary = Summary{
		StartedAt: ev.Time, LastActivity: ev.Time,
		EntryURL: a.EntryURL[:0], ExitURL: a.ExitURL[:0],
		Source: append(a.Source[:0], ev.Source...), Device: append(a.Device[:0], ev.Device...),
		Types: a.Types[:0],
	}
	id := s.contentID(kind, k.key, ev.Time, sessionID, seq)
	hex.Encode(a.id[:], id[:])
}

// record adds ev to a's summary.
func (s *Sessionizer) record(a *activity, ev *Event) {
	a.EventCount++
	if ev.Type == "page-view" {
		a.PageViewCount++
	}
	if len(ev.URL) > 0 {
		if len(a.EntryURL) == 0 {
			a.EntryURL = append(a.EntryURL, ev.URL...)
		}
		if ev.Time >= a.LastActivity || len(a.ExitURL) == 0 {
			a.ExitURL = append(a.ExitURL[:0], ev.URL...)
		}
	}
	// The cause of a close is the latest event; a late event that joins is not it.
	if ev.Time >= a.LastActivity {
		a.LastActivity = ev.Time
		a.cause = EventRef{Topic: ev.Topic, Partition: ev.Partition, Offset: ev.Offset}
		if ev.ID != nil {
			a.causeBuf = append(a.causeBuf[:0], ev.ID...)
			a.cause.ID = a.causeBuf
		}
	}
	s.countType(&a.Summary, ev.Type)
}

// countType counts one event of type t. Types are interned by the decoder, so comparing string
// pointers finds the entry without comparing bytes; the slice stays sorted by type.
func (s *Sessionizer) countType(a *Summary, t string) {
	for i := range a.Types {
		if tc := &a.Types[i]; unsafe.StringData(tc.Type) == unsafe.StringData(t) && len(tc.Type) == len(t) {
			tc.Count++
			return
		}
	}
	i, found := slices.BinarySearchFunc(a.Types, t, func(tc TypeCount, t string) int { return strings.Compare(tc.Type, t) })
	switch {
	case found:
		a.Types[i].Count++
	case len(a.Types) < s.cfg.MaxTypeCounts:
		a.Types = slices.Insert(a.Types, i, TypeCount{Type: t, Count: 1})
	default:
		a.OtherTypes++
	}
}

func (s *Sessionizer) visitDeadline(v *visitState) int64 {
	return min(v.LastActivity+s.gap, v.StartedAt+s.maxVisit)
}

func (s *Sessionizer) sessionDeadline(ss *sessionState) int64 {
	return min(ss.LastActivity+s.sessTO, ss.StartedAt+s.maxSess)
}

// Timers are lazy: activity only ever moves a deadline later, so a pending timer is moved only
// when the real deadline is earlier than it; a timer that fires early re-arms itself at the real
// deadline (fire). This keeps the wheel out of the per-event path, where rescheduling touched
// neighbouring nodes on every event.

// scheduleSessions arms the key's session timer for its earliest session deadline.
func (s *Sessionizer) scheduleSessions(k *keyState) {
	if k.sessions == nil {
		s.wheel.Cancel(&k.timers[timerSession])
		return
	}
	s.arm(&k.timers[timerSession], s.firstSessionDeadline(k))
}

// arm makes n fire no later than d.
func (s *Sessionizer) arm(n *timerwheel.Node[*keyState], d int64) {
	if !n.Scheduled() || d < n.Deadline() {
		s.wheel.Schedule(n, d)
	}
}

func (s *Sessionizer) firstSessionDeadline(k *keyState) int64 {
	d := int64(math.MaxInt64)
	for ss := k.sessions; ss != nil; ss = ss.next {
		d = min(d, s.sessionDeadline(ss))
	}
	return d
}

// fire handles a due timer.
func (s *Sessionizer) fire(n *timerwheel.Node[*keyState]) {
	k := n.Value
	s.markDirty(k)
	if n == &k.timers[timerForget] {
		// Unseen for profile_ttl: forget the key, once nothing of it is open (a ttl shorter
		// than the gaps only delays this).
		d := k.lastSeen + s.ttl
		if k.visit != nil {
			d = max(d, s.visitDeadline(k.visit))
		}
		if k.sessions != nil {
			for ss := k.sessions; ss != nil; ss = ss.next {
				d = max(d, s.sessionDeadline(ss))
			}
		}
		ext := k.extDeadline()
		d = max(d, ext)
		if d != n.At() {
			s.wheel.Schedule(n, d)
			return
		}
		if k.visit == nil && k.sessions == nil && ext == 0 {
			s.forget(k)
			return
		}
		s.wheel.Schedule(n, d+1) // what is open closes at d, after this timer (kind order)
		return
	}
	if n == &k.timers[timerExt] {
		s.fireExt(k, n)
		return
	}
	if n == &k.timers[timerVisit] {
		v := k.visit
		if d := s.visitDeadline(v); d != n.At() {
			s.wheel.Schedule(n, d) // early: activity moved the deadline
			return
		}
		reason := ReasonInactivity
		if v.StartedAt+s.maxVisit < v.LastActivity+s.gap {
			reason = ReasonMaxDuration
		}
		s.endVisit(k, reason, s.visitDeadline(v))
		return
	}
	// Session timer: close the sessions due at the earliest deadline, in the order they
	// opened, then re-arm for the rest.
	d := s.firstSessionDeadline(k)
	if d != n.At() {
		s.wheel.Schedule(n, d)
		return
	}
	for ss := k.sessions; ss != nil; {
		next := ss.next
		if s.sessionDeadline(ss) == d {
			reason := ReasonInactivity
			if ss.StartedAt+s.maxSess < ss.LastActivity+s.sessTO {
				reason = ReasonMaxDuration
			}
			s.closeSession(k, ss, reason, d)
		}
		ss = next
	}
	s.scheduleSessions(k)
}

func (s *Sessionizer) endVisit(k *keyState, reason CloseReason, at int64) {
	v := k.visit
	if s.flushing {
		reason = ReasonShutdownFlush
	}
	v.Reason = reason
	s.emitClose(VisitEnded, k, &v.activity, v.session, 0, at)
	k.visit = nil
	s.freeVisit = append(s.freeVisit, v)
	k.visitEnd, k.ended = v.LastActivity, true
	s.wheel.Cancel(&k.timers[timerVisit])
}

// closeSession closes ss and removes it from k.sessions. The caller re-arms the session timer.
func (s *Sessionizer) closeSession(k *keyState, ss *sessionState, reason CloseReason, at int64) {
	if s.flushing {
		reason = ReasonShutdownFlush
	}
	ss.Reason = reason
	s.emitClose(SessionClosed, k, &ss.activity, ss.id, ss.seq, at)
	p := &k.sessions
	for *p != ss {
		p = &(*p).next
	}
	*p = ss.next
	ss.next = nil
	k.nsess--
	if k.lastSess == ss {
		k.lastSess = nil
	}
	s.freeSess = append(s.freeSess, ss)
	if k.sessions == nil {
		s.wheel.Cancel(&k.timers[timerSession])
	}
}

// emitOpen emits profile-created, session-opened or visit-started, triggered by ev.
func (s *Sessionizer) emitOpen(t SystemType, k *keyState, ev *Event, visitID []byte, ss *sessionState) {
	s.stats.System[t]++
	switch t {
	case VisitStarted:
		s.stats.OpenVisits++
	case SessionOpened:
		s.stats.OpenSessions++
	}
	if !s.enabled[t] {
		return
	}
	s.se = SystemEvent{
		Type: t, Time: ev.Time, Session: ev.Session, Source: ev.Source,
		Cause:   EventRef{ID: ev.ID, Topic: ev.Topic, Partition: ev.Partition, Offset: ev.Offset},
		VisitID: visitID, Started: ev.Time,
	}
	if k.key[0] == 'p' {
		s.se.Profile = jsonx.Bytes(k.key[1:])
	}
	if ss != nil {
		s.se.ID = s.contentID(byte(t), k.key, ev.Time, ss.id, ss.seq)
	} else {
		s.se.ID = s.contentID(byte(t), k.key, ev.Time, nil, 0)
	}
	s.emitSystem(k, ev)
}

// emitClose emits visit-ended or session-closed for a at time at.
func (s *Sessionizer) emitClose(t SystemType, k *keyState, a *activity, session []byte, seq uint64, at int64) {
	s.stats.System[t]++
	if t == VisitEnded {
		s.stats.OpenVisits--
	} else {
		s.stats.OpenSessions--
	}
	if !s.enabled[t] {
		return
	}
	s.se = SystemEvent{
		Type: t, Time: at, Session: session, Source: a.Source, Cause: a.cause,
		Summary: &a.Summary,
	}
	if t == VisitEnded {
		s.se.VisitID = a.id[:]
	} else if k.visit != nil {
		s.se.VisitID = k.visit.id[:]
	}
	if k.key[0] == 'p' {
		s.se.Profile = jsonx.Bytes(k.key[1:])
	}
	if t == VisitEnded {
		s.se.ID = s.contentID(byte(t), k.key, a.StartedAt, nil, 0)
	} else {
		s.se.ID = s.contentID(byte(t), k.key, a.StartedAt, session, seq)
	}
	s.emitSystem(k, nil)
}

// emitSystem emits s.se; ev is the triggering input event, nil for timers.
func (s *Sessionizer) emitSystem(k *keyState, ev *Event) {
	s.o = Output{Kind: KindSystem, Key: jsonx.Bytes(k.key[1:]), System: &s.se, Event: ev, k: k}
	if s.se.Summary == nil {
		// An opening event: rules see the key's open visit and the triggering event's session
		// as they are when it is emitted (the triggering event not yet counted).
		if k.visit != nil {
			s.o.VisitID, s.o.Visit = k.visit.id[:], &k.visit.Summary
		}
		if ev != nil && len(ev.Session) > 0 {
			if ss := k.findSession(ev.Session); ss != nil {
				s.o.Session, s.o.SessionID = &ss.Summary, ss.id
			}
		}
	}
	s.out.Emit(&s.o)
}

// currentSession is the key's open session that was active last (the first opened of those
// active at the same time), nil when it has none: what a fired schedule sees as its session.
// It depends only on the sessions' summaries and order, which a snapshot keeps.
func (k *keyState) currentSession() *sessionState {
	var cur *sessionState
	for ss := k.sessions; ss != nil; ss = ss.next {
		if cur == nil || ss.LastActivity > cur.LastActivity {
			cur = ss
		}
	}
	return cur
}

// contentID derives an id from what an id names: a kind (a system-event type, or 'v' and 's'
// for visits and sessions), the state key, the start time of what it is about and, for
// sessions, the session id and the key's session number. Fields are length-prefixed, so no two
// different inputs hash the same bytes. The same input always gives the same ids.
func (s *Sessionizer) contentID(kind byte, key string, start int64, session []byte, seq uint64) (id [16]byte) {
	b := append(s.hashBuf[:0], kind)
	b = binary.BigEndian.AppendUint64(b, uint64(start))
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(session)))
	b = append(b, session...)
	b = binary.AppendUvarint(b, seq)
	s.hashBuf = b
	sum := sha256.Sum256(b)
	copy(id[:], sum[:16])
	return id
}
