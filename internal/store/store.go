package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// ErrDiskFull is returned by Put when the database has reached its disk
// limit. It is temporary: decided traces are deleted continuously.
var ErrDiskFull = &diskFullError{}

type diskFullError struct{}

func (*diskFullError) Error() string {
	return "store: disk limit reached (--disk-limit), try again later"
}

// RetryAfter is the delay a client should wait before retrying.
func (*diskFullError) RetryAfter() time.Duration { return time.Second }

// ErrNotFound is returned by Get for a key that is not stored.
var ErrNotFound = errors.New("store: key not found")

// ErrClosed is returned by calls after Close.
var ErrClosed = errors.New("store: closed")

// ErrTimeout is returned by Put when its commit took longer than
// WriteTimeout: the disk hangs. It is temporary.
var ErrTimeout = &timeoutError{}

type timeoutError struct{}

func (*timeoutError) Error() string { return "store: the disk did not commit in time (--disk-timeout)" }

// RetryAfter is the delay a client should wait before retrying.
func (*timeoutError) RetryAfter() time.Duration { return time.Second }

// Entry is one key-value pair to write. TTL, if set, makes the entry
// expire on its own (decisions: no delete needed).
type Entry struct {
	Key, Value []byte
	TTL        time.Duration
}

// Store is the sampler's database. See the package documentation.
type Store struct {
	cfg Config
	db  *badger.DB
	log *slog.Logger

	commits chan *commit  // to the committer; unbuffered hand-over, batched on its side
	reclaim chan struct{} // 1 slot: maintain asks the committer to flush memtables

	delMu   sync.Mutex
	pending [][]byte // keys to delete, copied; guarded by delMu

	diskBytes atomic.Int64 // measured every DiskCheckInterval
	stats     counters

	closeOnce sync.Once
	closeErr  error
	closing   chan struct{}
	wg        sync.WaitGroup

	// Get, Scan and DropPrefix hold a use (acquire/release) while in
	// Badger; Close marks the store closed and waits for the uses to end
	// before it closes the database, which must not be read after.
	useMu   sync.Mutex
	useDone sync.Cond // L: useMu; signalled when uses drops to 0
	uses    int
	closed  bool
}

type counters struct {
	puts, putBytes, syncs, commitGroups, deletes, gcRuns, gcRewrites, refusedFull, flushes, timeouts atomic.Int64
}

// commit is one Put call waiting for the committer.
type commit struct {
	entries []Entry // copies, in arena: a Put that timed out leaves them to the committer
	arena   []byte
	sync    bool
	done    chan error
}

// copyEntries copies entries into c, so the caller's slices are free
// when Put returns, even if the commit is still in progress.
func (c *commit) copyEntries(entries []Entry) {
	n := 0
	for _, e := range entries {
		n += len(e.Key) + len(e.Value)
	}
	if cap(c.arena) < n {
		c.arena = make([]byte, 0, n)
	}
	arena := c.arena[:0]
	c.entries = c.entries[:0]
	for _, e := range entries {
		k := len(arena)
		arena = append(arena, e.Key...)
		v := len(arena)
		arena = append(arena, e.Value...)
		c.entries = append(c.entries, Entry{Key: arena[k:v:v], Value: arena[v:len(arena):len(arena)], TTL: e.TTL})
	}
	c.arena = arena
}

var commitPool = sync.Pool{New: func() any { return &commit{done: make(chan error, 1)} }}

// Open opens (or creates) the database in cfg.Dir and starts its loops.
// log nil discards Badger's log output.
func Open(cfg Config, log *slog.Logger) (*Store, error) {
	cfg = cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Not WithLoggingLevel: it replaces the logger with one on stderr.
	opts := badger.DefaultOptions(cfg.Dir).
		WithLogger(badgerLogger{log}).
		WithSyncWrites(false). // the committer syncs once per group
		WithMemTableSize(cfg.MemTableSize).
		WithNumMemtables(cfg.NumMemtables).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithIndexCacheSize(cfg.IndexCacheSize).
		WithBlockCacheSize(0).
		WithCompression(options.None). // span bytes: CPU matters more than disk
		WithValueThreshold(cfg.ValueThreshold).
		WithValueLogFileSize(min(cfg.ValueLogFileSize, cfg.DiskLimit/8)). // GC never takes the file being written
		WithNumCompactors(2).
		WithDetectConflicts(false). // writes are blind, keys never contended
		WithMetricsEnabled(false).  // Badger's metrics are process-global expvars
		WithNumVersionsToKeep(1)
	if len(cfg.EncryptionKey) > 0 {
		opts = opts.WithEncryptionKey(cfg.EncryptionKey).WithBlockCacheSize(cfg.BlockCacheSize)
	}
	db, err := badger.Open(opts)
	if err != nil {
		if errors.Is(err, badger.ErrEncryptionKeyMismatch) {
			return nil, fmt.Errorf("data_dir %s was written with another --data-key-file (or none): %w", cfg.Dir, err)
		}
		return nil, fmt.Errorf("opening data_dir %s: %w", cfg.Dir, err)
	}
	s := &Store{cfg: cfg, db: db, log: log, commits: make(chan *commit), reclaim: make(chan struct{}, 1), closing: make(chan struct{})}
	s.useDone.L = &s.useMu
	s.measureDisk()
	s.wg.Add(2)
	go s.committer()
	go s.maintain()
	return s, nil
}

