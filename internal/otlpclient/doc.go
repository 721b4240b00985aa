// Package otlpclient sends OTLP trace export requests to one endpoint and
// says what happened. It is the one place in the project that dials a
// destination: the exporter's OTLP destinations and the cluster's peer
// links both use it.
//
// A [Client] speaks OTLP/gRPC (a gRPC target) or OTLP/HTTP with protobuf
// bodies (an http:// or https:// URL). Requests and responses are bytes:
// gRPC messages pass through rawcodec and the partial success of a
// response is read with otlpwire, so nothing is decoded into generated
// structs. [Client.Invoke] makes other unary calls over the same gRPC
// connection (the cluster's peer service).
//
// Invariants:
//   - Every failed call returns an [*Error] classified as the OTLP
//     specification says (see [Classify]): for gRPC, CANCELLED,
//     DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS
//     are retryable, RESOURCE_EXHAUSTED only with RetryInfo, every other
//     code never; for HTTP, 429, 502, 503 and 504 and transport errors are
//     retryable, every other status never. A server's hint (RetryInfo,
//     Retry-After) is carried along, never negative.
//   - A [Backoff] wait is drawn with full jitter and is never shorter than
//     the server's hint: the hint is a floor, not a replacement.
//   - The client never retries by itself; each call is one attempt, and the
//     caller owns the policy (how long to retry, what to do on failure).
//
// Concurrency: a Client is safe for concurrent use; gRPC multiplexes calls
// over one connection, OTLP/HTTP keeps up to Config.MaxIdleConns idle
// connections. The client starts no goroutine of its own beyond those of
// grpc-go and net/http, which Close ends. A Backoff belongs to one retry
// loop.
package otlpclient
