package buffer

import (
	"cmp"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/tailsift/tailsift/internal/otlpwire"
)

// ErrFull is returned by Append when the spans would take the buffer past
// its memory limit. It is temporary: decisions free memory continuously.
var ErrFull = &fullError{}

type fullError struct{}

func (*fullError) Error() string { return "buffer: memory limit reached, try again later" }

// RetryAfter is the delay a client should wait before retrying.
func (*fullError) RetryAfter() time.Duration { return time.Second }

// Buffer holds traces in flight. See the package documentation.
type Buffer struct {
	cfg    Config
	shards []shard
	mask   uint64
	groups groupTable
	seq    atomic.Uint64

	used   atomic.Int64 // accounted bytes, including in-flight reservations
	spans  atomic.Int64
	traces atomic.Int64

	// With a Disk: the spill loop, and the write-ahead log's record counter.
	spillBell     chan struct{} // 1 slot
	stop          chan struct{}
	spillDone     chan struct{}
	closeOnce     sync.Once
	onDisk        atomic.Int64 // span bytes of buffered traces on disk
	spilledBytes  atomic.Int64 // span bytes written by the spill loop, ever
	spillParts    atomic.Int64
	loadedBytes   atomic.Int64
	spillFailures atomic.Int64
	walPuts       atomic.Int64
	walFailures   atomic.Int64

	// With a Log: the checkpoint loop.
	checkpointDone     chan struct{}
	checkpoints        atomic.Int64
	checkpointMoved    atomic.Int64
	checkpointFailures atomic.Int64
}

type shard struct {
	mu      sync.Mutex
	traces  map[[16]byte]*Trace
	peak    int   // largest len(traces) since the map was last rebuilt
	byFirst queue // every trace, by first span arrival
	byRoot  queue // traces with a root span, by root arrival
	spillQ  queue // traces with span bytes in RAM, by first arrival (with a Disk)
	_       [64]byte
}

// New returns an empty buffer.
func New(cfg Config) (*Buffer, error) {
	cfg = cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Buffer{cfg: cfg, shards: make([]shard, cfg.Shards), mask: uint64(cfg.Shards - 1)}
	for i := range b.shards {
		b.shards[i].traces = make(map[[16]byte]*Trace)
	}
	b.stop = make(chan struct{})
	if cfg.Disk != nil {
		b.spillBell = make(chan struct{}, 1)
		b.spillDone = make(chan struct{})
		go b.spillLoop()
	}
	if cfg.Log != nil {
		b.checkpointDone = make(chan struct{})
		go b.checkpointLoop()
	}
	return b, nil
}

// Close stops the spill loop. Traces still buffered stay readable (Load
// works until the Disk closes). Idempotent.
func (b *Buffer) Close() {
	b.closeOnce.Do(func() {
		close(b.stop)
		if b.spillDone != nil {
			<-b.spillDone
		}
		if b.checkpointDone != nil {
			<-b.checkpointDone
		}
	})
}

func (b *Buffer) shard(id *[16]byte) *shard {
	return &b.shards[xxhash.Sum64(id[:])&b.mask]
}

// AcquireResource interns a resource part (otlpwire.Group.Resource) for the
// duration of a request; release it with ReleaseResource. Interning counts
// against the memory limit: past it, it returns ErrFull and holds nothing.
func (b *Buffer) AcquireResource(part []byte) (*Resource, error) {
	if r := b.groups.acquireResource(part, b.reserve); r != nil {
		return r, nil
	}
	return nil, ErrFull
}

// ReleaseResource drops a reference taken by AcquireResource.
func (b *Buffer) ReleaseResource(r *Resource) {
	b.used.Add(-b.groups.releaseResource(r))
}

// AcquireGroup interns the group of a scope part under r for the duration
// of a request; release it with Release when the request's spans are
// appended. Like AcquireResource, it returns ErrFull past the limit.
func (b *Buffer) AcquireGroup(r *Resource, scope []byte) (*Group, error) {
	if g := b.groups.acquireGroup(r, scope, b.reserve); g != nil {
		return g, nil
	}
	return nil, ErrFull
}

// Acquire is AcquireResource and AcquireGroup at once, for callers that
// intern one group at a time.
func (b *Buffer) Acquire(g otlpwire.Group) (*Group, error) {
	r, err := b.AcquireResource(g.Resource)
	if err != nil {
		return nil, err
	}
	defer b.ReleaseResource(r)
	return b.AcquireGroup(r, g.Scope)
}

// Release drops a reference taken by AcquireGroup or Acquire.
func (b *Buffer) Release(g *Group) {
	b.used.Add(-b.groups.release(g))
}

