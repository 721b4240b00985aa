// Package otlpwire reads and writes OTLP trace requests as protobuf bytes,
// without decoding them into generated structs.
//
// A tail sampler needs a handful of fields per span (IDs, times, status, kind,
// name, a few attributes) and forwards everything else untouched. [Request.Scan]
// walks an ExportTraceServiceRequest with protowire and records, per span, those
// fields plus the span's raw bytes; the resource and scope of each ResourceSpans/
// ScopeSpans pair are copied once per group into a compact group key (see
// [GroupKey]), never per span. [Builder] writes a valid request back from group
// keys and raw spans by concatenation with fresh length prefixes.
// [MessageFields] reads any small protobuf message field by field (export
// responses, small control messages).
//
// Invariants: scanning never panics on any input (malformed input returns an
// error wrapping [ErrMalformed]); after warm-up a reused Request and Builder do
// not allocate. Slices in a Request alias the scanned bytes and the Request's
// own arena: they are valid until the next Scan or Reset.
//
// Concurrency: a Request or Builder is used by one goroutine at a time; the
// package-level functions are pure and safe for concurrent use.
package otlpwire
