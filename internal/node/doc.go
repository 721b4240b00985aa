// Package node wires one sampler: ingest -> decision (buffer, policies) ->
// export, plus the admin endpoint. It owns the user-facing configuration
// (sampler.yaml and the flags that override it) and the shutdown order.
// cmd/sampler and the benchmark's in-process mode start nodes through it.
//
// Concurrency: New starts every component; Shutdown stops them in order and
// is idempotent.
package node
