// Package otlpjson converts OTLP trace export requests between the OTLP/JSON
// encoding and protobuf bytes: [Decode] for OTLP/HTTP clients that send
// application/json, [Encode] for the stdout exporter and debugging output.
//
// It is off the hot path: the sampler works on protobuf bytes (package
// otlpwire), and only JSON clients and JSON output pay for this package.
// Exact conformance comes first. The rules are the proto3 JSON mapping with
// OTLP's changes: trace and span IDs are hex, not base64; enums are written
// as integers (names are accepted); unknown fields are ignored.
//
// Both directions are driven by a schema read from the generated
// descriptors at init (schema.go), so fields added in a newer OTLP proto
// release are converted without code changes; only the hex-ID rule (fields
// named trace_id, span_id, parent_span_id) is hand-written. Decode writes
// protobuf directly from JSON tokens, without generated structs, so it
// allocates almost nothing. Encode goes through proto.Unmarshal and
// protoreflect, which apply protobuf's parsing rules (split repeated fields,
// last value wins, merged messages) that a wire-level walk would have to
// redo.
//
// Invariants: Decode never panics; every error it returns for bad input
// wraps [ErrMalformed] and names the offending field's path and byte offset.
// Encode's output is deterministic, and Decode turns it back into an equal
// message.
//
// Concurrency: the functions are safe for concurrent use; the package's only
// state is the read-only schema.
package otlpjson
