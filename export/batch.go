package export

import (
	"encoding/hex"
	"slices"
	"time"

	"github.com/tailsift/tailsift/internal/otlpwire"
	"google.golang.org/protobuf/encoding/protowire"
)

// The batcher: Export calls add spans to the open batch (an otlpwire.Builder)
// under Exporter.mu; a full batch is built and offered to the send queue on
// the spot, and flushLoop sends a batch that stayed open for BatchTimeout.

// ExportTrace adds the spans of one kept trace to the current batch; they are
// sent together in one request unless they alone exceed BatchMaxBytes. A span
// too big for any request (MaxRequestBytes) is dropped and counted failed
// (oversize); the others are sent. It does not wait for the network. k says
// what to write into the spans (see [Keep]): spans it changes are written
// into the batch's arena, the others are added as they are. If t implements
// [Delivered] it is told when every span of it was sent or counted failed.
//
// The yielded slices are retained without a copy until the batch is built:
// the caller must not modify them after the call.
func (e *Exporter) ExportTrace(t Trace, k Keep) {
	c := e.scratch.Get().(*collector)
	t.Spans()(c.yield) // not a range loop: its closure would escape and allocate
	if k.edits() {
		c.edit(&k)
	}
	d, _ := t.(Delivered)
	e.add(c.refs, false, d)
	c.reset()
	e.scratch.Put(c)
}

// ExportSpans adds spans of one group (resource and scope) to the current
// batch, copying the group and the spans: it is for late spans of kept
// traces, whose bytes belong to an ingest request. k is the trace's [Keep],
// as for ExportTrace. The spans are sent together unless they alone exceed
// BatchMaxBytes; a span too big for any request is dropped, as for
// ExportTrace.
func (e *Exporter) ExportSpans(group otlpwire.Group, spans [][]byte, k Keep) {
	if len(spans) == 0 {
		return
	}
	c := e.scratch.Get().(*collector)
	for _, s := range spans {
		c.refs = append(c.refs, spanRef{group: group, span: s})
	}
	if k.edits() {
		c.edit(&k)
	}
	e.add(c.refs, true, nil)
	c.reset()
	e.scratch.Put(c)
}

// collector gathers the spans of one Export call, and makes its edits (see
// Keep), before the batch mutex is taken, so a slow iterator does not hold
// it. Pooled; yield is bound once so that passing it to an iterator does
// not allocate.
type collector struct {
	refs  []spanRef
	yield func(group otlpwire.Group, span []byte) bool
	buf   []byte // edits: trace_state fields, root attributes, rewritten spans
	ts    []byte // scratch for one new tracestate
}

func newCollector() any {
	c := &collector{}
	c.yield = func(group otlpwire.Group, span []byte) bool {
		c.refs = append(c.refs, spanRef{group: group, span: span})
		return true
	}
	return c
}

// maxScratch is the most buffer capacity a pooled collector keeps.
const maxScratch = 1 << 20

func (c *collector) reset() {
	clear(c.refs) // drop references to the caller's bytes
	c.refs = c.refs[:0]
	if cap(c.buf) > maxScratch {
		c.buf = nil // do not keep the buffer of an oversize trace
	}
}

