// Package traceview lets policies read the spans of a buffered trace: it
// implements policy.SpanSource over a buffer.Trace, reading fields and
// attributes from the raw OTLP bytes on demand (otlpwire), never decoding
// whole spans.
//
// A View is reused across traces by one goroutine (the decision loop): Reset
// is O(1), and the spans are indexed only when a rule first asks for them,
// so rules that need only the trace summary cost nothing here. Once warm a
// View does not allocate.
package traceview
