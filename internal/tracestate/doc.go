// Package tracestate edits W3C trace-context tracestate lists without
// decoding them into maps: it sets the OpenTelemetry consistent-sampling
// threshold (the "th" sub-key of the "ot" list member) on the tracestate of
// a kept span, so that downstream consumers can weigh the span by the
// inverse of its sampling probability.
//
// Rules followed (W3C Trace Context, OpenTelemetry "TraceState Handling" and
// "TraceState: Probability Sampling"):
//   - The modified "ot" member moves to the front of the list; every other
//     member keeps its bytes and order. A list holds at most [MaxMembers]
//     members: when adding "ot" would exceed that, the right-most members are
//     dropped. W3C's 512 characters are what a vendor should propagate at
//     least, not a maximum: a longer list is not truncated.
//   - Within "ot", "th" is written first and every other sub-key ("rv" and
//     any other) follows in its original order. The "ot" value stays within
//     [MaxOTValue] characters: a sub-key other than th that no longer fits
//     is dropped (rv always fits).
//   - An incoming valid "th" that is more restrictive (larger) than the new
//     one is kept: consistent sampling in succession keeps a trace at the
//     larger of the thresholds.
//   - A malformed "ot" member is replaced by a fresh one holding only "th";
//     other members are kept as they came, even if malformed.
//
// Invariants: no function panics on any input; the Append functions do not
// allocate when dst has room; output is valid UTF-8 when the input is.
//
// Concurrency: every function is pure and safe for concurrent use.
package tracestate
