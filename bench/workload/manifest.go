package workload

import (
	"encoding/binary"
	"sync/atomic"
	"time"
)

// Class is what a tail sampler should care about in a trace.
type Class uint8

// Trace classes, in the order a report lists them.
const (
	ClassError Class = iota // at least one span has status ERROR
	ClassSlow               // no error, duration at least the slow threshold
	ClassRest               // everything else
	NumClasses
)

func (c Class) String() string {
	switch c {
	case ClassError:
		return "error"
	case ClassSlow:
		return "slow"
	case ClassRest:
		return "rest"
	}
	return "unknown"
}

// Trace is the manifest entry of one generated trace.
type Trace struct {
	ID        [16]byte
	Spans     int32
	Error     bool          // some span has status ERROR
	Duration  time.Duration // root span duration (the root spans the whole trace)
	EndOffset time.Duration // when the last span (the root) ends, relative to the run's start
	// Undelivered is set by the sender when a request carrying spans of
	// this trace was finally refused: such a trace cannot be complete at
	// the sink through no fault of the engine.
	Undelivered Flag
}

// Flag is an atomic boolean with the methods of atomic.Bool. Unlike
// atomic.Bool it carries no noCopy marker, so a Trace may be passed by value
// to Manifest.Add without go vet's copylocks complaint; it must still not be
// copied while other goroutines use it.
type Flag struct{ v uint32 }

// Load atomically loads the flag.
func (f *Flag) Load() bool { return atomic.LoadUint32(&f.v) != 0 }

// Store atomically stores v.
func (f *Flag) Store(v bool) { atomic.StoreUint32(&f.v, b32(v)) }

// Swap atomically stores v and returns the previous value.
func (f *Flag) Swap(v bool) bool { return atomic.SwapUint32(&f.v, b32(v)) != 0 }

// CompareAndSwap executes the compare-and-swap operation on the flag.
func (f *Flag) CompareAndSwap(old, v bool) bool {
	return atomic.CompareAndSwapUint32(&f.v, b32(old), b32(v))
}

func b32(v bool) uint32 {
	if v {
		return 1
	}
	return 0
}

// Class returns the trace's class for a slow threshold.
func (t *Trace) Class(slow time.Duration) Class {
	switch {
	case t.Error:
		return ClassError
	case t.Duration >= slow:
		return ClassSlow
	}
	return ClassRest
}

// SpanID returns the ID of span i of the trace. Span IDs are derived from
// the trace ID so a sink can tell, with a bitmap and no per-span state,
// which spans of which trace arrived: bytes 0-5 repeat bytes 10-15 of the
// trace ID, bytes 6-7 hold i+1 (never zero).
func SpanID(trace [16]byte, i int) [8]byte {
	var id [8]byte
	copy(id[:6], trace[10:16])
	binary.BigEndian.PutUint16(id[6:], uint16(i+1))
	return id
}

// SpanIndex reverses SpanID: the span's index, or -1 if id was not made by
// SpanID for this trace.
func SpanIndex(trace [16]byte, id [8]byte) int {
	if [6]byte(id[:6]) != [6]byte(trace[10:16]) {
		return -1
	}
	return int(binary.BigEndian.Uint16(id[6:])) - 1
}

// MaxSpansPerTrace is the largest trace SpanID can number.
const MaxSpansPerTrace = 1<<16 - 1

// Manifest lists every trace a run sends. It is built before the run and
// read-only during it, except for Trace.Undelivered.
type Manifest struct {
	Traces []Trace
	index  map[[16]byte]int32
}

// NewManifest returns an empty manifest with room for n traces.
func NewManifest(n int) *Manifest {
	return &Manifest{Traces: make([]Trace, 0, n), index: make(map[[16]byte]int32, n)}
}

// Add appends a trace and returns its index. Not safe for concurrent use.
func (m *Manifest) Add(t Trace) int32 {
	i := int32(len(m.Traces))
	m.Traces = append(m.Traces, Trace{ID: t.ID, Spans: t.Spans, Error: t.Error, Duration: t.Duration, EndOffset: t.EndOffset})
	m.index[t.ID] = i
	return i
}

// Lookup returns the trace with ID id.
func (m *Manifest) Lookup(id [16]byte) (*Trace, bool) {
	i, ok := m.index[id]
	if !ok {
		return nil, false
	}
	return &m.Traces[i], true
}

// Spans returns the total number of spans in the manifest.
func (m *Manifest) Spans() int {
	n := 0
	for i := range m.Traces {
		n += int(m.Traces[i].Spans)
	}
	return n
}
