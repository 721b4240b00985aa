package buffer

import (
	"iter"
	"slices"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailsift/tailsift/internal/otlpwire"
)

// Summary is what the buffer knows of a trace without reading its spans.
// Times named *Seen are the node's clock (unix nanoseconds) at arrival;
// MinStart, MaxEnd and RootEnd are span timestamps from the senders.
type Summary struct {
	FirstSeen  int64
	LastSeen   int64
	RootSeen   int64 // arrival of the first root span; 0 if none yet
	RootEnd    uint64
	MinStart   uint64 // earliest non-zero span start
	MaxEnd     uint64
	SpanCount  int32
	ErrorCount int32 // spans with status ERROR
	RootIndex  int32 // position of the first root span among the trace's spans (valid if HasRoot)
	Bytes      int64 // raw span bytes
}

// Groups returns the interned groups (resource and scope) the trace's
// spans were sent under. They are immutable: a caller may keep them.
func (t *Trace) Groups() []*Group { return t.groups.list }

// HasRoot reports whether a root span has arrived.
func (s *Summary) HasRoot() bool { return s.RootSeen != 0 }

// Trace is one buffered trace: its summary and its spans' bytes.
type Trace struct {
	ID [16]byte
	Summary
	// Relieved is set by the taker when it decides the trace early
	// (stress relief), for the record.
	Relieved bool
	// Limited is set when the trace reached Config.MaxTraceSpans or
	// MaxTraceBytes, which made it due at once.
	Limited bool

	seq    uint64          // incarnation, to tell stale queue entries from live ones
	groups indexed[*Group] // interned groups its spans reference, by local index
	// The span log, per span: uvarint(group index) uvarint(len) raw span.
	// Spans of a trace arrive a few per request, so the log is a list of
	// chunks: an append that does not fit the last chunk starts a new one
	// and nothing is ever copied twice. (One contiguous slice reallocated
	// on most appends, allocating 3.2x the span bytes in a realistic
	// replay.) The first chunk is inline: most traces need one or two.
	first     []byte
	more      [][]byte
	moreBytes int64 // the capacity of the chunks in more, so memory is O(1)

	// On disk (Config.Disk): the trace's oldest span bytes, in spilled
	// parts 0..spilled-1 that Load reads back in front of the chunks, and
	// the write-ahead records that hold all of its spans.
	owner        *Buffer
	spilled      uint32
	spillQueued  bool // guarded by the shard lock: in the shard's spill queue
	spilling     bool // guarded by the shard lock: a part is being written
	loaded       bool // Load ran: the chunks hold every span
	spilledBytes int64
	wal          []Record
}

// traceOverhead approximates the fixed cost of a buffered trace: the struct,
// its map slot (key, pointer, control byte, load-factor and growth slack) and
// its queue entries (first, root, spill) (rings grow by doubling, so up to twice their size).
// BenchmarkHeldMemory compares the accounting with the measured heap.
const traceOverhead = int64(unsafe.Sizeof(Trace{})) + 64 + 3*2*int64(unsafe.Sizeof(queueEntry{}))

// memory is the trace's accounted footprint. The small slices that grow
// by append (groups, chunk list, records) count twice their length, which
// their capacity never passes but at the start: counted by capacity, one
// append could add half a slice at once, more than any reservation of it.
func (t *Trace) memory() int64 {
	return traceOverhead + int64(cap(t.first)) + t.moreBytes + t.groups.memory() +
		2*(int64(len(t.groups.list))*8+int64(len(t.more))*24+int64(len(t.wal))*8)
}

// Spans yields each span's group and raw bytes, in arrival order. A taken
// trace that has spilled must be loaded first (Buffer.Load).
func (t *Trace) Spans() iter.Seq2[otlpwire.Group, []byte] {
	if t.spilled > 0 && !t.loaded {
		panic("BUG: buffer: spans of a spilled trace read before Load")
	}
	return func(yield func(group otlpwire.Group, span []byte) bool) {
		if !t.yieldChunk(t.first, yield) {
			return
		}
		for _, c := range t.more {
			if !t.yieldChunk(c, yield) {
				return
			}
		}
	}
}

