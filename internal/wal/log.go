package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of Write. Those with a RetryAfter method are temporary.
var (
	// ErrFull: the log has reached MaxBytes, or the disk has no space.
	ErrFull = &retryable{"wal: the write-ahead log is full (disk_limit, or no space on the disk); decided traces free it", time.Second}
	// ErrBacklog: MaxPending bytes wait for the disk.
	ErrBacklog = &retryable{"wal: the disk is behind: too many bytes wait to be synced", time.Second}
	// ErrTimeout: the records were not synced within SyncTimeout.
	ErrTimeout = &retryable{"wal: the disk did not sync in time", time.Second}
	// ErrClosed: the log is closed.
	ErrClosed = errors.New("wal: closed")
)

type retryable struct {
	msg   string
	after time.Duration
}

func (e *retryable) Error() string { return e.msg }

// RetryAfter is the delay a client should wait before retrying.
func (e *retryable) RetryAfter() time.Duration { return e.after }

// Log is an append-only write-ahead log of segment files. See the
// package documentation.
type Log struct {
	cfg    Config
	fs     FS
	log    *slog.Logger
	sealer *sealer

	mu            sync.Mutex
	seg           uint32 // the segment Writers append to
	off           int64  // offset of its next record
	nextID        uint32 // Writer.NextID within seg
	pending       []chunk
	spareChunks   []chunk  // the syncer's last batch, emptied, for pending
	free          [][]byte // chunk buffers written, for reuse
	pendingBytes  int64
	needSync      bool      // a Write waits for the pending chunks (releases do not)
	appended      int64     // bytes appended to chunks, ever: positions for durable
	segments      []segment // oldest first; the last is seg
	bytes         int64     // of all segments, written or pending
	broken        uint32    // a segment whose file failed: Writers leave it
	syncedSeg     uint32    // segments before it are written, synced and closed
	replayed      bool      // no segment is deleted before Replay counted its records
	closed        bool
	released      map[Ref]struct{} // by records of segments found at Open, until Replay
	oldSegments   []uint32         // found at Open
	replayBytes   int64            // their size
	replayedBytes atomic.Int64     // bytes of them Replay has read

	kick    chan struct{} // 1 slot
	closing chan struct{}
	done    chan struct{}
	closeMu sync.Once

	// The syncer's (run) own.
	file    File
	fileSeg uint32

	durable  atomic.Int64 // positions below it are synced, or failed
	busy     atomic.Int64 // unix nanoseconds the syncer began a batch; 0: idle
	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced when durable moves
	failMu   sync.Mutex
	failed   []failure // recent failed batches

	stats counters
}

type segment struct {
	seg           uint32
	live, records int64
	bytes         int64
}

type chunk struct {
	seg uint32
	buf []byte
}

type failure struct {
	from, to int64
	err      error
}

type counters struct {
	writes, syncs, records, recordBytes, releases, deleted, repaired, repairedBytes,
	timeouts, failures, refusedFull, refusedBacklog atomic.Int64
}

// Open opens the log in cfg.Dir, creating it if needed: it checks every
// segment, repairs a torn tail (truncates a segment at its first record
// that does not read, and counts it) and prepares Replay. New records go
// to a new segment. log nil discards log lines.
func Open(cfg Config, log *slog.Logger) (*Log, error) {
	cfg = cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := newSealer(cfg.EncryptionKey)
	if err != nil {
		return nil, err
	}
	l := &Log{cfg: cfg, fs: cfg.FS, log: log, sealer: s, released: map[Ref]struct{}{},
		kick: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{}), notify: make(chan struct{})}
	if err := l.fs.MkdirAll(cfg.Dir); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	if err := l.scan(); err != nil {
		return nil, err
	}
	l.replayed = len(l.oldSegments) == 0
	last := uint32(0)
	if n := len(l.segments); n > 0 {
		last = l.segments[n-1].seg
	}
	l.seg, l.off, l.syncedSeg = last+1, headerLen, last+1
	l.segments = append(l.segments, segment{seg: l.seg, bytes: headerLen})
	l.bytes += headerLen
	go l.run()
	return l, nil
}