// reserve adds n bytes to the accounting if they fit the memory limit. It
// never adds and takes back: the accounting, as the memory gauge shows it,
// does not pass the limit even for a moment.
func (b *Buffer) reserve(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.cfg.MemoryLimit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// Batch is the part of one request that goes into the buffer: spans grouped
// by trace. Reuse it across requests.
type Batch struct {
	Spans  []Span
	Traces []BatchTrace
	bytes  int64
}

// BatchTrace is one trace's run of spans in a Batch: Spans[Start:End].
type BatchTrace struct {
	ID         [16]byte
	Start, End int
	// Arrival times of a trace handed off by another node, converted to
	// this node's clock (unix nanoseconds); 0 means the time of Append.
	// An earlier time than the buffered trace's makes it due sooner.
	// RootSeen is ignored unless the run has a root span.
	FirstSeen, RootSeen int64
	// Logged lists write-ahead records that already hold these spans (a
	// trace recovered from the log): they are not written again.
	Logged []Record
}

// Reset empties the batch, keeping capacity.
func (bt *Batch) Reset() {
	clear(bt.Spans)
	bt.Spans, bt.Traces, bt.bytes = bt.Spans[:0], bt.Traces[:0], 0
}

// StartTrace begins a run of spans of trace id; follow with AddSpan.
func (bt *Batch) StartTrace(id [16]byte) { bt.StartTraceSeen(id, 0, 0) }

// StartTraceSeen is StartTrace for spans handed off by another node, which
// first saw the trace, and its root span, at firstSeen and rootSeen (see
// BatchTrace).
func (bt *Batch) StartTraceSeen(id [16]byte, firstSeen, rootSeen int64) {
	n := len(bt.Spans)
	bt.Traces = append(bt.Traces, BatchTrace{ID: id, Start: n, End: n, FirstSeen: firstSeen, RootSeen: rootSeen})
}

// SetLogged marks the spans of the trace begun last as already held by
// the write-ahead records logged (see BatchTrace.Logged).
func (bt *Batch) SetLogged(logged []Record) { bt.Traces[len(bt.Traces)-1].Logged = logged }

// AddSpan adds a span to the trace begun last.
func (bt *Batch) AddSpan(s Span) {
	bt.Spans = append(bt.Spans, s)
	bt.Traces[len(bt.Traces)-1].End++
	bt.bytes += int64(len(s.Raw))
}

// Len returns the number of spans in the batch.
func (bt *Batch) Len() int { return len(bt.Spans) }

// AppendResult tells what an Append did.
type AppendResult struct {
	NewTraces int // traces first seen in this batch
}

// Append adds a batch at time now (unix nanoseconds), all or nothing: if the
// batch would take the buffer past its memory limit it returns ErrFull and
// changes nothing.
func (b *Buffer) Append(bt *Batch, now int64) (AppendResult, error) {
	var res AppendResult
	if len(bt.Spans) == 0 {
		return res, nil
	}
	// Reserve an upper estimate first, so concurrent requests cannot all
	// pass the check; the actual growth then replaces the reservation as it
	// happens (grow), so the accounting never counts both and stays within
	// the limit; what is left of the reservation is returned at the end.
	reserve := appendBound(bt)
	if !b.reserve(reserve) {
		return res, ErrFull
	}
	left := reserve
	grow := func(n int64) {
		take := min(max(n, 0), left)
		left -= take
		b.used.Add(n - take)
	}
	defer func() { b.used.Add(-left) }()
	var recs []Record
	if b.cfg.Log != nil {
		sc := walScratchPool.Get().(*walScratch)
		defer walScratchPool.Put(sc)
		if err := b.writeAhead(sc, bt, now, false); err != nil {
			return res, err
		}
		recs = sc.recs
	}
	for i, run := range bt.Traces {
		spans := bt.Spans[run.Start:run.End]
		s := b.shard(&run.ID)
		s.mu.Lock()
		t := s.traces[run.ID]
		if t == nil {
			t = &Trace{ID: run.ID, seq: b.seq.Add(1), owner: b}
			t.FirstSeen = cmp.Or(run.FirstSeen, now)
			s.traces[run.ID] = t
			s.peak = max(s.peak, len(s.traces))
			s.byFirst.push(queueEntry{id: run.ID, at: t.FirstSeen, seq: t.seq})
			res.NewTraces++
			b.traces.Add(1)
			grow(t.memory())
		} else if run.FirstSeen != 0 && run.FirstSeen < t.FirstSeen {
			// Another node saw the trace first. The later entry goes stale
			// once this one takes the trace.
			t.FirstSeen = run.FirstSeen
			s.byFirst.push(queueEntry{id: run.ID, at: t.FirstSeen, seq: t.seq})
		}
		// Records go with the trace, to be deleted when it is forgotten;
		// also recovered ones when the log is off now.
		if run.Logged != nil || b.cfg.Log != nil {
			before := t.memory()
			if run.Logged != nil {
				t.wal = append(t.wal, run.Logged...)
			} else {
				t.wal = append(t.wal, recs[i])
			}
			grow(t.memory() - before)
		}
		hadRoot := t.HasRoot()
		grow(t.add(spans, now, cmp.Or(run.RootSeen, now)))
		if !t.Limited && (int(t.SpanCount) >= b.cfg.MaxTraceSpans || t.Bytes >= b.cfg.MaxTraceBytes) {
			t.Limited = true
			s.byFirst.push(queueEntry{id: run.ID, at: 0, seq: t.seq}) // due at the next tick
		}
		if b.cfg.Disk != nil {
			b.requeueSpill(s, t)
		}
		if !hadRoot && t.HasRoot() {
			s.byRoot.push(queueEntry{id: run.ID, at: t.RootSeen, seq: t.seq})
		} else if hadRoot && run.RootSeen != 0 && run.RootSeen < t.RootSeen && slices.ContainsFunc(spans, isRoot) {
			t.RootSeen = run.RootSeen
			s.byRoot.push(queueEntry{id: run.ID, at: t.RootSeen, seq: t.seq})
		}
		s.mu.Unlock()
	}
	b.spans.Add(int64(len(bt.Spans)))
	b.ringSpill()
	return res, nil
}

// appendBound is the most an Append of bt can add to the accounting, so
// that the reservation covers it and the limit holds (a lower estimate let
// the accounting pass the limit under load): the span bytes in new chunks,
// rounded up by the allocator (to a size class, at most 1/8 more, or past
// 32 KiB to a page, less than 8 KiB more); per span its log framing and,
// at worst, a new group in its trace (see Trace.memory and indexed: 16
// bytes of list, an index entry, and the index built at once past 8); per
// trace a new trace, a chunk list and a record entry.
func appendBound(bt *Batch) int64 {
	const perSpan = 2*binary.MaxVarintLen32 + 2*8 + indexedEntry
	const perTrace = traceOverhead + 2*24 + 2*8 + (indexedScanMax+1)*indexedEntry
	logged := bt.bytes + int64(len(bt.Spans))*2*binary.MaxVarintLen32
	pages := min(int64(len(bt.Traces)), logged>>15) * 8192 // chunks past 32 KiB
	return bt.bytes + bt.bytes/8 + pages + int64(len(bt.Spans))*perSpan + int64(len(bt.Traces))*perTrace
}

// TakeReady removes and appends to dst every trace whose first span arrived
// at or before firstBefore, or whose root span arrived at or before
// rootBefore (unix nanoseconds). The caller owns the returned traces.
func (b *Buffer) TakeReady(firstBefore, rootBefore int64, dst []*Trace) []*Trace {
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		dst = b.takeDue(s, &s.byFirst, firstBefore, dst)
		dst = b.takeDue(s, &s.byRoot, rootBefore, dst)
		s.dropStaleSpills()
		s.shrink()
		s.mu.Unlock()
	}
	return dst
}