// Put writes entries and returns once they are committed; with sync, once
// they are on stable storage. It refuses with ErrDiskFull while the disk
// limit is reached, and with ErrTimeout past WriteTimeout. Put copies the
// entries: the caller may reuse them once it returns.
func (s *Store) Put(entries []Entry, sync bool) error {
	if len(entries) == 0 {
		return nil
	}
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	// Entries Badger would refuse are refused here: in the committer they
	// would fail every Put of the group.
	for i := range entries {
		if err := s.checkEntry(&entries[i]); err != nil {
			return err
		}
	}
	if s.Full() {
		s.stats.refusedFull.Add(1)
		return ErrDiskFull
	}
	c := commitPool.Get().(*commit)
	c.copyEntries(entries)
	c.sync = sync
	select {
	case s.commits <- c:
	case <-s.closing:
		return ErrClosed
	}
	t := time.NewTimer(s.cfg.WriteTimeout)
	defer t.Stop()
	select {
	case err := <-c.done:
		clear(c.entries)
		if cap(c.arena) > 8<<20 {
			c.arena = nil
		}
		commitPool.Put(c)
		return err
	case <-t.C:
		// The committer still holds c, which is left to it (and to the
		// garbage collector). The caller is told the entries were not
		// written; if they are later, that is harmless.
		s.stats.timeouts.Add(1)
		return ErrTimeout
	}
}

// maxKeySize is Badger's limit on the key length.
const maxKeySize = 65000

// checkEntry applies the checks Badger makes on each entry of a write.
func (s *Store) checkEntry(e *Entry) error {
	switch {
	case len(e.Key) == 0:
		return errors.New("store: empty key")
	case bytes.HasPrefix(e.Key, []byte("!badger!")):
		return fmt.Errorf("store: key %q: the prefix !badger! is reserved", e.Key[:min(len(e.Key), 40)])
	case len(e.Key) > maxKeySize:
		return fmt.Errorf("store: key of %d bytes, more than %d", len(e.Key), maxKeySize)
	case int64(len(e.Value)) > s.cfg.ValueLogFileSize:
		return fmt.Errorf("store: value of %d bytes, more than the value log file size %d", len(e.Value), s.cfg.ValueLogFileSize)
	}
	return nil
}

// acquire reports whether the database is open and, if it is, keeps it
// open until release.
func (s *Store) acquire() bool {
	s.useMu.Lock()
	defer s.useMu.Unlock()
	if s.closed {
		return false
	}
	s.uses++
	return true
}

func (s *Store) release() {
	s.useMu.Lock()
	s.uses--
	if s.uses == 0 {
		s.useDone.Broadcast()
	}
	s.useMu.Unlock()
}

// Write is Put for callers that keep keys and values apart (the buffer
// and the decision engine): values[i] goes under keys[i], all with the
// same ttl (0: none).
func (s *Store) Write(keys, values [][]byte, ttl time.Duration, sync bool) error {
	if len(keys) != len(values) {
		return fmt.Errorf("store: %d keys for %d values", len(keys), len(values))
	}
	ep, _ := entriesPool.Get().(*[]Entry)
	if ep == nil {
		ep = new([]Entry)
	}
	entries := (*ep)[:0]
	for i := range keys {
		entries = append(entries, Entry{Key: keys[i], Value: values[i], TTL: ttl})
	}
	err := s.Put(entries, sync)
	clear(entries)
	*ep = entries[:0]
	entriesPool.Put(ep)
	return err
}

var entriesPool sync.Pool // *[]Entry

