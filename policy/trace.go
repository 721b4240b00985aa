package policy

import (
	"math"
	"time"
)

// Trace is what a policy sees of one trace: a summary, and the spans
// through a [SpanSource]. The caller fills it from its own per-trace
// summary; [Set.Evaluate] only reads it and does not retain it.
type Trace struct {
	ID            [16]byte
	SpanCount     int
	ErrorCount    int    // spans with status ERROR
	HasRoot       bool   // a span without parent was seen
	StartUnixNano uint64 // min span start
	EndUnixNano   uint64 // max span end
	// Spans gives rules access to the spans; nil when only the summary is
	// known. Without it, conditions that need spans (root.*, services,
	// any_span, every_span, adaptive keys) are unknown, and a rule matches
	// only if its condition is true whatever they would have said: a rule
	// never matches because of spans it could not see, negated or not.
	Spans SpanSource
}

// Duration returns EndUnixNano - StartUnixNano: the time from the earliest
// span start to the latest span end. It is 0 when End < Start (no spans, or
// clock skew) and saturates at the largest time.Duration.
func (t *Trace) Duration() time.Duration {
	if t.EndUnixNano < t.StartUnixNano {
		return 0
	}
	d := t.EndUnixNano - t.StartUnixNano
	if d > math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(d)
}
