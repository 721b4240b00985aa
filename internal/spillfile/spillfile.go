package spillfile

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors. Those with a RetryAfter method are temporary.
var (
	// ErrFull: the files and OtherBytes have reached DiskLimit, or the
	// disk has no space. Deleted values free it.
	ErrFull = &retryable{"spillfile: the spill is full (disk limit reached, or no space on the disk); deleted values free it", time.Second}
	// ErrNotFound: Get of a key that is not stored.
	ErrNotFound = errors.New("spillfile: key not found")
	// ErrClosed: a call after Close.
	ErrClosed = errors.New("spillfile: closed")
)

type retryable struct {
	msg   string
	after time.Duration
}

func (e *retryable) Error() string { return e.msg }

// RetryAfter is the delay a client should wait before retrying.
func (e *retryable) RetryAfter() time.Duration { return e.after }

// Store keeps spilled values in plain files. See the package documentation.
type Store struct {
	cfg Config
	log *slog.Logger

	// writeMu serialises appends (Write, the compactor's moves) and is held
	// across their write syscalls. Taken before mu.
	writeMu sync.Mutex
	head    *file  // where appends go; nil: the next one creates a file
	nextID  uint32 // of the next file
	wbuf    []byte // records on their way to the head, writeBufSize
	locs    []loc  // where appendRecords put each value
	failing bool   // the last append failed: its successors' failures are not logged

	// mu guards the index, the file set and the files' accounting. It is
	// never held across I/O.
	mu    sync.Mutex
	idx   index
	files map[uint32]*file // open, not dropped; the head among them
	live  int64            // bytes of the records the index points at

	own    atomic.Int64 // bytes of the files
	closed atomic.Bool  // set holding writeMu and mu
	stats  counters

	// Tests' hooks (export_test.go): in Get between the lookup and the
	// read; in compaction between choosing the records and moving them.
	testHookRead, testHookMove func()

	// The compactor's own.
	cbuf  []byte
	ckeys [][]byte
	cvals [][]byte
	colds []loc
	cands []*file

	closeOnce sync.Once
	closeErr  error
	closing   chan struct{}
	done      chan struct{} // closed when the compactor has returned
}

type counters struct {
	writes, writeBytes, reads, readBytes, deletes, compactions, compactedBytes, refusedFull, writeErrors atomic.Int64
}

// Open removes the spill files in cfg.Dir (an earlier run's: spilled bytes
// are not a recovery source), creating the directory if need be, and
// starts the compactor. A nil log discards.
func Open(cfg Config, log *slog.Logger) (*Store, error) {
	cfg = cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spillfile: %w", err)
	}
	s := &Store{
		cfg:     cfg,
		log:     log,
		wbuf:    make([]byte, 0, writeBufSize),
		idx:     newIndex(),
		files:   make(map[uint32]*file),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if err := s.clearDir(); err != nil {
		return nil, err
	}
	go s.compactLoop()
	return s, nil
}

// Write stores values[i] under keys[i], replacing what a key held (its old
// bytes become garbage), and returns once the bytes are written to the
// files (not synced). It refuses with ErrFull once DiskLimit is reached or
// the disk has no space; one Write may pass the limit. A failed Write
// leaves what its keys held before. It does not retain the slices.
//
// ttl and sync are ignored: spilled bytes are cleared at every start, so
// syncing them would protect nothing, and the buffer deletes every value it
// wrote, so none needs to expire.
func (s *Store) Write(keys, values [][]byte, ttl time.Duration, sync bool) error {
	if len(keys) != len(values) {
		return fmt.Errorf("spillfile: Write of %d keys and %d values", len(keys), len(values))
	}
	var size int64
	for i, k := range keys {
		if len(k) > maxKeyLen {
			return fmt.Errorf("spillfile: a key of %d bytes, over the %d-byte limit", len(k), maxKeyLen)
		}
		if int64(len(values[i])) > maxValueLen {
			return fmt.Errorf("spillfile: a value of %d bytes, over the %d-byte limit", len(values[i]), int64(maxValueLen))
		}
		size += int64(len(values[i]))
	}
	s.writeMu.Lock()
	dead, err := s.writeLocked(keys, values)
	s.writeMu.Unlock()
	s.removeFiles(dead)
	if err == nil {
		s.stats.writes.Add(int64(len(keys)))
		s.stats.writeBytes.Add(size)
	}
	return err
}

// writeLocked appends the records, then points the index at them. It
// returns the files for the caller to remove (writeMu held).
func (s *Store) writeLocked(keys, values [][]byte) ([]*file, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if len(keys) == 0 {
		return nil, nil
	}
	if s.Full() {
		s.stats.refusedFull.Add(1)
		return nil, ErrFull
	}
	f, err := s.appendRecords(keys, values)
	if err != nil {
		return s.appendFailed(f, err)
	}
	s.appendSucceeded()
	var dead []*file
	s.mu.Lock()
	f.size = f.end
	for i, k := range keys {
		l := s.locs[i]
		n := recordLen(len(k), l.n)
		f.live += n
		s.live += n
		if old, had := s.idx.set(k, l); had {
			dead = s.unliveLocked(old, recordLen(len(k), old.n), dead)
		}
	}
	dead = s.sealIfFullLocked(f, dead)
	s.mu.Unlock()
	return dead, nil
}

