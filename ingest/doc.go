// Package ingest receives OTLP traces: OTLP/gRPC TraceService/Export and
// OTLP/HTTP POST /v1/traces (protobuf and JSON, optionally gzip). Each
// request is scanned with otlpwire — the gRPC codec hands over the raw
// request bytes, so no generated-struct decode happens — and passed to a
// Consumer.
//
// Status codes follow the OTLP specification: malformed data is
// InvalidArgument / 400 and never retried; a request over the size limit is
// ResourceExhausted (gRPC's own limit) / 413; an unknown content type or
// encoding is 415; when the consumer cannot take more, the answer is
// retryable: ResourceExhausted with RetryInfo / 429 with Retry-After for
// overload, Unavailable / 503 for anything else (shutting down).
//
// Concurrency: each request is handled on its server's goroutine; request
// buffers and scan state are pooled. Shutdown stops both servers, waiting
// for requests in progress.
package ingest
