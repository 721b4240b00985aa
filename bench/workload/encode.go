package workload

import (
	"encoding/binary"
	"encoding/hex"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// Requests are written with appends of catalog pieces: sizes are computed
// first, so every body is written once, into memory of exactly its size.

// approxSpanBytes is about the encoded size of a span, to size estimates.
const approxSpanBytes = 450

// Span flags (Span.flags): W3C sampled, and whether the parent is remote.
const (
	spanFlagsLocal  = 0x101 // SAMPLED | HAS_IS_REMOTE
	spanFlagsRemote = 0x301 // SAMPLED | HAS_IS_REMOTE | IS_REMOTE
)

// encoder holds the scratch space of request encoding.
type encoder struct {
	svcStamp []int32 // per service: the request it was last seen in
	svcGroup []int32 // per service: its group in that request
	groups   []group
	order    []int32 // span records by group
	sizes    []int32 // encoded size of each span record
	tr       []int32 // traces of the request, in order of first appearance in the body
	stamp    int32

	bodies slab[byte]
	traces slab[int32]
}

// group is one service's ResourceSpans in a request.
type group struct {
	svc   int32
	n     int32 // spans
	next  int32 // scratch: next free slot in order
	bytes int   // encoded spans with their tags and lengths
}

func newEncoder(services int, bodyMemory func(int) []byte) *encoder {
	e := &encoder{svcStamp: make([]int32, services), svcGroup: make([]int32, services)}
	e.bodies.memory = bodyMemory
	return e
}

// request encodes a batch and appends it to the schedule.
func (b *builder) request(recs []spanRec, at int64, conn int) {
	e := &b.enc
	e.stamp++
	e.groups = e.groups[:0]
	e.sizes = e.sizes[:0]
	e.tr = e.tr[:0]
	reqNo := int32(len(b.sched.Requests)) + 1
	for i := range recs {
		r := &recs[i]
		if e.svcStamp[r.svc] != e.stamp {
			e.svcStamp[r.svc] = e.stamp
			e.svcGroup[r.svc] = int32(len(e.groups))
			e.groups = append(e.groups, group{svc: int32(r.svc)})
		}
		g := &e.groups[e.svcGroup[r.svc]]
		size := b.spanSize(r)
		e.sizes = append(e.sizes, int32(size))
		g.n++
		g.bytes += 1 + protowire.SizeVarint(uint64(size)) + size
	}

	// Order spans by group (a counting sort, stable), and size the body.
	total, next := 0, int32(0)
	for i := range e.groups {
		g := &e.groups[i]
		g.next = next
		next += g.n
		total += sizeField(b.resourceSpansSize(g))
	}
	e.order = grow(e.order, len(recs))
	for i := range recs {
		g := &e.groups[e.svcGroup[recs[i].svc]]
		e.order[g.next] = int32(i)
		g.next++
	}

	body := e.bodies.alloc(total)
	pos := 0
	for i := range e.groups {
		g := &e.groups[i]
		cat := b.cat
		res := cat.resources[g.svc]
		scopeSpans := len(cat.scope) + g.bytes
		body = appendLen(append(body, 0x0a), b.resourceSpansSize(g)) // ExportTraceServiceRequest.resource_spans
		body = append(body, res...)
		body = appendLen(append(body, 0x12), scopeSpans) // ResourceSpans.scope_spans
		body = append(body, cat.scope...)
		for _, ri := range e.order[pos : pos+int(g.n)] {
			if st := &b.traces[recs[ri].trace]; st.stamp != reqNo {
				st.stamp = reqNo
				e.tr = append(e.tr, recs[ri].trace)
			}
			body = appendLen(append(body, 0x12), int(e.sizes[ri])) // ScopeSpans.spans
			before := len(body)
			body = b.appendSpan(body, &recs[ri])
			if len(body)-before != int(e.sizes[ri]) {
				panic("BUG: workload span size mismatch")
			}
		}
		pos += int(g.n)
		body = append(body, cat.schemaURL...)
	}
	if len(body) != total {
		panic("BUG: workload request size mismatch")
	}

	traces := append(e.traces.alloc(len(e.tr)), e.tr...)

	b.sched.Requests = append(b.sched.Requests, Request{
		At:     time.Duration(at),
		Conn:   conn,
		Spans:  len(recs),
		Traces: traces,
		Body:   body,
	})
	b.sched.Spans += len(recs)
	b.sched.Bytes += len(body)
}

func (b *builder) resourceSpansSize(g *group) int {
	cat := b.cat
	return len(cat.resources[g.svc]) + sizeField(len(cat.scope)+g.bytes) + len(cat.schemaURL)
}

// spanSize is the encoded size of a span record's Span message.
func (b *builder) spanSize(r *spanRec) int {
	o := &b.cat.ops[r.op]
	n := o.size
	if r.idx != 0 {
		n += 10 // parent_span_id
	}
	if r.flags&flagError != 0 {
		n += b.cat.errs[o.class].size
	}
	return n
}

// appendSpan appends a span record's Span message, without tag and length.
func (b *builder) appendSpan(dst []byte, r *spanRec) []byte {
	cat := b.cat
	o := &cat.ops[r.op]
	id := &b.manifest.Traces[r.trace].ID
	st := &b.traces[r.trace]
	start, end := b.base+uint64(r.start), b.base+uint64(r.end)

	dst = append(dst, 0x0a, 16) // trace_id
	dst = append(dst, id[:]...)
	sid := SpanID(*id, int(r.idx))
	dst = append(dst, 0x12, 8) // span_id
	dst = append(dst, sid[:]...)
	flags := uint32(spanFlagsLocal)
	if r.idx != 0 {
		pid := SpanID(*id, int(r.parent))
		dst = append(dst, 0x22, 8) // parent_span_id
		dst = append(dst, pid[:]...)
		if r.flags&flagRemoteParent != 0 {
			flags = spanFlagsRemote
		}
	}
	dst = append(dst, o.name...)
	dst = append(dst, 0x30, o.kind) // kind
	dst = append(dst, 0x39)         // start_time_unix_nano
	dst = binary.LittleEndian.AppendUint64(dst, start)
	dst = append(dst, 0x41) // end_time_unix_nano
	dst = binary.LittleEndian.AppendUint64(dst, end)
	dst = append(dst, o.attrs...)
	if o.httpCode {
		dst = append(dst, cat.codes[r.code]...)
	}
	dst = append(dst, cat.user(st.user)...)
	if o.reqID {
		dst = append(dst, cat.reqID...)
		hex.Encode(dst[len(dst)-hexIDLen:], id[:])
	}
	if r.flags&flagError != 0 {
		ep := &cat.errs[o.class]
		dst = append(dst, ep.attr...)
		at := len(dst) + ep.timeAt
		dst = append(dst, ep.event...)
		binary.LittleEndian.PutUint64(dst[at:], end-uint64(min(r.end-r.start, 1000))) // just before the end
		dst = append(dst, ep.status...)
	}
	dst = append(dst, 0x85, 0x01) // flags (field 16, fixed32)
	return binary.LittleEndian.AppendUint32(dst, flags)
}

// sizeField is the size of a length-delimited field of n bytes with a
// one-byte tag.
func sizeField(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

func appendLen(dst []byte, n int) []byte {
	if n < 0x80 {
		return append(dst, byte(n))
	}
	return protowire.AppendVarint(dst, uint64(n))
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/4)
	}
	return s[:n]
}