// scan reads every segment once: it checks the records, truncates a
// torn or corrupt tail, and collects released refs for Replay.
func (l *Log) scan() error {
	names, err := l.fs.List(l.cfg.Dir)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	var segs []uint32
	for _, name := range names {
		if seg, ok := parseSegmentName(name); ok {
			segs = append(segs, seg)
		}
	}
	slices.Sort(segs)
	var buf []byte
	for _, seg := range segs {
		size, good, err := l.scanSegment(seg, &buf)
		if err != nil {
			return err
		}
		if good == 0 { // not even a header: created, then torn
			if err := l.fs.Remove(l.path(seg)); err != nil {
				return fmt.Errorf("wal: removing torn segment: %w", err)
			}
			l.stats.repaired.Add(1)
			l.stats.repairedBytes.Add(size)
			continue
		}
		l.segments = append(l.segments, segment{seg: seg, bytes: good})
		l.bytes += good
		l.replayBytes += good
		l.oldSegments = append(l.oldSegments, seg)
	}
	return nil
}

// scanSegment reads one segment and returns its size and the length of
// its good prefix, after truncating it there.
func (l *Log) scanSegment(seg uint32, buf *[]byte) (size, good int64, err error) {
	f, err := l.fs.Open(l.path(seg))
	if err != nil {
		return 0, 0, fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	if size, err = f.Size(); err != nil {
		return 0, 0, fmt.Errorf("wal: %w", err)
	}
	sr, err := newSegmentReader(seg, f, l.sealer, *buf)
	if sr == nil {
		return 0, 0, fmt.Errorf("wal: %w", err)
	}
	if errors.Is(err, ErrKeyMismatch) {
		return 0, 0, fmt.Errorf("%w (segment %s)", err, l.path(seg))
	}
	if err == nil {
		for {
			_, typ, _, payload, rerr := sr.next()
			if rerr != nil {
				break
			}
			if typ == typeRelease {
				for p := payload; len(p) >= 8; p = p[8:] {
					l.released[Ref(binary.BigEndian.Uint64(p))] = struct{}{}
				}
			}
		}
		good = sr.off
	}
	*buf = sr.buf
	if good < size {
		// A torn tail: the records after good were never acknowledged
		// (a record is acknowledged only once synced whole).
		l.log.Warn("wal: repairing a torn segment tail", "segment", l.path(seg), "kept_bytes", good, "dropped_bytes", size-good)
		if good > 0 {
			if err := f.Truncate(good); err != nil {
				return 0, 0, fmt.Errorf("wal: repairing %s: %w", l.path(seg), err)
			}
			if err := f.Sync(); err != nil {
				return 0, 0, fmt.Errorf("wal: repairing %s: %w", l.path(seg), err)
			}
			l.stats.repaired.Add(1)
			l.stats.repairedBytes.Add(size - good)
		}
	}
	return size, good, nil
}

func (l *Log) path(seg uint32) string { return filepath.Join(l.cfg.Dir, segmentName(seg)) }

// Replay calls fn for every record of the segments found at Open that is
// not released, in the order written: ref, the type given to
// Writer.Append, and the payload (valid during the call only). Live
// records count in their segment until released. Call it once, before
// Write; segments are deleted only after it. An error from fn stops it.
func (l *Log) Replay(fn func(ref Ref, typ byte, payload []byte) error) error {
	defer func() {
		l.mu.Lock()
		l.replayed, l.released = true, nil
		l.mu.Unlock()
	}()
	var buf []byte
	var done int64
	for _, seg := range l.oldSegments {
		err := l.readSegment(seg, &buf, func(ref Ref, typ byte, live bool, payload []byte) error {
			l.replayedBytes.Store(done + ref.Offset())
			if typ == typeRelease {
				return nil
			}
			if live {
				if _, gone := l.released[ref]; gone {
					return nil
				}
				l.mu.Lock()
				l.segmentOf(seg).live++
				l.segmentOf(seg).records++
				l.mu.Unlock()
			}
			return fn(ref, typ, payload)
		})
		if err != nil {
			return err
		}
		l.mu.Lock()
		done += l.segmentOf(seg).bytes
		l.mu.Unlock()
		l.replayedBytes.Store(done)
	}
	return nil
}

// ReadSegment calls fn for every record of sealed segment seg but the
// log's own, in order: for checkpoints, which copy the live ones.
func (l *Log) ReadSegment(seg uint32, fn func(ref Ref, typ byte, payload []byte) error) error {
	var buf []byte
	return l.readSegment(seg, &buf, func(ref Ref, typ byte, _ bool, payload []byte) error {
		if typ == typeRelease {
			return nil
		}
		return fn(ref, typ, payload)
	})
}

func (l *Log) readSegment(seg uint32, buf *[]byte, fn func(ref Ref, typ byte, live bool, payload []byte) error) error {
	f, err := l.fs.Open(l.path(seg))
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	sr, err := newSegmentReader(seg, f, l.sealer, *buf)
	if err != nil {
		return fmt.Errorf("wal: segment %s: %w", l.path(seg), err)
	}
	for {
		off, typ, live, payload, err := sr.next()
		if err == io.EOF {
			*buf = sr.buf
			return nil
		}
		if err != nil { // repaired at Open: the file changed since
			return fmt.Errorf("wal: segment %s at %d: %w", l.path(seg), sr.off, err)
		}
		if err := fn(makeRef(seg, off), typ, live, payload); err != nil {
			return err
		}
	}
}

// segmentOf returns the segment entry of seg (mu held), which exists
// while the segment has live records.
func (l *Log) segmentOf(seg uint32) *segment {
	i := sort.Search(len(l.segments), func(i int) bool { return l.segments[i].seg >= seg })
	if i == len(l.segments) || l.segments[i].seg != seg {
		panic(fmt.Sprintf("BUG: wal: segment %d is not in the log", seg))
	}
	return &l.segments[i]
}

// Writer appends records within one Write. It is valid during the call
// to fill only.
type Writer struct {
	l    *Log
	refs []Ref // live records appended, released if the Write fails
}

// Segment returns the number of the segment the next record goes to.
func (w *Writer) Segment() uint32 { return w.l.seg }

// NextID returns a number unique within the current segment, for a
// record that defines something later records of the segment refer to.
func (w *Writer) NextID() uint32 { w.l.nextID++; return w.l.nextID }

// Fit starts a new segment if n more bytes would take the current one
// past the segment size, so that records which refer to each other can
// be kept in one segment.
func (w *Writer) Fit(n int) {
	l := w.l
	if l.off > headerLen && l.off+int64(n) > l.cfg.SegmentSize {
		l.rotate()
	}
}

// Append adds a record of type typ (1 to 126) whose payload is the
// concatenation of parts, and returns its ref. A live record counts in its
// segment until released; the segment, and every later one, stays on disk
// until then.
func (w *Writer) Append(typ byte, live bool, parts ...[]byte) Ref {
	if typ == 0 || typ >= typeRelease {
		panic(fmt.Sprintf("BUG: wal: record type %d", typ))
	}
	ref := w.l.append(typ, live, parts...)
	if live {
		w.refs = append(w.refs, ref)
	}
	return ref
}

func (l *Log) rotate() {
	l.seg++
	l.off, l.nextID = headerLen, 0
	l.segments = append(l.segments, segment{seg: l.seg, bytes: headerLen})
	l.bytes += headerLen
}

// chunkSize is the capacity of a pending chunk; a larger record gets a
// chunk of its own.
const chunkSize = 1 << 20

// append writes one record to the pending chunks (mu held).
func (l *Log) append(typ byte, live bool, parts ...[]byte) Ref {
	size := 1
	for _, p := range parts {
		size += len(p)
	}
	if l.sealer != nil {
		size += l.sealer.aead.Overhead()
	}
	// A record that does not fit the last chunk starts a new one: chunks
	// never grow by copying.
	if n := len(l.pending); n == 0 || l.pending[n-1].seg != l.seg || cap(l.pending[n-1].buf)-len(l.pending[n-1].buf) < recordHeaderLen+size {
		var buf []byte
		if n := len(l.free); n > 0 && cap(l.free[n-1]) >= recordHeaderLen+size {
			buf, l.free = l.free[n-1][:0], l.free[:n-1]
		} else {
			buf = make([]byte, 0, max(chunkSize, recordHeaderLen+size))
		}
		l.pending = append(l.pending, chunk{seg: l.seg, buf: buf})
	}
	c := &l.pending[len(l.pending)-1]
	off := l.off
	start := len(c.buf)
	c.buf = append(c.buf, 0, 0, 0, 0, 0, 0, 0, 0, typ)
	if live {
		c.buf[start+recordHeaderLen] |= liveBit
	}
	for _, p := range parts {
		c.buf = append(c.buf, p...)
	}
	body := start + recordHeaderLen
	if l.sealer != nil {
		sealed := l.sealer.aead.Seal(c.buf[body+1:body+1], nonce(l.seg, off), c.buf[body+1:], c.buf[body:body+1])
		c.buf = c.buf[:body+1+len(sealed)]
	}
	binary.BigEndian.PutUint32(c.buf[start:], uint32(len(c.buf)-body))
	binary.BigEndian.PutUint32(c.buf[start+4:], crc32.Checksum(c.buf[body:], castagnoli))
	n := int64(len(c.buf) - start)
	l.off += n
	l.appended += n
	l.pendingBytes += n
	l.bytes += n
	s := &l.segments[len(l.segments)-1]
	s.bytes += n
	if live {
		s.live++
		s.records++
	}
	l.stats.records.Add(1)
	l.stats.recordBytes.Add(n)
	return makeRef(l.seg, off)
}

// Write calls fill to append records and returns once they are on stable
// storage: written, and fsynced together with those of every Write
// waiting at the time (group commit). A segment file's directory entry is
// synced before the first record in it is acknowledged. On an error the
// live records fill appended are released; an error with a RetryAfter
// method is temporary (ErrFull, ErrBacklog, ErrTimeout).
func (l *Log) Write(fill func(w *Writer)) error { return l.write(fill, 0) }

// Rewrite is Write for a checkpoint, which frees more than it takes: it
// may pass MaxBytes by one segment.
func (l *Log) Rewrite(fill func(w *Writer)) error { return l.write(fill, l.cfg.SegmentSize) }

func (l *Log) write(fill func(w *Writer), allowance int64) error {
	w := writerPool.Get().(*Writer)
	defer func() {
		clear(w.refs)
		w.refs, w.l = w.refs[:0], nil
		writerPool.Put(w)
	}()
	w.l = l
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return ErrClosed
	case l.bytes+l.otherBytes() >= l.cfg.MaxBytes+allowance:
		l.mu.Unlock()
		l.stats.refusedFull.Add(1)
		return ErrFull
	case l.pendingBytes >= l.cfg.MaxPending:
		l.mu.Unlock()
		l.stats.refusedBacklog.Add(1)
		return ErrBacklog
	}
	if l.broken == l.seg || l.off >= l.cfg.SegmentSize {
		l.rotate()
	}
	before := l.appended
	fill(w)
	target := l.appended
	l.needSync = l.needSync || target != before
	l.mu.Unlock()
	if target == before {
		return nil
	}
	l.stats.writes.Add(1)
	select {
	case l.kick <- struct{}{}:
	default:
	}
	if err := l.wait(before, target); err != nil {
		l.Release(w.refs...)
		return err
	}
	return nil
}

