// Package ingest receives OTLP traces: OTLP/gRPC TraceService/Export and
// OTLP/HTTP POST /v1/traces (protobuf and JSON, optionally gzip). Each
// request is scanned with otlpwire — the gRPC codec hands over the raw
// request bytes, so no generated-struct decode happens — and passed to a
// Consumer.
//
// Status codes follow the OTLP specification: malformed data is
// InvalidArgument / 400 and never retried; a request over the size limit,
// or one that needs more than the whole in-flight budget, is
// ResourceExhausted without RetryInfo / 413; an unknown content type or
// encoding is 415; when the receiver's limits or the consumer cannot take
// more, the answer is retryable: ResourceExhausted with RetryInfo / 429
// with Retry-After for overload, Unavailable / 503 for anything else
// (shutting down).
//
// Bounds: no request can make the receivers hold more than they were
// given. Requests reserve their bytes in one budget shared by both
// protocols (MaxInflightBytes) before the bytes are read — a gRPC stream
// the largest request it may carry, from the tap handle that admits it,
// until its message is in; an HTTP request step by step as its body
// arrives — and give them back when they end, however they end. Uploads
// on connections that have had no request accepted share half the budget,
// and an upload that stalls while others wait for its room is stopped
// (uploads.go). The
// requests handed to the consumer (MaxConcurrentRequests), a connection's
// gRPC streams, the open connections per listener (MaxConnections),
// headers and the time a request may take to arrive (RequestTimeout) are
// capped too.
//
// Concurrency: each request is handled on its server's goroutine; request
// buffers and scan state are pooled; the limits are atomic counters. The
// receivers start no goroutine of their own beyond the two servers' (and
// context.AfterFunc's, which gives back a stream's budget when its client
// leaves before its request arrived). Shutdown stops both servers, waiting
// for requests in progress.
package ingest
