package state

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dwellhq/dwell/operators"
	"github.com/dwellhq/dwell/operators/wire"
)

// Key layout. Every key of a partition starts with a one-byte table tag and the partition
// (big-endian), so that one range deletion per table resets a partition and one prefix scan
// reads it:
//
//	'f'                                  format version (uvarint)
//	'i'                                  instance id: 16 random bytes, made on first open
//	'a'                                  application id (ClaimApplication)
//	'k' partition key                     key record: deadlines + snapshot (AppendKeyRecord)
//	't' partition deadline kind key       empty: the timer index, in firing order
//	'p' partition                         partition snapshot (operators.AppendPartitionSnapshot)
//	'o' partition                         changelog offset the stored state reflects (uvarint+1)
//	'r' partition                         the last reset marker replayed (ResetMarker)
//	's' partition                         time of the last completed savepoint (Unix ms, uvarint+1)
//
// 'k' values are the changelog's values, and 'p' holds the partition record the changelog
// carries under PartitionRecordKey, so a Snapshot of 'k' and 'p' is what a compacted changelog
// of the state holds (a savepoint's data). 's' is local: a hint that keeps the savepoint
// interval across restarts, never in the changelog.
const (
	tagFormat    = 'f'
	tagInstance  = 'i'
	tagApp       = 'a'
	tagKey       = 'k'
	tagTimer     = 't'
	tagPartition = 'p'
	tagOffset    = 'o'
	tagReset     = 'r'
	tagSavepoint = 's'
)

// offsetValue is the value of an 'o' key: the changelog offset plus one, so that a stored 0
// reads as corrupt; parseOffset reads it back.
func offsetValue(changelogOffset int64) []byte {
	return binary.AppendUvarint(nil, uint64(changelogOffset)+1)
}

func parseOffset(v []byte) (changelogOffset int64, ok bool) {
	r := wire.NewReader(v)
	off := r.Uvarint()
	return int64(off - 1), r.Ok() && off != 0
}

// formatVersion is the layout above. A store written with another version is refused; the
// partition is then rebuilt from the changelog.
const formatVersion = 1

// ErrFormat says the data dir holds state in a layout this build does not read.
var ErrFormat = errors.New("state: the data dir holds state of another format version; remove it (state is rebuilt from the changelog) or run a matching dwell")

// Options configures a Store. Zero fields take the defaults given.
type Options struct {
	// Dir is the directory of the Pebble database. Required.
	Dir string
	// FS is the file system; nil means the operating system's. Tests use vfs.NewMem().
	FS vfs.FS
	// CacheBytes is the block cache size. Default 128 MiB.
	CacheBytes int64
	// MemTableBytes is the size of each memtable. Default 64 MiB: state is written in large
	// per-cycle batches, and larger memtables mean fewer, larger flushes into L0.
	MemTableBytes uint64
	// Logger receives Pebble's events. Default: discard.
	Logger *slog.Logger
	// DisableWAL writes without Pebble's write-ahead log: what was not flushed to tables is
	// lost in a crash. For stores that are worthless after one, such as dwell process's
	// temporary store of cold keys.
	DisableWAL bool
}