// committer writes each group of waiting Put calls as one batch, with one
// fsync if any of them asked for it: under load, many requests share a
// sync, and a lone request pays for one sync only.
func (s *Store) committer() {
	defer s.wg.Done()
	// Deletes and flushes go through here too: Badger refuses writes while
	// a flush (DropPrefix) runs, so this is the store's only writer.
	t := time.NewTicker(s.cfg.DeleteInterval)
	defer t.Stop()
	var group []*commit
	for {
		select {
		case <-s.closing:
			s.flushDeletes() // deletes queued before Close are not lost
			return
		case <-t.C:
			s.flushDeletes()
			continue
		case <-s.reclaim:
			s.flushDeletes()
			s.flushMemtables()
			continue
		case c := <-s.commits:
			group = append(group[:0], c)
		}
	gather:
		for {
			select {
			case c := <-s.commits:
				group = append(group, c)
			default:
				break gather
			}
		}
		err := s.writeGroup(group)
		for i, c := range group {
			c.done <- err
			group[i] = nil
		}
	}
}

// flushKey is a reserved key (callers' keys start with a letter) that
// flushMemtables writes and drops.
var flushKey = []byte("\x00flush")

// flushMemtables writes the memtables out to tables and compacts them.
// Deletes take effect
// on disk only once compaction meets them in the tables; while the store
// is full and refusing writes, nothing else would flush them, and the
// store would stay full for good. Badger has no flush call, but DropPrefix
// flushes the memtables if the prefix exists, so a reserved key is written
// and dropped.
func (s *Store) flushMemtables() {
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(flushKey, nil) }); err != nil {
		s.log.Warn("store: flushing memtables", "err", err)
		return
	}
	if err := s.db.DropPrefix(flushKey); err != nil {
		s.log.Warn("store: flushing memtables", "err", err)
		return
	}
	// Compaction counts the deleted values for value-log GC only where
	// tombstones meet values; with few tables it may not run by itself.
	if err := s.db.Flatten(1); err != nil {
		s.log.Warn("store: compacting after a flush", "err", err)
	}
	s.stats.flushes.Add(1)
}

func (s *Store) writeGroup(group []*commit) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	sync := false
	var n, size int64
	for _, c := range group {
		sync = sync || c.sync
		for _, e := range c.entries {
			be := badger.NewEntry(e.Key, e.Value)
			if e.TTL > 0 {
				be = be.WithTTL(e.TTL)
			}
			if err := wb.SetEntry(be); err != nil {
				return fmt.Errorf("store: write: %w", err)
			}
			n++
			size += int64(len(e.Key) + len(e.Value))
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("store: write: %w", err)
	}
	if sync {
		if err := s.db.Sync(); err != nil {
			return fmt.Errorf("store: sync: %w", err)
		}
		s.stats.syncs.Add(1)
	}
	s.stats.commitGroups.Add(1)
	s.stats.puts.Add(n)
	s.stats.putBytes.Add(size)
	return nil
}

// Get appends the value stored under key to dst.
func (s *Store) Get(key, dst []byte) ([]byte, error) {
	if !s.acquire() {
		return dst, ErrClosed
	}
	defer s.release()
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			dst = append(dst, v...)
			return nil
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return dst, ErrNotFound
	}
	return dst, err
}

// Scan calls fn for every key with the prefix, in key order. The slices
// are valid only during the call. fn must not call Close (Close waits for
// the scan to end).
func (s *Store) Scan(prefix []byte, fn func(key, value []byte) error) error {
	if !s.acquire() {
		return ErrClosed
	}
	defer s.release()
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			err := item.Value(func(v []byte) error { return fn(item.Key(), v) })
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// DropPrefix deletes every key with the prefix, now.
func (s *Store) DropPrefix(prefix []byte) error {
	if !s.acquire() {
		return ErrClosed
	}
	defer s.release()
	return s.db.DropPrefix(prefix)
}

// Delete queues keys for deletion; the committer commits them within
// DeleteInterval. The keys are copied.
func (s *Store) Delete(keys ...[]byte) {
	if len(keys) == 0 {
		return
	}
	s.delMu.Lock()
	for _, k := range keys {
		s.pending = append(s.pending, bytes.Clone(k))
	}
	s.delMu.Unlock()
}

func (s *Store) flushDeletes() {
	s.delMu.Lock()
	keys := s.pending
	s.pending = nil
	s.delMu.Unlock()
	if len(keys) == 0 {
		return
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			s.requeueDeletes(keys, err)
			return
		}
	}
	if err := wb.Flush(); err != nil {
		s.requeueDeletes(keys, err)
		return
	}
	s.stats.deletes.Add(int64(len(keys)))
}

