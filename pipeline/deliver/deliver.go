package deliver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dwellhq/dwell/pipeline/deadletter"
)

// Deliverer consumes one queue topic and delivers its records. New, then Run once, then Close.
type Deliverer struct {
	cfg Config
	cl  *kgo.Client
	qm  *queueMetrics

	// hard is cancelled when the drain time is up or at Close: deliveries in flight stop.
	hard       context.Context
	hardCancel context.CancelFunc

	work chan item

	ready atomic.Bool // the group assigned partitions at least once

	fatalOnce sync.Once
	fatal     chan error // a dead letter could not be written

	mu struct {
		sync.Mutex
		parts    map[int32]*partition
		stopping bool
	}
	closeOnce sync.Once
}

// partition is one assigned partition's delivery state.
type partition struct {
	id     int32
	ctx    context.Context // ends when the partition is revoked and its drain time is up
	cancel context.CancelFunc
	wg     sync.WaitGroup // items handed to workers and not finished

	// Guarded by Deliverer.mu.
	t         track
	committed int64 // last committed offset, -1 for none
	hwm       int64 // high watermark at the last fetch, -1 unknown
	paused    bool
	revoked   bool
}

type item struct {
	r *kgo.Record
	p *partition
}

// New connects a deliverer; it consumes nothing until Run.
func New(cfg Config) (*Deliverer, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Deliverer{cfg: cfg, qm: cfg.Metrics.forQueue(cfg.Queue), work: make(chan item), fatal: make(chan error, 1)}
	d.mu.parts = map[int32]*partition{}
	d.hard, d.hardCancel = context.WithCancel(context.Background())
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers come back as records so that they count as handled: without
		// them the handled offsets stop one short of each commit marker, and the lag stays
		// at 1 per partition after everything is delivered.
		kgo.KeepControlRecords(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		// A resumed partition joins the next fetch request only after the one in flight
		// returns: keep the long poll short so a healed partition restarts within a second.
		kgo.FetchMaxWait(time.Second),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(d.onAssigned),
		kgo.OnPartitionsRevoked(d.onRevoked),
		kgo.OnPartitionsLost(d.onLost),
		kgo.RequiredAcks(kgo.AllISRAcks()), // dead letters: idempotent, all replicas
		// A dead letter that cannot be written within this stops the run (uncommitted) rather
		// than holding its partition back forever.
		kgo.RecordDeliveryTimeout(2 * time.Minute),
	}, cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	d.cl = cl
	return d, nil
}

// CheckTopics returns an error naming the queue or dead-letter topic if it does not exist.
func (d *Deliverer) CheckTopics(ctx context.Context) error {
	details, err := kadm.NewClient(d.cl).ListTopics(ctx, d.cfg.Topic, d.cfg.DeadTopic)
	if err != nil {
		return fmt.Errorf("deliver: listing topics: %w", err)
	}
	var missing []string
	for _, t := range []string{d.cfg.Topic, d.cfg.DeadTopic} {
		if td, ok := details[t]; !ok || td.Err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("deliver: topics %v do not exist; create them (the queue topic is dwell.queue.NAME unless --topic says otherwise)", missing)
	}
	return nil
}

// Close stops deliveries still in flight and leaves the group. It is idempotent.
func (d *Deliverer) Close() error {
	d.closeOnce.Do(func() {
		d.hardCancel()
		d.cl.Close()
		d.cfg.HTTPClient.CloseIdleConnections()
	})
	return nil
}

// Run delivers until ctx ends, then drains and commits (see the package documentation). It
// returns nil after a clean stop, or the error that stopped it.
func (d *Deliverer) Run(ctx context.Context) error {
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	var workers sync.WaitGroup
	for range d.cfg.Concurrency {
		workers.Go(d.worker)
	}
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		d.poll(pollCtx)
	}()
	tick := time.NewTicker(d.cfg.CommitInterval)
	defer tick.Stop()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case runErr = <-d.fatal:
			break loop
		case <-tick.C:
			d.commit(ctx, nil)
		}
	}
	stopPoll()
	<-pollDone // the poll loop is the only sender on work
	d.mu.Lock()
	d.mu.stopping = true
	parts := make([]*partition, 0, len(d.mu.parts))
	for _, p := range d.mu.parts {
		parts = append(parts, p)
	}
	d.mu.Unlock()
	close(d.work)
	d.drain(parts)
	workers.Wait()
	if runErr == nil {
		select {
		case runErr = <-d.fatal:
		default:
		}
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.commit(cctx, nil)
	d.mu.Lock()
	for id := range d.mu.parts {
		d.qm.dropLag(id)
	}
	clear(d.mu.parts)
	d.mu.Unlock()
	return runErr
}

