// Package otlpserver is the server side of OTLP's two transports at the
// byte level, shared by the sampler's receivers and the benchmark's sink: a
// gRPC TraceService whose Export hands over the request bytes (no
// generated-struct decode), and OTLP/HTTP body reading (gzip, size limits
// before and after decompression, room reserved in a caller's budget
// before bytes are read) and status responses as the OTLP
// specification prescribes.
//
// Concurrency: everything is safe for concurrent use; Buffers is a pool.
package otlpserver
