// Package export forwards kept traces to one downstream destination: whole,
// batched into OTLP requests built from the raw span bytes, sent by a fixed
// pool of workers, retried with backoff, and accounted for span by span.
//
// Data flow: [Exporter.ExportTrace] and [Exporter.ExportSpans] add raw spans
// to the current batch (an otlpwire.Builder). A [Keep] says how the trace
// was kept: spans it changes (the sampling threshold in their tracestate,
// attributes on the root span) are rewritten into the batch's arena by
// appending protobuf fields, never by a re-encode; the others are added
// as they are. A batch that reaches Config.BatchMaxBytes, or whose first
// span is Config.BatchTimeout old, is built into one
// ExportTraceServiceRequest (concatenated bytes, never a re-encode) and
// offered to a bounded send queue. Config.Workers senders take
// requests off the queue and deliver them over OTLP/gRPC or OTLP/HTTP
// (protobuf) with otlpclient, which also classifies failures and draws the
// backoff, or as OTLP JSON lines to a writer.
//
// Invariants:
//   - Every accepted span ends Sent, or Failed with exactly one reason:
//     queue_full (the send queue was full), rejected (the destination refused
//     it, or its group key was malformed), retries_exhausted (still failing
//     after Config.RetryMaxElapsed), shutdown (Shutdown's deadline passed, or
//     it arrived after Shutdown), oversize (with its resource and scope it
//     exceeds Config.MaxRequestBytes: dropped before batching, never sent).
//     Accepted == Sent + Failed + Pending at every moment, and the metrics
//     agree with [Exporter.Stats].
//   - No request is larger than Config.MaxRequestBytes (the Builder's size
//     estimate, which is never less than the encoded size, is kept within
//     it).
//   - A trace passed to ExportTrace that implements [Delivered] is told
//     exactly once, after all of its spans ended Sent or Failed, whether all
//     were sent (a partial success fails every trace of its request, an
//     oversize span its trace).
//   - The spans of one Export call travel in one request, unless they alone
//     exceed Config.BatchMaxBytes.
//   - Memory is bounded: one batch being filled (about BatchMaxBytes, arena
//     copies included), at most QueueSize built requests queued and Workers
//     in flight, each at most MaxRequestBytes (BatchMaxBytes unless it holds
//     one span bigger than that).
//   - A span is written with a Keep's threshold iff the threshold is set
//     (1 to 2^56-1); the tracestate of a trace kept with probability 1 is
//     forwarded byte for byte.
//
// Concurrency: the Export methods and Stats are safe for concurrent use and
// never wait for the network: they hold one mutex while adding to the batch
// and, when it is full, while building the request and offering it to the
// queue without waiting. New starts a fixed set of goroutines: one flusher
// (BatchTimeout) and Config.Workers senders. Shutdown stops them all and
// waits for them. There is no goroutine, channel or timer per trace or span.
package export
