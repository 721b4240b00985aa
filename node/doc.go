// Package node wires one sampler: ingest -> decision (buffer, policies) ->
// export, plus the admin endpoint. It owns the user-facing configuration
// (sampler.yaml and the flags that override it) and the shutdown order,
// and keeps the configuration's secrets (the forward URL's credentials)
// out of its logs and admin endpoints.
// cmd/sampler and the benchmark's in-process mode start nodes through it.
//
// Concurrency: New starts every component; Shutdown stops them in order and
// is idempotent.
package node