// slab hands out slices of large shared chunks: the schedule holds
// millions of small bodies, and one allocation per chunk instead of one per
// request keeps Build's allocation count and the heap's object count low.
// Chunks grow from slabMin to slabMax bytes, so small schedules stay small.
type slab[T any] struct {
	chunk []T
	next  int // size of the next chunk, in elements
	// memory, if set, supplies chunks (see Config.BodyMemory).
	memory func(n int) []T
}

// newChunk returns an empty slice with room for n elements.
func (s *slab[T]) newChunk(n int) []T {
	if s.memory != nil {
		return s.memory(n)[:0:n]
	}
	return make([]T, 0, n)
}

const (
	slabMin = 64 << 10
	slabMax = 4 << 20
)

// alloc returns an empty slice with capacity exactly n.
func (s *slab[T]) alloc(n int) []T {
	var zero T
	size := max(1, int(unsafe.Sizeof(zero)))
	if n > slabMax/size/8 {
		return s.newChunk(n)
	}
	if cap(s.chunk)-len(s.chunk) < n {
		if s.next == 0 {
			s.next = slabMin / size
		}
		for s.next < 8*n {
			s.next *= 2
		}
		s.chunk = s.newChunk(s.next)
		s.next = min(2*s.next, slabMax/size)
	}
	l := len(s.chunk)
	s.chunk = s.chunk[:l+n]
	return s.chunk[l : l : l+n]
}