// drain waits for the partitions' deliveries in flight, for up to DrainTimeout, then cancels
// what is left and waits for it to stop.
func (d *Deliverer) drain(parts []*partition) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, p := range parts {
			p.wg.Wait()
		}
	}()
	t := time.NewTimer(d.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
		d.cfg.Logger.Warn("deliver: drain time is up; cancelling deliveries in flight (they will be redelivered)",
			"drain_timeout", d.cfg.DrainTimeout)
	}
	for _, p := range parts {
		p.cancel()
	}
	<-done
}

// poll fetches records and hands them to the workers until ctx ends.
func (d *Deliverer) poll(ctx context.Context) {
	for {
		fetches := d.cl.PollRecords(ctx, d.cfg.Concurrency)
		if ctx.Err() != nil {
			return
		}
		if fetches.IsClientClosed() {
			return
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, context.DeadlineExceeded) {
				continue
			}
			d.cfg.Logger.Warn("deliver: fetch error", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
		}
		var pause []int32
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			d.mu.Lock()
			p := d.mu.parts[fp.Partition]
			if p != nil {
				p.hwm = fp.HighWatermark
			}
			d.mu.Unlock()
			for _, r := range fp.Records {
				if r.Attrs.IsControl() {
					d.skipControl(p, r)
					continue
				}
				if !d.handOut(p, r) {
					continue
				}
				select {
				case d.work <- item{r: r, p: p}:
				case <-ctx.Done():
					p.wg.Done() // left pending: not committed, redelivered
				case <-p.ctx.Done(): // revoked while every worker is busy
					p.wg.Done()
				}
			}
			if p == nil {
				return
			}
			d.mu.Lock()
			if low := p.t.lowest(); low >= 0 && p.hwm >= 0 && !p.revoked {
				d.qm.setLag(p.id, max(0, p.hwm-low))
			}
			if !p.revoked && !p.paused && len(p.t.pending) >= d.cfg.MaxPending {
				p.paused = true
				pause = append(pause, p.id)
			}
			d.mu.Unlock()
		})
		if pause != nil {
			d.cl.PauseFetchPartitions(map[string][]int32{d.cfg.Topic: pause})
		}
	}
}

// skipControl marks a transaction marker handled: nothing to deliver, but the committed
// offset and the lag move past it.
func (d *Deliverer) skipControl(p *partition, r *kgo.Record) {
	if p == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !p.revoked && !d.mu.stopping && p.t.add(r.Offset) {
		p.t.done(r.Offset)
	}
}

// handOut tracks r for p; false when r is not to be delivered (p gone or r already tracked).
func (d *Deliverer) handOut(p *partition, r *kgo.Record) bool {
	if p == nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if p.revoked || d.mu.stopping || !p.t.add(r.Offset) {
		return false
	}
	p.wg.Add(1)
	return true
}

func (d *Deliverer) worker() {
	for it := range d.work {
		d.handle(it)
	}
}

// handle delivers one record and marks it handled unless it was aborted.
func (d *Deliverer) handle(it item) {
	p, r := it.p, it.r
	defer p.wg.Done()
	d.mu.Lock()
	skip := p.revoked || d.mu.stopping
	d.mu.Unlock()
	if skip { // fetched but not started: the next owner delivers it
		return
	}
	if d.qm != nil {
		d.qm.inFlight.Inc()
		defer d.qm.inFlight.Dec()
	}
	o := d.deliver(p.ctx, r)
	switch {
	case o.aborted:
		return
	case o.delivered:
		if d.qm != nil {
			d.qm.delivered.Inc()
			if !r.Timestamp.IsZero() {
				d.qm.latency.Observe(max(0, d.cfg.Now().Sub(r.Timestamp).Seconds()))
			}
		}
	default:
		if err := d.deadLetter(p.ctx, r, o.reason, o.detail); err != nil {
			if p.ctx.Err() == nil {
				d.fatalOnce.Do(func() { d.fatal <- err })
			}
			return
		}
		d.qm.fail(o.reason)
		d.cfg.Logger.Warn("deliver: dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
			"reason", o.reason, "detail", o.detail)
	}
	d.mu.Lock()
	p.t.done(r.Offset)
	resume := p.paused && !p.revoked && len(p.t.pending) < max(1, d.cfg.MaxPending/2)
	if resume {
		p.paused = false
	}
	d.mu.Unlock()
	if resume {
		d.cl.ResumeFetchPartitions(map[string][]int32{d.cfg.Topic: {p.id}})
	}
}