// EnsureDefaults fills zero fields and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.CacheBytes == 0 {
		o.CacheBytes = 128 << 20
	}
	if o.MemTableBytes == 0 {
		o.MemTableBytes = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate reports settings out of range.
func (o *Options) Validate() error {
	switch {
	case o.Dir == "":
		return errors.New("state: a data dir is required; pass --data-dir")
	case o.CacheBytes < 1<<20:
		return fmt.Errorf("state: cache must be at least 1 MiB, got %d bytes", o.CacheBytes)
	case o.MemTableBytes < 1<<20:
		return fmt.Errorf("state: memtable must be at least 1 MiB, got %d bytes", o.MemTableBytes)
	}
	return nil
}

// Store is dwell's local, rebuildable copy of partition state in Pebble. Kafka (the changelog)
// is the source of truth: batches are written without fsync, and the changelog offset stored in
// the same batch says how much of the changelog the local state reflects, so after a crash the
// partition replays the changelog from there. A Store is safe for concurrent use; each partition
// is written by its one owning worker.
type Store struct {
	db *pebble.DB
	// mu guards closing against Health, which metrics scrapes call from other goroutines,
	// possibly after the processor has closed.
	mu     sync.RWMutex
	closed bool
	// sync is how writes that must survive a crash are made: pebble.Sync, or pebble.NoSync
	// without a WAL (Pebble refuses to sync what it does not log).
	sync *pebble.WriteOptions
	// lock holds the data dir's lock file (lockDir) until Close; nil on an in-memory FS.
	lock *os.File
}

func closeLock(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}

// Open opens (or creates) the store in o.Dir.
func Open(o Options) (*Store, error) {
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(o.CacheBytes)
	defer cache.Unref()
	opts := &pebble.Options{
		FS:           o.FS,
		Cache:        cache,
		MemTableSize: o.MemTableBytes,
		// Write-heavy tuning: let L0 take more files before compacting or stalling, since each
		// cycle's batch lands there, and keep two memtables queued before writes stop.
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		MemTableStopWritesThreshold: 4,
		LBaseMaxBytes:               256 << 20,
		Logger:                      slogLogger{o.Logger.With("component", "pebble")},
		FormatMajorVersion:          pebble.FormatNewest,
		DisableWAL:                  o.DisableWAL,
	}
	for i := range opts.Levels {
		// Cold keys are point reads: a bloom filter skips tables without the key.
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	opts.EnsureDefaults()
	var lock *os.File
	if o.FS == nil || o.FS == vfs.Default {
		var err error
		if lock, err = lockDir(o.Dir); err != nil {
			return nil, err
		}
	}
	db, err := pebble.Open(o.Dir, opts)
	if err != nil {
		closeLock(lock)
		return nil, fmt.Errorf("state: opening %s: %w", o.Dir, err)
	}
	s := &Store{db: db, sync: pebble.Sync, lock: lock}
	if o.DisableWAL {
		s.sync = pebble.NoSync
	}
	if err := s.checkFormat(); err != nil {
		err = errors.Join(err, db.Close())
		closeLock(lock)
		return nil, err
	}
	return s, nil
}

func (s *Store) checkFormat() error {
	v, closer, err := s.db.Get([]byte{tagFormat})
	if errors.Is(err, pebble.ErrNotFound) {
		return s.db.Set([]byte{tagFormat}, binary.AppendUvarint(nil, formatVersion), s.sync)
	}
	if err != nil {
		return fmt.Errorf("state: reading format version: %w", err)
	}
	defer closer.Close()
	r := wire.NewReader(v)
	got := r.Uvarint()
	if !r.Ok() || got != formatVersion {
		return fmt.Errorf("%w (found %d, want %d)", ErrFormat, got, formatVersion)
	}
	return nil
}

// InstanceID is this store's identity: random bytes made the first time the directory is used
// and kept for its life. The live processor derives its transactional id from it, so a process
// restarted on the same data dir fences its predecessor at once (aborting the transaction it
// left open) instead of waiting for the broker's transaction timeout, as Kafka Streams does with
// the process id in its state directory.
func (s *Store) InstanceID() (string, error) {
	v, closer, err := s.db.Get([]byte{tagInstance})
	if errors.Is(err, pebble.ErrNotFound) {
		id := make([]byte, 16)
		_, _ = rand.Read(id)
		if err := s.db.Set([]byte{tagInstance}, id, s.sync); err != nil {
			return "", fmt.Errorf("state: writing instance id: %w", err)
		}
		return hex.EncodeToString(id), nil
	}
	if err != nil {
		return "", fmt.Errorf("state: reading instance id: %w", err)
	}
	defer closer.Close()
	return hex.EncodeToString(v), nil
}

// ClaimApplication records that the store holds the state of application app, or refuses
// when it holds another's: partition p of two applications is not the same state. A store
// written before application ids existed is claimed by the first one to open it.
func (s *Store) ClaimApplication(app string, dir string) error {
	v, closer, err := s.db.Get([]byte{tagApp})
	if errors.Is(err, pebble.ErrNotFound) {
		if err := s.db.Set([]byte{tagApp}, []byte(app), s.sync); err != nil {
			return fmt.Errorf("state: writing application id: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("state: reading application id: %w", err)
	}
	defer closer.Close()
	if string(v) != app {
		return fmt.Errorf("state: the data dir %s holds the state of application %q, not %q; pass another --data-dir, or --application-id %q",
			dir, v, app, v)
	}
	return nil
}

// Close closes the store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.db.Close()
	closeLock(s.lock)
	if err != nil {
		return fmt.Errorf("state: closing: %w", err)
	}
	return nil
}

func prefix(tag byte, partition int32) []byte {
	return binary.BigEndian.AppendUint32([]byte{tag}, uint32(partition))
}

func keyKey(partition int32, key string) []byte {
	return append(prefix(tagKey, partition), key...)
}

func timerKey(partition int32, deadline int64, kind operators.TimerKind, key string) []byte {
	return operators.AppendTimerKey([]byte{tagTimer}, partition, deadline, kind, []byte(key))
}

// Batch collects one processing cycle's writes for one partition; Commit applies them
// atomically. It is used by one goroutine.
type Batch struct {
	b         *pebble.Batch
	partition int32
	rec       []byte
}

// NewBatch starts a batch of writes to partition.
func (s *Store) NewBatch(partition int32) *Batch {
	return &Batch{b: s.db.NewBatch(), partition: partition}
}

// PutKey stores a changed key's snapshot and moves its timer index entries from c.Persisted
// to c.Deadlines. A deleted key (c.Deleted) is removed with its index entries; snapshot is
// then ignored.
func (b *Batch) PutKey(c operators.Change, snapshot []byte) error {
	if c.Deleted {
		if err := b.b.Delete(keyKey(b.partition, c.Key), nil); err != nil {
			return fmt.Errorf("state: partition %d: deleting key %q: %w", b.partition, c.Key, err)
		}
		c.Deadlines = [len(c.Deadlines)]int64{}
	} else {
		b.rec = AppendKeyRecord(b.rec[:0], c.Deadlines, snapshot)
		if err := b.b.Set(keyKey(b.partition, c.Key), b.rec, nil); err != nil {
			return fmt.Errorf("state: partition %d: writing key %q: %w", b.partition, c.Key, err)
		}
	}
	return moveTimers(b.b, b.partition, c.Key, c.Persisted, c.Deadlines)
}

// moveTimers replaces a key's timer index entries old with cur.
func moveTimers(b *pebble.Batch, partition int32, key string, old, cur [numTimers]int64) error {
	for kind := range cur {
		if old[kind] == cur[kind] {
			continue
		}
		k := operators.TimerKind(kind)
		if old[kind] != 0 {
			if err := b.Delete(timerKey(partition, old[kind], k, key), nil); err != nil {
				return fmt.Errorf("state: partition %d: unindexing a timer of key %q: %w", partition, key, err)
			}
		}
		if cur[kind] != 0 {
			if err := b.Set(timerKey(partition, cur[kind], k, key), nil, nil); err != nil {
				return fmt.Errorf("state: partition %d: indexing a timer of key %q: %w", partition, key, err)
			}
		}
	}
	return nil
}

// PutPartition stores the partition snapshot and the changelog offset (the offset of the next
// changelog record, i.e. one past the last one this state includes).
func (b *Batch) PutPartition(snapshot []byte, changelogOffset int64) error {
	if changelogOffset < 0 {
		return fmt.Errorf("state: negative changelog offset %d", changelogOffset)
	}
	if err := b.b.Set(prefix(tagPartition, b.partition), snapshot, nil); err != nil {
		return fmt.Errorf("state: partition %d: writing the partition snapshot: %w", b.partition, err)
	}
	if err := b.b.Set(prefix(tagOffset, b.partition), offsetValue(changelogOffset), nil); err != nil {
		return fmt.Errorf("state: partition %d: writing the changelog offset: %w", b.partition, err)
	}
	return nil
}

// Len is the size of the batch in bytes.
func (b *Batch) Len() int { return b.b.Len() }

// Commit applies the batch. Without fsync: the changelog is the durable copy.
func (b *Batch) Commit() error {
	defer b.b.Close()
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: committing partition %d: %w", b.partition, err)
	}
	return nil
}

// Discard drops the batch (the cycle's transaction aborted).
func (b *Batch) Discard() { b.b.Close() }

// Partition is a partition's stored state, as Load returns it.
type Partition struct {
	// Snapshot is the partition snapshot, nil if none was stored.
	Snapshot []byte
	// ChangelogOffset is where replaying the changelog must start; -1 if nothing is stored.
	ChangelogOffset int64
	// Keys is the number of key snapshots passed to Load's callback.
	Keys int
	// Reset is the last reset marker the state was rebuilt after (ResetRecordKey), nil if none.
	Reset []byte
}

// Load reads a partition: fn gets every key snapshot (valid only during the call), and the
// result holds the partition snapshot and the changelog offset to replay from.
func (s *Store) Load(partition int32, fn func(snapshot []byte) error) (Partition, error) {
	p := Partition{ChangelogOffset: -1}
	if v, closer, err := s.db.Get(prefix(tagOffset, partition)); err == nil {
		off, ok := parseOffset(v)
		closer.Close()
		if !ok {
			return p, fmt.Errorf("state: partition %d: corrupt changelog offset", partition)
		}
		p.ChangelogOffset = off
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return p, fmt.Errorf("state: partition %d: %w", partition, err)
	}
	for _, f := range []struct {
		tag byte
		dst *[]byte
	}{{tagPartition, &p.Snapshot}, {tagReset, &p.Reset}} {
		if v, closer, err := s.db.Get(prefix(f.tag, partition)); err == nil {
			*f.dst = bytes.Clone(v)
			closer.Close()
		} else if !errors.Is(err, pebble.ErrNotFound) {
			return p, fmt.Errorf("state: partition %d: %w", partition, err)
		}
	}
	err := s.scan(prefix(tagKey, partition), func(k, v []byte) error {
		_, snap, err := ParseKeyRecord(v)
		if err != nil {
			return fmt.Errorf("state: partition %d key %q: %w", partition, k[5:], err)
		}
		p.Keys++
		return fn(snap)
	})
	return p, err
}

// Get reads one key's snapshot (a cold key). It returns nil, false when the key is not stored.
func (s *Store) Get(partition int32, key string) ([]byte, bool, error) {
	v, closer, err := s.db.Get(keyKey(partition, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: partition %d: %w", partition, err)
	}
	defer closer.Close()
	_, snap, err := ParseKeyRecord(v)
	if err != nil {
		return nil, false, fmt.Errorf("state: partition %d key %q: %w", partition, key, err)
	}
	return bytes.Clone(snap), true, nil
}

// Cold returns partition's keys as an operators.ColdStore, for a sessionizer that keeps only
// some keys in memory.
func (s *Store) Cold(partition int32) operators.ColdStore { return coldStore{s, partition} }

type coldStore struct {
	s         *Store
	partition int32
}

func (c coldStore) LoadKey(key string) ([]byte, bool, error) { return c.s.Get(c.partition, key) }

var _ operators.ColdStore = coldStore{}

// KeysAfter calls fn, in byte order, for at most n of partition's stored keys after after
// (all from the first when after is empty); key is valid only during the call. It is how a
// for_each job goes over a partition's keys a few at a time (pipeline/jobs.go).
func (s *Store) KeysAfter(partition int32, after string, n int, fn func(key []byte)) error {
	lower := keyKey(partition, after)
	if after != "" {
		lower = append(lower, 0) // the first key after after
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefix(tagKey, partition+1)})
	if err != nil {
		return fmt.Errorf("state: partition %d: listing keys: %w", partition, err)
	}
	skip := len(prefix(tagKey, partition))
	for ok := it.First(); ok && n > 0; ok = it.Next() {
		fn(it.Key()[skip:])
		n--
	}
	return it.Close()
}

// DueTimers calls fn, in firing order (deadline, kind, key), for every indexed timer of
// partition with a deadline before before; key is valid only during the call. The pipeline
// uses it to load cold keys whose timers are due.
func (s *Store) DueTimers(partition int32, before int64, fn func(deadline int64, kind operators.TimerKind, key []byte) error) error {
	lower := prefix(tagTimer, partition)
	upper := timerKey(partition, max(before, 0), 0, "")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("state: partition %d: reading due timers: %w", partition, err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		_, d, kind, key, err := operators.ParseTimerKey(it.Key()[1:])
		if err != nil {
			return fmt.Errorf("state: partition %d: %w", partition, err)
		}
		if err := fn(d, kind, key); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("state: partition %d: reading due timers: %w", partition, err)
	}
	return nil
}

// Reset deletes everything stored for partition (before reprocessing it from a rewound offset,
// or when its state must be rebuilt from the changelog).
func (s *Store) Reset(partition int32) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, tag := range []byte{tagKey, tagTimer, tagPartition, tagOffset, tagReset, tagSavepoint} {
		start := prefix(tag, partition)
		if err := b.DeleteRange(start, prefixEnd(start), nil); err != nil {
			return fmt.Errorf("state: resetting partition %d: %w", partition, err)
		}
	}
	if err := b.Commit(s.sync); err != nil {
		return fmt.Errorf("state: resetting partition %d: %w", partition, err)
	}
	return nil
}

// prefixEnd is the first key after every key that starts with p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i]++; end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// scan calls fn for every stored key that starts with p, in order; fn's error is returned as is.
func (s *Store) scan(p []byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return fmt.Errorf("state: scanning %q: %w", p, err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("state: reading %q: %w", it.Key(), err)
		}
		if err := fn(it.Key(), v); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("state: scanning %q: %w", p, err)
	}
	return nil
}