// requeueDeletes keeps deletes that failed for the next round: a key not
// deleted would hold disk space until the next restart.
func (s *Store) requeueDeletes(keys [][]byte, err error) {
	s.log.Warn("store: committing deletes, will retry", "keys", len(keys), "err", err)
	s.delMu.Lock()
	s.pending = append(keys, s.pending...)
	s.delMu.Unlock()
}

// Full reports whether the disk limit is reached, by the store's files
// and the others' (Config.OtherBytes).
func (s *Store) Full() bool { return s.diskBytes.Load()+s.otherBytes() >= s.cfg.DiskLimit }

func (s *Store) otherBytes() int64 {
	if s.cfg.OtherBytes == nil {
		return 0
	}
	return s.cfg.OtherBytes()
}

// OwnBytes returns the bytes the store's own files take, as last measured.
func (s *Store) OwnBytes() int64 { return s.diskBytes.Load() }

// maintain measures the disk use and runs value-log garbage collection.
func (s *Store) maintain() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.DiskCheckInterval)
	defer t.Stop()
	lastGC, lastFlush := time.Now(), time.Time{}
	var deletesAtFlush int64
	for {
		select {
		case <-s.closing:
			return
		case now := <-t.C:
			s.measureDisk()
			used := s.diskBytes.Load()
			if used > s.cfg.DiskLimit/4*3 && s.stats.deletes.Load() != deletesAtFlush && now.Sub(lastFlush) >= 5*s.cfg.DiskCheckInterval {
				// Nearly full, with deletes since the last flush: make them count.
				deletesAtFlush, lastFlush = s.stats.deletes.Load(), now
				select {
				case s.reclaim <- struct{}{}:
				default:
				}
			}
			if now.Sub(lastGC) >= s.cfg.GCInterval || used > s.cfg.DiskLimit/2 {
				s.collectGarbage()
				lastGC = now
			}
		}
	}
}

// collectGarbage rewrites value-log files that are at least half garbage,
// until none is left.
func (s *Store) collectGarbage() {
	s.stats.gcRuns.Add(1)
	for range 64 { // bounded: one file per round
		if err := s.db.RunValueLogGC(0.5); err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn("store: value log garbage collection", "err", err)
			}
			return
		}
		s.stats.gcRewrites.Add(1)
	}
}

// Close stops the loops, commits queued deletes, waits for the Get, Scan
// and DropPrefix calls in progress and closes the database. Calls after
// Close fail with ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.wg.Wait()
		s.useMu.Lock()
		s.closed = true
		for s.uses > 0 {
			s.useDone.Wait()
		}
		s.useMu.Unlock()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Stats is a point-in-time view of the store.
type Stats struct {
	DiskBytes, DiskLimit int64 // DiskBytes: the store's files and the others' (OtherBytes)
	Puts, PutBytes       int64 // entries written, and their key+value bytes
	Syncs, CommitGroups  int64 // fsyncs, and commits (each of one or more Put calls)
	Deletes              int64
	GCRuns, GCRewrites   int64 // collection rounds, and value-log files rewritten
	Flushes              int64 // memtables flushed to make deletes count (see flushMemtables)
	RefusedFull          int64 // Put calls refused for the disk limit
}

// Stats returns current figures.
func (s *Store) Stats() Stats {
	return Stats{
		DiskBytes: s.diskBytes.Load() + s.otherBytes(), DiskLimit: s.cfg.DiskLimit,
		Puts: s.stats.puts.Load(), PutBytes: s.stats.putBytes.Load(),
		Syncs: s.stats.syncs.Load(), CommitGroups: s.stats.commitGroups.Load(),
		Deletes: s.stats.deletes.Load(), GCRuns: s.stats.gcRuns.Load(), GCRewrites: s.stats.gcRewrites.Load(),
		Flushes:     s.stats.flushes.Load(),
		RefusedFull: s.stats.refusedFull.Load(),
	}
}

// badgerLogger sends Badger's log lines to slog. Badger's info and debug
// lines (flushes, compactions) go out at slog's Debug level.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.logf(slog.LevelError, f, a) }
func (l badgerLogger) Warningf(f string, a ...any) { l.logf(slog.LevelWarn, f, a) }
func (l badgerLogger) Infof(f string, a ...any)    { l.logf(slog.LevelDebug, f, a) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.logf(slog.LevelDebug, f, a) }

func (l badgerLogger) logf(level slog.Level, f string, a []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
	}
}