// deadLetter writes r to the dead-letter topic with the original key, value and headers.
func (d *Deliverer) deadLetter(ctx context.Context, r *kgo.Record, reason, detail string) error {
	// A record dead-lettered before has its dwell headers replaced by ours.
	h := deadletter.Rewrap(r.Headers, deadletter.Source{Reason: reason, Detail: detail,
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset})
	dl := &kgo.Record{Topic: d.cfg.DeadTopic, Key: r.Key, Value: r.Value, Headers: h}
	if err := d.cl.ProduceSync(ctx, dl).FirstErr(); err != nil {
		return fmt.Errorf("deliver: writing a dead letter to %s: %w", d.cfg.DeadTopic, err)
	}
	return nil
}

// commit commits the handled offsets of the given partitions (nil: all) and updates the lag.
func (d *Deliverer) commit(ctx context.Context, only []int32) {
	offs := map[int32]kgo.EpochOffset{}
	d.mu.Lock()
	for id, p := range d.mu.parts {
		if only != nil && !containsPart(only, id) {
			continue
		}
		if low := p.t.lowest(); low >= 0 && p.hwm >= 0 {
			d.qm.setLag(id, max(0, p.hwm-low))
		}
		if p.t.next > p.committed {
			offs[id] = kgo.EpochOffset{Epoch: -1, Offset: p.t.next}
		}
	}
	d.mu.Unlock()
	if len(offs) == 0 {
		return
	}
	ok := map[int32]bool{}
	var cerr error
	d.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{d.cfg.Topic: offs},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				cerr = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
						cerr = fmt.Errorf("partition %d: %w", p.Partition, err)
						continue
					}
					ok[p.Partition] = true
				}
			}
		})
	if cerr != nil && ctx.Err() == nil {
		d.cfg.Logger.Warn("deliver: committing offsets", "topic", d.cfg.Topic, "err", cerr)
	}
	d.mu.Lock()
	for id, o := range offs {
		if p := d.mu.parts[id]; p != nil && ok[id] && o.Offset > p.committed {
			p.committed = o.Offset
		}
	}
	d.mu.Unlock()
}

func containsPart(ps []int32, id int32) bool {
	for _, p := range ps {
		if p == id {
			return true
		}
	}
	return false
}

// Ready reports whether the deliverer has joined its group (it may own no partition: a group
// can have more members than the topic has partitions).
func (d *Deliverer) Ready() bool { return d.ready.Load() }

func (d *Deliverer) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	d.ready.Store(true)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range assigned[d.cfg.Topic] {
		ctx, cancel := context.WithCancel(d.hard)
		d.mu.parts[id] = &partition{id: id, ctx: ctx, cancel: cancel, t: newTrack(), committed: -1, hwm: -1}
	}
	d.cfg.Logger.Info("deliver: partitions assigned", "topic", d.cfg.Topic, "partitions", assigned[d.cfg.Topic])
}

// onRevoked drains the revoked partitions' deliveries (bounded by DrainTimeout), commits what
// they handled and forgets them.
func (d *Deliverer) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	ids := revoked[d.cfg.Topic]
	parts := d.detach(ids)
	if len(parts) == 0 {
		return
	}
	d.drain(parts)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d.commit(cctx, ids)
	d.forget(parts)
	d.cfg.Logger.Info("deliver: partitions revoked", "topic", d.cfg.Topic, "partitions", ids)
}

// onLost forgets partitions that another member may already own: nothing can be committed.
func (d *Deliverer) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	parts := d.detach(lost[d.cfg.Topic])
	for _, p := range parts {
		p.cancel()
	}
	for _, p := range parts {
		p.wg.Wait()
	}
	d.forget(parts)
	d.cfg.Logger.Warn("deliver: partitions lost; their unfinished deliveries will be redelivered", "partitions", lost[d.cfg.Topic])
}

// detach marks partitions revoked so that nothing new starts on them.
func (d *Deliverer) detach(ids []int32) []*partition {
	d.mu.Lock()
	defer d.mu.Unlock()
	var parts []*partition
	for _, id := range ids {
		if p := d.mu.parts[id]; p != nil && !p.revoked {
			p.revoked = true
			parts = append(parts, p)
		}
	}
	return parts
}

func (d *Deliverer) forget(parts []*partition) {
	var paused []int32
	d.mu.Lock()
	for _, p := range parts {
		p.cancel()
		if p.paused {
			paused = append(paused, p.id)
		}
		if d.mu.parts[p.id] == p {
			delete(d.mu.parts, p.id)
			d.qm.dropLag(p.id)
		}
	}
	d.mu.Unlock()
	if len(paused) > 0 { // a pause outlives the assignment in the client: lift it for the next one
		d.cl.ResumeFetchPartitions(map[string][]int32{d.cfg.Topic: paused})
	}
}