// add puts refs into the current batch, in one request if they fit; copy
// says to copy the bytes into the batch's arena first. Edited spans are
// always written into the arena. d, if not nil, is told when every span
// is done (see Delivered).
func (e *Exporter) add(refs []spanRef, copy bool, d Delivered) {
	if len(refs) == 0 {
		if d != nil {
			d.Delivered(true)
		}
		return
	}
	e.accepted.Add(int64(len(refs)))

	size := estimate(refs)
	oversize := false
	// size counts every span with its group's framing: only a call bigger
	// than a request can hold a span too big for one.
	if size > e.cfg.MaxRequestBytes {
		refs, oversize = e.dropOversize(refs)
		if len(refs) == 0 {
			if d != nil {
				d.Delivered(false)
			}
			return
		}
		size = estimate(refs)
	}
	n := int64(len(refs))
	max := e.cfg.BatchMaxBytes
	split := size > max // only a trace bigger than a batch is split
	var p *parts
	if d != nil && (split || oversize) {
		p = newParts(d, oversize) // one allocation, for a rare trace
		d = p
	}
	e.mu.Lock()
	if e.closed {
		e.failClosed(n)
		e.mu.Unlock()
		if d != nil {
			d.Delivered(false)
		}
		return
	}
	if e.b.Spans() > 0 && e.b.Size()+size > max {
		e.flushLocked() // keep the trace whole: start a new batch for it
	}
	tracked, trackedSeq := false, uint64(0) // d is listed in batch trackedSeq
	var groupCopy, lastGroup otlpwire.Group
	copied := false
	for i := range refs {
		r := &refs[i]
		group, span := r.group, r.span
		// Splitting, count a group's framing with every span: requests
		// stay within max (if one span does).
		if split && e.b.Spans() > 0 && e.b.Size()+otlpwire.GroupSize(group)+spanFrame(r.spanLen()) > max {
			e.flushLocked()
			copied = false // the arena was recycled
		}
		if e.b.Spans() == 0 {
			e.batchStart = time.Now()
			select {
			case e.doorbell <- struct{}{}:
			default:
			}
		}
		if d != nil && (!tracked || trackedSeq != e.batchSeq) {
			if p != nil {
				p.n.Add(1)
			}
			e.trackLocked(d)
			tracked, trackedSeq = true, e.batchSeq
		}
		if copy {
			if !copied || !sameGroup(group, lastGroup) {
				lastGroup, copied = group, true
				groupCopy = otlpwire.Group{Resource: e.copyBytes(group.Resource), Scope: e.copyBytes(group.Scope)}
			}
			group = groupCopy
		}
		if copy || r.edited {
			span = e.copySpan(r)
		}
		e.b.Add(group, span)
	}
	if e.b.Size() >= max {
		e.flushLocked()
	}
	e.unlock()
	if p != nil {
		p.Delivered(true) // add's hold: the parts may all be done already
	}
}

// dropOversize removes from refs, in place, the spans that cannot fit in a
// request even alone, counts them failed (oversize) and reports whether
// there were any. A destination refuses such a request on every attempt:
// dropped here, the span is never sent, retried or queued ahead of others.
func (e *Exporter) dropOversize(refs []spanRef) ([]spanRef, bool) {
	kept := refs[:0]
	var dropped int64
	var largest []byte // for the log line
	largestSize := 0
	for i := range refs {
		r := &refs[i]
		if size := otlpwire.GroupSize(r.group) + spanFrame(r.spanLen()); size > e.cfg.MaxRequestBytes {
			if size > largestSize {
				largestSize, largest = size, r.span
			}
			dropped++
			continue
		}
		kept = append(kept, *r) // writes at or before i
	}
	if dropped == 0 {
		return refs, false
	}
	e.counts.failed.Add(dropped)
	e.m.spansFailed[reasonOversize].Add(float64(dropped))
	if ok, suppressed := e.oversizeLog.Allow(); ok {
		// An edited span's leading part still holds its trace ID (field 1).
		f, _ := otlpwire.SpanFields(largest)
		e.log.Warn("export dropped spans too large for one request (max_export_request_size)",
			"spans", dropped, "largest_bytes", largestSize, "max_request_bytes", e.cfg.MaxRequestBytes,
			"trace_id", hex.EncodeToString(f.TraceID[:]), "similar_lines_suppressed", suppressed)
	}
	return kept, true
}

// copyBytes copies b into the arena. Growing the arena leaves earlier copies
// where they are, so slices handed to the Builder stay valid.
func (e *Exporter) copyBytes(b []byte) []byte {
	start := len(e.arena)
	e.arena = append(e.arena, b...)
	return e.arena[start:len(e.arena):len(e.arena)]
}