// appendFailed seals the file an append failed on, f (nil if creating it
// failed): its content past the failure is unknown, and the next append
// starts a new file. A disk without space is ErrFull (writeMu held).
func (s *Store) appendFailed(f *file, err error) ([]*file, error) {
	s.stats.writeErrors.Add(1)
	var dead []*file
	path := ""
	if f != nil {
		path = f.path
		// os.File.WriteAt does not count the bytes of a pwrite that wrote
		// some and then failed; the file's size says what it takes.
		if info, serr := f.f.Stat(); serr == nil && info.Size() > f.end {
			s.own.Add(info.Size() - f.end)
			f.end = info.Size()
		}
		s.mu.Lock()
		f.size = f.end
		dead = s.sealLocked(f, dead)
		s.mu.Unlock()
		s.head = nil
	}
	if !s.failing {
		s.log.Error("spillfile: writing spilled bytes failed; the write is refused and later ones go to a new file", "file", path, "err", err)
		s.failing = true
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return dead, fmt.Errorf("%w: %w", ErrFull, err)
	}
	return dead, fmt.Errorf("spillfile: %w", err)
}

func (s *Store) appendSucceeded() {
	if s.failing {
		s.log.Info("spillfile: writing spilled bytes works again")
		s.failing = false
	}
}

// Get appends the value stored under key to dst. The index lock is not
// held while the file is read; a reference keeps the file open even if a
// Delete empties it meanwhile (the value read is the one Get found).
func (s *Store) Get(key, dst []byte) ([]byte, error) {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return dst, ErrClosed
	}
	l, ok := s.idx.get(key)
	if !ok {
		s.mu.Unlock()
		return dst, ErrNotFound
	}
	f := s.files[l.file]
	f.refs++
	s.mu.Unlock()
	if s.testHookRead != nil {
		s.testHookRead()
	}

	start, n := len(dst), int(l.n)
	dst = slices.Grow(dst, n)[:start+n]
	_, err := f.f.ReadAt(dst[start:], l.valueOff(len(key)))
	s.unref(f)
	if err != nil {
		return dst[:start], fmt.Errorf("spillfile: reading %d bytes of %s at %d: %w", n, f.path, l.valueOff(len(key)), err)
	}
	s.stats.reads.Add(1)
	s.stats.readBytes.Add(int64(n))
	return dst, nil
}

// Scan calls fn for each key with the prefix, in key order, with its value;
// the slices are valid during the call only. It lists the keys, then reads
// them one by one: a key deleted meanwhile is skipped, one written meanwhile
// may or may not be seen. It sorts every matching key: for rare use only.
func (s *Store) Scan(prefix []byte, fn func(key, value []byte) error) error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return ErrClosed
	}
	keys := s.idx.appendKeys(nil, prefix)
	s.mu.Unlock()
	slices.Sort(keys)
	var v []byte
	for _, k := range keys {
		key := []byte(k)
		var err error
		if v, err = s.Get(key, v[:0]); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return err
		}
		if err := fn(key, v); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the keys now; a sealed file left without live records is
// closed and removed before it returns, or, if a Get or the compactor is
// reading it, as soon as that read ends. Absent keys are ignored. It keeps
// none of the slices.
func (s *Store) Delete(keys ...[]byte) {
	var dead []*file
	var n int64
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return
	}
	for _, k := range keys {
		if l, ok := s.idx.remove(k); ok {
			dead = s.unliveLocked(l, recordLen(len(k), l.n), dead)
			n++
		}
	}
	s.mu.Unlock()
	s.stats.deletes.Add(n)
	s.removeFiles(dead)
}

// Full reports whether the files and OtherBytes have reached DiskLimit.
func (s *Store) Full() bool {
	return s.OwnBytes()+s.otherBytes() >= s.cfg.DiskLimit
}

// OwnBytes returns the bytes of the store's files.
func (s *Store) OwnBytes() int64 { return s.own.Load() }

func (s *Store) otherBytes() int64 {
	if s.cfg.OtherBytes == nil {
		return 0
	}
	return s.cfg.OtherBytes()
}

// Close stops the compactor, waits for the Write in progress, then closes
// and removes the files (a file a Get is reading goes when the read ends).
// Calls after Close fail with ErrClosed; Delete does nothing. Idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.done
		s.writeMu.Lock()
		s.mu.Lock()
		s.closed.Store(true)
		var dead []*file
		for _, f := range s.files {
			dead = s.dropLocked(f, dead)
		}
		s.idx = index{}
		s.live = 0
		s.mu.Unlock()
		s.head, s.wbuf = nil, nil
		s.writeMu.Unlock()
		s.closeErr = s.removeFiles(dead)
	})
	return s.closeErr
}

// Stats is a point-in-time view of the store.
type Stats struct {
	Files          int   // open files, the head included
	DiskBytes      int64 // bytes of the files (OwnBytes)
	LiveBytes      int64 // bytes of the records the index points at (header, key, value)
	Writes         int64 // values written by Write
	WriteBytes     int64 // their bytes
	Reads          int64 // values read by Get and Scan
	ReadBytes      int64 // their bytes
	Deletes        int64 // keys Delete removed
	Compactions    int64 // files compacted
	CompactedBytes int64 // bytes of the records compaction moved
	RefusedFull    int64 // Writes refused for DiskLimit
	WriteErrors    int64 // appends the disk failed (no space included)
}

// Stats returns current figures.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	files, live := len(s.files), s.live
	s.mu.Unlock()
	return Stats{
		Files: files, DiskBytes: s.OwnBytes(), LiveBytes: live,
		Writes: s.stats.writes.Load(), WriteBytes: s.stats.writeBytes.Load(),
		Reads: s.stats.reads.Load(), ReadBytes: s.stats.readBytes.Load(),
		Deletes:     s.stats.deletes.Load(),
		Compactions: s.stats.compactions.Load(), CompactedBytes: s.stats.compactedBytes.Load(),
		RefusedFull: s.stats.refusedFull.Load(), WriteErrors: s.stats.writeErrors.Load(),
	}
}