func (b *Buffer) takeDue(s *shard, q *queue, before int64, dst []*Trace) []*Trace {
	for {
		e, ok := q.front()
		if !ok || e.at > before {
			return dst
		}
		q.pop()
		if t := s.traces[e.id]; t != nil && t.seq == e.seq {
			dst = append(dst, b.remove(s, t))
		}
	}
}

// TakeIf removes and appends to dst every trace for which take returns true,
// such as the traces this node no longer owns. take runs under a shard lock:
// it must be quick, must not call the buffer and must not modify the ID.
func (b *Buffer) TakeIf(take func(id *[16]byte) bool, dst []*Trace) []*Trace {
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		for _, t := range s.traces {
			if take(&t.ID) {
				dst = append(dst, b.remove(s, t)) // its queue entries go stale
			}
		}
		s.shrink()
		s.mu.Unlock()
	}
	return dst
}

// TakeAll removes every trace, for shutdown.
func (b *Buffer) TakeAll(dst []*Trace) []*Trace {
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		for _, t := range s.traces {
			dst = append(dst, b.remove(s, t))
		}
		s.byFirst, s.byRoot, s.spillQ = queue{}, queue{}, queue{}
		s.shrink()
		s.mu.Unlock()
	}
	return dst
}

// remove takes t out of the shard (locked) and out of the accounting. The
// trace keeps its group pointers: their keys stay valid for the caller.
func (b *Buffer) remove(s *shard, t *Trace) *Trace {
	delete(s.traces, t.ID)
	freed := t.memory()
	for _, g := range t.groups.list {
		freed += b.groups.release(g)
	}
	b.used.Add(-freed)
	b.spans.Add(-int64(t.SpanCount))
	b.traces.Add(-1)
	b.onDisk.Add(-t.spilledBytes)
	return t
}