func (t *Trace) yieldChunk(log []byte, yield func(group otlpwire.Group, span []byte) bool) bool {
	for len(log) > 0 {
		g, n := protowire.ConsumeVarint(log)
		l, m := protowire.ConsumeVarint(log[n:])
		if n < 0 || m < 0 || g >= uint64(len(t.groups.list)) || l > uint64(len(log)-n-m) {
			panic("BUG: buffer: corrupt trace log")
		}
		raw := log[n+m : n+m+int(l)]
		log = log[n+m+int(l):]
		if !yield(t.groups.list[g].wire, raw) {
			return false
		}
	}
	return true
}

// Span is one span to append, with the fields the summary needs.
type Span struct {
	Group         *Group // from Buffer.AcquireGroup
	Raw           []byte // copied by Append
	StartUnixNano uint64
	EndUnixNano   uint64
	Root          bool
	Error         bool
}

func isRoot(s Span) bool { return s.Root }

// logSize is the log space a span takes.
func logSize(groupIdx int, s *Span) int {
	return protowire.SizeVarint(uint64(groupIdx)) + protowire.SizeVarint(uint64(len(s.Raw))) + len(s.Raw)
}

// add appends spans to the trace, arrived at now, a root span at rootSeen
// (now unless handed off). It returns the growth of t.memory(); each group
// the trace newly references took a reference.
func (t *Trace) add(spans []Span, now, rootSeen int64) int64 {
	before := t.memory()
	need := 0
	for i := range spans {
		need += logSize(len(t.groups.list)+len(spans), &spans[i]) // an upper bound on the index varint
	}
	log := t.chunkFor(need)
	for i := range spans {
		s := &spans[i]
		gi := t.groupIndex(s.Group)
		*log = protowire.AppendVarint(*log, uint64(gi))
		*log = protowire.AppendVarint(*log, uint64(len(s.Raw)))
		*log = append(*log, s.Raw...)
		t.summarize(s, rootSeen)
	}
	t.LastSeen = now
	return t.memory() - before
}

// chunkFor returns the chunk to append need bytes to: the last one if it has
// room, else a new one. New chunks are sized by slices.Grow, whose capacity
// is the allocator's size class, so the rounding slack is usable (and
// counted by memory).
func (t *Trace) chunkFor(need int) *[]byte {
	last := &t.first
	if len(t.more) > 0 {
		last = &t.more[len(t.more)-1]
	}
	if cap(*last)-len(*last) >= need {
		return last
	}
	chunk := slices.Grow([]byte(nil), need)
	if t.first == nil {
		t.first = chunk
		return &t.first
	}
	t.more = append(t.more, chunk)
	t.moreBytes += int64(cap(chunk))
	return &t.more[len(t.more)-1]
}

func (t *Trace) groupIndex(g *Group) int {
	if i, ok := t.groups.find(g); ok {
		return i
	}
	g.refs.Add(1) // the caller holds a reference, so this is not 0 -> 1
	return t.groups.add(g)
}

func (t *Trace) summarize(s *Span, rootSeen int64) {
	if s.Root && t.RootSeen == 0 {
		t.RootIndex = t.SpanCount
	}
	t.SpanCount++
	t.Bytes += int64(len(s.Raw))
	if s.Error {
		t.ErrorCount++
	}
	if s.StartUnixNano != 0 && (t.MinStart == 0 || s.StartUnixNano < t.MinStart) {
		t.MinStart = s.StartUnixNano
	}
	t.MaxEnd = max(t.MaxEnd, s.EndUnixNano)
	if s.Root && t.RootSeen == 0 {
		t.RootSeen = rootSeen
		t.RootEnd = s.EndUnixNano
	}
}

// setChunks replaces the trace's span log (spill and Load move parts of it
// to and from disk).
func (t *Trace) setChunks(first []byte, more [][]byte) {
	t.first, t.more, t.moreBytes = first, more, 0
	for _, c := range more {
		t.moreBytes += int64(cap(c))
	}
}
