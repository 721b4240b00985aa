// Package sink is the benchmark's backend: it receives what the sampler under
// test forwards (OTLP/gRPC TraceService/Export and OTLP/HTTP POST /v1/traces,
// protobuf, optionally gzip), records which spans of which traces arrived and
// when, and classifies every trace of the run's manifest: complete,
// fragmented, duplicated or dropped, plus traces and spans the manifest does
// not know. It is how a benchmark fails loudly when traces are lost.
//
// Invariants:
//   - Requests are scanned with otlpwire, never decoded into generated
//     structs; span IDs are mapped back to span indexes with
//     workload.SpanIndex, so per trace the sink keeps one bitmap of Spans
//     bits, created on the trace's first span, and no per-span state.
//   - A span is counted once in SpansReceived, and is exactly one of: the
//     first copy of a manifest span, a duplicate copy (DuplicateSpans), or
//     an unexpected span (UnexpectedSpans).
//   - Every manifest trace not marked Undelivered is in exactly one of
//     Complete, Fragmented, Duplicated and Dropped, in exactly one class.
//   - A malformed request (InvalidArgument / 400) records nothing and is
//     counted in MalformedRequests.
//   - Before the first Expect the sink counts requests and spans but keeps
//     no per-trace state.
//
// Concurrency: each request is handled on its server's goroutine. Scanning
// happens outside any lock; the spans of one request are then recorded under
// the measurement's one mutex, taken once per request (recording costs tens
// of nanoseconds per span against hundreds for the scan, so the lock is held
// for a small fraction of the time even at 100k+ spans/s; see
// BenchmarkRecord/parallel). Progress reads atomics only. Expect swaps the
// measurement atomically: a request in flight during the swap is recorded in
// the old measurement and forgotten with it. Report holds the lock while it
// classifies. Shutdown stops both servers, waiting for requests in progress,
// and is idempotent. All methods of Sink are safe for concurrent use.
package sink