// Health is what an operator watches: compaction debt, L0 pressure and cache effectiveness.
type Health struct {
	CompactionDebtBytes uint64
	L0Files             int64
	L0Sublevels         int32
	CacheHits           int64
	CacheMisses         int64
}

// Health reads Pebble's metrics; a closed store reports zeros.
func (s *Store) Health() Health {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return Health{}
	}
	m := s.db.Metrics()
	return Health{
		CompactionDebtBytes: m.Compact.EstimatedDebt,
		L0Files:             m.Levels[0].TablesCount,
		L0Sublevels:         m.Levels[0].Sublevels,
		CacheHits:           m.BlockCache.Hits,
		CacheMisses:         m.BlockCache.Misses,
	}
}

// slogLogger adapts slog to Pebble's Logger. Pebble's INFO lines (format upgrades, WAL
// recovery, compaction notes) are its own business: they go out at debug level, so that
// --log-level info shows dwell's lines only; its errors stay errors.
type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Infof(format string, args ...any) {
	if l.l.Enabled(context.Background(), slog.LevelDebug) {
		l.l.Debug(fmt.Sprintf(format, args...))
	}
}
func (l slogLogger) Errorf(format string, args ...any) { l.l.Error(fmt.Sprintf(format, args...)) }
func (l slogLogger) Fatalf(format string, args ...any) {
	l.l.Error(fmt.Sprintf(format, args...))
	panic(fmt.Sprintf(format, args...))
}
