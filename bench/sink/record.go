package sink

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// traceRecord is what arrived of one trace since Expect.
type traceRecord struct {
	// trace is the manifest entry, nil for a trace the manifest does not
	// list (then only received counts).
	trace *workload.Trace
	// bits has one bit per span of the trace: set when a copy arrived.
	bits []uint64
	// received counts distinct manifest spans (or, for an unexpected
	// trace, every span).
	received int32
	// duplicates counts copies of spans after the first.
	duplicates int32
	// foreign counts spans whose ID is not SpanID(trace, i) for i < Spans.
	foreign int32
	// last is when the latest first copy arrived, relative to runStart.
	last time.Duration
}

// Allocation chunk sizes: records and bitmap words come from slabs so that
// a new trace costs a map insert, not an allocation.
const (
	recordChunk = 1024
	wordChunk   = 4096
)

// measurement is everything received since one Expect.
type measurement struct {
	manifest *workload.Manifest // nil before the first Expect: count only
	runStart time.Time

	// Progress, readable without the lock.
	spans       atomic.Int64
	requests    atomic.Int64
	malformed   atomic.Int64
	abandoned   atomic.Int64
	lastArrival atomic.Int64 // UnixNano of the latest request, 0 before any

	mu      sync.Mutex
	recs    map[[16]byte]*traceRecord
	records []traceRecord // slab: pointers into it stay valid
	words   []uint64      // slab for bitmaps
}

func newMeasurement(m *workload.Manifest, runStart time.Time) *measurement {
	ms := &measurement{manifest: m, runStart: runStart}
	if m != nil {
		ms.recs = make(map[[16]byte]*traceRecord)
	}
	return ms
}

// record records the spans of one well-formed request.
func (ms *measurement) record(spans []otlpwire.Span) {
	ms.mu.Lock()
	// The clock is read under the lock so arrival times are ordered like
	// the recording itself.
	now := time.Now()
	if ms.manifest != nil {
		ms.recordSpans(spans, now.Sub(ms.runStart))
	}
	ms.lastArrival.Store(now.UnixNano())
	ms.spans.Add(int64(len(spans)))
	ms.requests.Add(1)
	ms.mu.Unlock()
}

// recordSpans does the per-span work; ms.mu is held.
func (ms *measurement) recordSpans(spans []otlpwire.Span, at time.Duration) {
	var (
		rec    *traceRecord
		lastID [16]byte // zero is never a valid trace ID (otlpwire rejects it)
	)
	for i := range spans {
		s := &spans[i]
		// Spans of one trace tend to be adjacent: skip the map for them.
		if s.TraceID != lastID {
			lastID = s.TraceID
			rec = ms.recs[lastID]
			if rec == nil {
				rec = ms.newRecord(lastID)
			}
		}
		t := rec.trace
		if t == nil {
			rec.received++
			continue
		}
		idx := workload.SpanIndex(lastID, s.SpanID)
		if idx < 0 || idx >= int(t.Spans) {
			rec.foreign++
			continue
		}
		w, bit := idx>>6, uint64(1)<<(idx&63)
		if rec.bits[w]&bit != 0 {
			rec.duplicates++
			continue
		}
		rec.bits[w] |= bit
		rec.received++
		rec.last = at
	}
}

func (ms *measurement) newRecord(id [16]byte) *traceRecord {
	if len(ms.records) == cap(ms.records) {
		ms.records = make([]traceRecord, 0, recordChunk)
	}
	ms.records = append(ms.records, traceRecord{})
	rec := &ms.records[len(ms.records)-1]
	if t, ok := ms.manifest.Lookup(id); ok {
		rec.trace = t
		rec.bits = ms.bitmap(int(t.Spans))
	}
	ms.recs[id] = rec
	return rec
}

// bitmap returns zeroed room for n bits.
func (ms *measurement) bitmap(n int) []uint64 {
	words := (n + 63) / 64
	if cap(ms.words)-len(ms.words) < words {
		ms.words = make([]uint64, 0, max(wordChunk, words))
	}
	start := len(ms.words)
	ms.words = ms.words[:start+words]
	return ms.words[start : start+words : start+words]
}

// progress reads the counters.
func (ms *measurement) progress() Progress {
	p := Progress{
		Spans:             ms.spans.Load(),
		Requests:          ms.requests.Load(),
		MalformedRequests: ms.malformed.Load(),
		AbandonedRequests: ms.abandoned.Load(),
	}
	if ns := ms.lastArrival.Load(); ns != 0 {
		p.LastArrival = time.Unix(0, ns)
	}
	return p
}

// report classifies what was recorded.
func (ms *measurement) report(slow time.Duration) Report {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return classify(ms.manifest, ms.recs, slow, ms.progress())
}