var writerPool = sync.Pool{New: func() any { return new(Writer) }}

// wait returns once the bytes [from, to) are durable, or failed.
func (l *Log) wait(from, to int64) error {
	var timer *time.Timer
	for l.durable.Load() < to {
		l.notifyMu.Lock()
		ch := l.notify
		l.notifyMu.Unlock()
		if l.durable.Load() >= to {
			break
		}
		if timer == nil {
			timer = time.NewTimer(l.cfg.SyncTimeout)
			defer timer.Stop()
		}
		select {
		case <-ch:
		case <-timer.C:
			l.stats.timeouts.Add(1)
			return ErrTimeout
		}
	}
	l.failMu.Lock()
	defer l.failMu.Unlock()
	for _, f := range l.failed {
		if from < f.to && to > f.from {
			return f.err
		}
	}
	return nil
}

// Release marks records as no longer needed. A segment is deleted once
// it and every older one hold no live record. The release itself is
// logged, without a sync of its own, so that a replay after a crash
// skips the records; a release lost in a crash replays them (at least
// once). Refs must come from Append or Replay, each released once.
func (l *Log) Release(refs ...Ref) {
	if len(refs) == 0 {
		return
	}
	var payload [64]byte
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range refs {
		s := l.segmentOf(r.Segment())
		if s.live--; s.live < 0 {
			panic(fmt.Sprintf("BUG: wal: record %v released twice", r))
		}
	}
	l.stats.releases.Add(int64(len(refs)))
	if l.closed {
		return // a replay may repeat them
	}
	for len(refs) > 0 {
		n := min(len(refs), len(payload)/8)
		for i, r := range refs[:n] {
			binary.BigEndian.PutUint64(payload[8*i:], uint64(r))
		}
		l.append(typeRelease, false, payload[:8*n])
		refs = refs[n:]
	}
}