// copySpan writes the span of r, with its edits, into the arena.
func (e *Exporter) copySpan(r *spanRef) []byte {
	e.arena = slices.Grow(e.arena, r.spanLen()) // one span, one place
	start := len(e.arena)
	e.arena = append(e.arena, r.span...)
	e.arena = append(e.arena, r.tail...)
	e.arena = append(e.arena, r.traceState...)
	e.arena = append(e.arena, r.attrs...)
	return e.arena[start:len(e.arena):len(e.arena)]
}

// flushLocked builds the batch and offers it to the queue without waiting;
// if the queue is full its spans are counted failed (queue_full).
func (e *Exporter) flushLocked() {
	n := int64(e.b.Spans())
	if n == 0 {
		return
	}
	if len(e.queue) == cap(e.queue) { // full: fail fast without building
		e.dropLocked(e.traces)
		e.traces = nil
		e.resetBatchLocked()
		e.queueFull(n)
		return
	}
	req := e.takeLocked()
	select {
	case e.queue <- req:
	default:
		e.dropLocked(req.traces)
		e.queueFull(req.spans)
	}
}

// takeLocked builds the batch into a new buffer and empties the batch.
func (e *Exporter) takeLocked() request {
	req := request{buf: e.b.AppendRequest(nil), spans: int64(e.b.Spans()), traces: e.traces}
	e.traces = nil
	e.resetBatchLocked()
	return req
}

func (e *Exporter) resetBatchLocked() {
	e.b.Reset()
	e.batchSeq++
	if cap(e.arena) > 2*e.cfg.BatchMaxBytes {
		e.arena = nil // do not keep the arena of an oversize batch
	}
	e.arena = e.arena[:0]
}

func (e *Exporter) queueFull(n int64) {
	e.m.requestsFail.Inc()
	e.counts.failed.Add(n)
	e.m.spansFailed[reasonQueueFull].Add(float64(n))
	if ok, suppressed := e.queueFullLog.Allow(); ok {
		e.log.Warn("export queue full, dropping batch", "spans", n,
			"queue_size", e.cfg.QueueSize, "similar_lines_suppressed", suppressed)
	}
}

// flushLoop sends each batch BatchTimeout after its first span, unless it was
// sent earlier for its size. It runs one reused timer, armed only while a
// batch is open.
func (e *Exporter) flushLoop() {
	defer e.flushWG.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-e.stopFlush:
			return
		case <-e.doorbell:
		}
		for {
			e.mu.Lock()
			if e.b.Spans() == 0 || e.closed {
				e.mu.Unlock()
				break
			}
			seq, due := e.batchSeq, e.batchStart.Add(e.cfg.BatchTimeout)
			e.mu.Unlock()

			timer.Reset(time.Until(due))
			select {
			case <-e.stopFlush:
				timer.Stop()
				return
			case <-timer.C:
			}
			e.mu.Lock()
			if e.batchSeq == seq && !e.closed { // still the same batch
				e.flushLocked()
			}
			e.unlock() // tells the traces of a batch dropped on a full queue
		}
	}
}

// estimate returns how much refs add to a request at most: Builder.Add's
// framing per span, and a group's framing per change of group (Builder
// counts it once per distinct group).
func estimate(refs []spanRef) (size int) {
	for i := range refs {
		r := &refs[i]
		if i == 0 || !sameGroup(r.group, refs[i-1].group) {
			size += otlpwire.GroupSize(r.group)
		}
		size += spanFrame(r.spanLen())
	}
	return size
}

// spanFrame is the size of a span of n bytes in a ScopeSpans.
func spanFrame(n int) int {
	return 1 + protowire.SizeVarint(uint64(n)) + n
}

func sameGroup(a, b otlpwire.Group) bool {
	return sameBytes(a.Resource, b.Resource) && sameBytes(a.Scope, b.Scope)
}

func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0] || string(a) == string(b))
}