// TakeOldest removes up to n traces, the oldest by first arrival of each
// shard in turn, for stress relief: deciding early beats refusing spans.
func (b *Buffer) TakeOldest(n int, dst []*Trace) []*Trace {
	for taken, empty := 0, 0; taken < n && empty < len(b.shards); {
		empty = 0
		for i := range b.shards {
			if taken == n {
				break
			}
			s := &b.shards[i]
			s.mu.Lock()
			for {
				e, ok := s.byFirst.front()
				if !ok {
					empty++
					break
				}
				s.byFirst.pop()
				if t := s.traces[e.id]; t != nil && t.seq == e.seq {
					dst = append(dst, b.remove(s, t))
					taken++
					break
				}
			}
			s.mu.Unlock()
		}
	}
	return dst
}

// dropStaleSpills pops the spill queue's entries of traces already taken
// (locked). The queue is in first-arrival order like byFirst, so they
// gather at its front; without this, a buffer that never spills would
// keep an entry for every trace it ever held.
func (s *shard) dropStaleSpills() {
	for {
		e, ok := s.spillQ.front()
		if !ok {
			return
		}
		if t := s.traces[e.id]; t != nil && t.seq == e.seq {
			return
		}
		s.spillQ.pop()
	}
}

// shrink rebuilds the map after a burst drained: Go maps never shrink.
func (s *shard) shrink() {
	if s.peak > 4096 && len(s.traces) < s.peak/8 {
		m := make(map[[16]byte]*Trace, len(s.traces))
		for k, v := range s.traces {
			m[k] = v
		}
		s.traces, s.peak = m, len(s.traces)
	}
}

// Stats is a point-in-time view of the buffer.
type Stats struct {
	Traces      int64
	Spans       int64
	Bytes       int64 // accounted memory of the buffered traces and their groups
	MemoryLimit int64
	// With a Disk.
	SpilledBytes       int64 // span bytes of buffered traces on disk now
	SpillWritten       int64 // span bytes spilled, ever
	SpillParts         int64 // spill writes (one per trace per spill), ever
	SpillLoaded        int64 // span bytes read back, ever
	SpillFailures      int64 // spill batches the disk refused
	WALPuts            int64 // synced write-ahead commits (one per Append)
	WALFailures        int64 // Appends refused because the log could not be written
	Checkpoints        int64 // old segments whose live records were copied forward
	CheckpointMoved    int64 // records copied
	CheckpointFailures int64 // checkpoints that could not read their segment
}

// Stats returns current figures. They are read without locks, so they may
// be mid-update by a few concurrent requests.
func (b *Buffer) Stats() Stats {
	return Stats{
		Traces: b.traces.Load(), Spans: b.spans.Load(), Bytes: b.used.Load(), MemoryLimit: b.cfg.MemoryLimit,
		SpilledBytes: b.onDisk.Load(), SpillWritten: b.spilledBytes.Load(), SpillParts: b.spillParts.Load(),
		SpillLoaded: b.loadedBytes.Load(), SpillFailures: b.spillFailures.Load(),
		WALPuts: b.walPuts.Load(), WALFailures: b.walFailures.Load(),
		Checkpoints: b.checkpoints.Load(), CheckpointMoved: b.checkpointMoved.Load(), CheckpointFailures: b.checkpointFailures.Load(),
	}
}

// Pressure reports whether the buffer is close to refusing spans: within
// 1/16 of its memory limit. With a disk that is only so when spilling
// cannot help: the disk is full or slow, or the memory holds mostly
// summaries of spilled traces. The engine then decides the oldest traces
// early (stress relief).
func (b *Buffer) Pressure() bool {
	return b.used.Load() > b.cfg.MemoryLimit-b.cfg.MemoryLimit/16
}

// WriteAhead reports whether Append logs spans to disk before it returns.
func (b *Buffer) WriteAhead() bool { return b.cfg.Log != nil }

// Peek returns the summary of buffered trace id and the groups its spans
// were sent under so far, if it is buffered.
func (b *Buffer) Peek(id [16]byte) (Summary, []*Group, bool) {
	s := b.shard(&id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.traces[id]; t != nil {
		return t.Summary, slices.Clone(t.groups.list), true
	}
	return Summary{}, nil, false
}
