package export

import "sync/atomic"

// Telling Delivered traces that the exporter is done with them: a batch
// lists the traces with spans in it, the list travels with the built
// request, and whoever finishes the request (a worker, Shutdown, a full
// queue) calls them. A trace split across requests is listed in each
// behind a parts counter.

// traceList is the Delivered traces of one batch or request. Pooled: a
// batch of Delivered traces costs no allocation once warm.
type traceList struct {
	ts []Delivered
}

// maxPooledTraces bounds the lists kept for reuse.
const maxPooledTraces = 4096

// trackLocked lists d in the batch being filled.
func (e *Exporter) trackLocked(d Delivered) {
	if e.traces == nil {
		e.traces = e.lists.Get().(*traceList)
	}
	e.traces.ts = append(e.traces.ts, d)
}

// dropLocked keeps l, the traces of a batch that will not be sent, to be
// told by unlock.
func (e *Exporter) dropLocked(l *traceList) {
	if l == nil {
		return
	}
	if e.dropped == nil {
		e.dropped = l
		return
	}
	e.dropped.ts = append(e.dropped.ts, l.ts...)
	e.recycle(l)
}

// unlock releases e.mu, then tells the traces of batches dropped while it
// was held. Not under the lock: a Delivered that takes a lock of its own
// must not wait on e.mu, or a caller holding that lock in ExportTrace
// would deadlock with the flusher.
func (e *Exporter) unlock() {
	l := e.dropped
	e.dropped = nil
	e.mu.Unlock()
	e.finish(l, false)
}

// finish tells the traces of l that their request is done and recycles l.
func (e *Exporter) finish(l *traceList, sent bool) {
	if l == nil {
		return
	}
	for _, d := range l.ts {
		d.Delivered(sent)
	}
	e.recycle(l)
}

func (e *Exporter) recycle(l *traceList) {
	if cap(l.ts) > maxPooledTraces {
		return
	}
	clear(l.ts) // drop references to the caller's traces
	l.ts = l.ts[:0]
	e.lists.Put(l)
}

// parts stands in for a trace whose spans may end in several requests
// (bigger than a batch), or of which some spans already failed: it tells
// the trace once, when the last of them is done. n counts the requests
// still carrying spans of it, plus one held by add until every span is
// in a batch, so that an early part cannot finish the trace.
type parts struct {
	t      Delivered
	n      atomic.Int32
	failed atomic.Bool
}

func newParts(t Delivered, failed bool) *parts {
	p := &parts{t: t}
	p.n.Store(1)
	p.failed.Store(failed)
	return p
}

func (p *parts) Delivered(sent bool) {
	if !sent {
		p.failed.Store(true)
	}
	if p.n.Add(-1) == 0 {
		p.t.Delivered(!p.failed.Load())
	}
}
