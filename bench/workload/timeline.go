package workload

import (
	"math"
	"slices"
)

// The timeline replays the run in simulated time: spans are emitted when
// they end, into their connection's batch; a batch is flushed into a
// Request when full or BatchTimeout after its first span.
//
// Traces are generated in start order. Each trace's spans are sorted by end
// time and the traces merged: a min-heap holds one entry per trace in
// flight, keyed by the end of its next span. Before a trace starting at t is
// generated, every span ending at or before t is emitted: no later trace can
// have a span ending that early, so emission is in exact time order while
// the heap stays small (traces in flight: ~1k at 100k spans/s).

// traceState is the build-time state of one trace, by manifest index.
type traceState struct {
	user     int32
	rootConn int32
	// open counts the trace's non-root spans waiting in open batches of
	// connections other than the root's: the root is held back until it is
	// zero, so that the request carrying it is never sent before the
	// requests carrying the rest of the trace.
	open  int32
	stamp int32 // 1 + index of the last request listing the trace
}

// batch is one connection's SDK batch processor.
type batch struct {
	recs []spanRec
	gen  uint32 // bumped at every open and flush; stale deadlines do not match
}

// deadline is a pending timeout flush. Batches open in time order, so a
// FIFO of deadlines is sorted: no heap needed.
type deadline struct {
	at   int64
	conn int32
	gen  uint32
}

// minCursor is the least capacity of a cursor: most traces fit.
const minCursor = 64

// cursor is a trace in flight: its spans by end time, and the next one.
type cursor struct {
	recs []spanRec
	next int
}

// entry is a heap entry: the end of the next span of the trace in slot.
type entry struct {
	end  int64
	slot int32
}

type timeline struct {
	b *builder

	heap      []entry  // min-heap by end
	slots     []cursor // traces in flight, by slot
	free      []int32  // unused slots
	keys      []uint64 // scratch for sorting a trace
	conns     []batch
	deadlines []deadline
	head      int // first pending entry of deadlines

	waiting  map[int32]spanRec // roots held back, by trace
	released []spanRec         // roots to emit now
}

func newTimeline(b *builder) *timeline {
	return &timeline{b: b, conns: make([]batch, b.cfg.Connections), waiting: make(map[int32]spanRec)}
}

// pushTrace schedules the emission of a trace's spans (copied).
func (tl *timeline) pushTrace(recs []spanRec) {
	var slot int32
	if n := len(tl.free); n > 0 {
		slot, tl.free = tl.free[n-1], tl.free[:n-1]
	} else {
		slot = int32(len(tl.slots))
		tl.slots = append(tl.slots, cursor{})
	}
	c := &tl.slots[slot]
	if cap(c.recs) < len(recs) {
		c.recs = make([]spanRec, 0, max(len(recs), minCursor))
	}
	// Sort by end: packed keys (end, index) sort fast as plain integers.
	// Ends are below 2^48 ns (validateRun) and indexes below 2^16.
	keys := tl.keys[:0]
	for i := range recs {
		keys = append(keys, uint64(recs[i].end)<<16|uint64(i))
	}
	slices.Sort(keys)
	c.recs, c.next = c.recs[:len(recs)], 0
	for i, k := range keys {
		c.recs[i] = recs[k&0xffff]
	}
	tl.keys = keys

	h := append(tl.heap, entry{})
	i := len(h) - 1
	e := entry{end: c.recs[0].end, slot: slot}
	for i > 0 {
		p := (i - 1) / 2
		if h[p].end <= e.end {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = e
	tl.heap = h
}

// down restores the heap property from the root down.
func (tl *timeline) down() {
	h := tl.heap
	n := len(h)
	e := h[0]
	i := 0
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && h[c+1].end < h[c].end {
			c++
		}
		if e.end <= h[c].end {
			break
		}
		h[i] = h[c]
		i = c
	}
	h[i] = e
}

// advance emits every span ending at or before t.
func (tl *timeline) advance(t int64) {
	for len(tl.heap) > 0 && tl.heap[0].end <= t {
		slot := tl.heap[0].slot
		c := &tl.slots[slot]
		r := c.recs[c.next]
		if c.next++; c.next < len(c.recs) {
			tl.heap[0].end = c.recs[c.next].end
		} else {
			last := len(tl.heap) - 1
			tl.heap[0] = tl.heap[last]
			tl.heap = tl.heap[:last]
			tl.free = append(tl.free, slot)
		}
		if len(tl.heap) > 0 {
			tl.down()
		}
		tl.emit(r)
	}
}

// finish emits everything left and flushes every batch.
func (tl *timeline) finish() {
	tl.advance(math.MaxInt64)
	tl.flushDue(math.MaxInt64)
	for c := range tl.conns {
		if len(tl.conns[c].recs) > 0 {
			panic("BUG: workload batch left unflushed")
		}
	}
	if len(tl.waiting) > 0 {
		panic("BUG: workload root span never released")
	}
}

// emit hands a span that just ended to its batch processor.
func (tl *timeline) emit(r spanRec) {
	tl.flushDue(r.end)
	if r.idx == 0 && tl.b.traces[r.trace].open > 0 {
		tl.waiting[r.trace] = r
		return
	}
	tl.add(r, r.end)
	tl.settle(r.end)
}

// flushDue flushes, in time order, every batch whose timeout is at or
// before t.
func (tl *timeline) flushDue(t int64) {
	for tl.head < len(tl.deadlines) && tl.deadlines[tl.head].at <= t {
		d := tl.deadlines[tl.head]
		tl.head++
		if b := &tl.conns[d.conn]; b.gen == d.gen && len(b.recs) > 0 {
			tl.flush(int(d.conn), d.at)
			tl.settle(d.at)
		}
	}
	if tl.head > 1024 && tl.head*2 > len(tl.deadlines) {
		n := copy(tl.deadlines, tl.deadlines[tl.head:])
		tl.deadlines, tl.head = tl.deadlines[:n], 0
	}
}

// add puts a span into its connection's batch at time now.
func (tl *timeline) add(r spanRec, now int64) {
	conn := int(r.svc) % len(tl.conns)
	b := &tl.conns[conn]
	if len(b.recs) == 0 { // the batch opens: its timeout starts now
		b.gen++
		tl.deadlines = append(tl.deadlines, deadline{at: now + int64(tl.b.cfg.BatchTimeout), conn: int32(conn), gen: b.gen})
	}
	b.recs = append(b.recs, r)
	if st := &tl.b.traces[r.trace]; r.idx != 0 && int(st.rootConn) != conn {
		st.open++
	}
	if len(b.recs) >= tl.b.cfg.BatchSpans {
		tl.flush(conn, now)
	}
}

// flush turns a connection's batch into a Request sent at time at, and
// queues the roots it releases.
func (tl *timeline) flush(conn int, at int64) {
	b := &tl.conns[conn]
	tl.b.request(b.recs, at, conn)
	for i := range b.recs {
		r := &b.recs[i]
		st := &tl.b.traces[r.trace]
		if r.idx == 0 || int(st.rootConn) == conn {
			continue
		}
		if st.open--; st.open == 0 {
			if root, ok := tl.waiting[r.trace]; ok {
				delete(tl.waiting, r.trace)
				tl.released = append(tl.released, root)
			}
		}
	}
	b.recs = b.recs[:0]
	b.gen++
}

// settle emits the released roots at time now. Adding one may flush a batch
// and release more; the loop takes those too.
func (tl *timeline) settle(now int64) {
	for i := 0; i < len(tl.released); i++ {
		tl.add(tl.released[i], now)
	}
	tl.released = tl.released[:0]
}
