// Package node is the composition root: it wires one sampler, and it is
// the one package that imports every other (imports_test.go at the
// repository root holds the rules). Data flows one way:
//
//	clients --OTLP--> ingest --scanned request--> cluster.Router
//	                                                 | owner is a peer: forward (OTLP, internal/otlpclient)
//	                                                 v owner is this node
//	                                 decision.Engine --> buffer (memory, spill, log)
//	                                        | due trace: policy.Set decides
//	                                        v kept
//	                                 export.Exporter --OTLP--> destination
//
// node owns the user-facing configuration (sampler.yaml and the flags that
// override it: Config), maps it onto each component's own Config, adapts
// the components to the small interfaces their callers define
// (adapters.go: the engine is ingest's Consumer and cluster's Engine, a
// buffered trace is cluster's MovedTrace and export's Trace, the exporter
// is the engine's Exporter), serves the admin endpoint, and stops everything in data-path
// order (see Shutdown): leave the cluster, stop ingest, hand off and drain
// the forward queues, decide what is buffered, flush the exports, close
// the store and the admin endpoint. It keeps the
// configuration's secrets (the forward URL's credentials) out of its logs
// and admin endpoints. cmd/sampler and the bench's in-process mode start
// nodes through it.
//
// Where a change goes:
//   - a new receiver (a protocol in): a file in ingest that turns its
//     requests into otlpwire.Request values for the same Consumer;
//   - a new destination: a sender in export (or internal/otlpclient for
//     another OTLP transport); export's batching and retry stay as they are;
//   - a new setting: a field of Config (its YAML key as the tag), one
//     entry in Settings (settings.go: default, help; the flag, -h and the
//     README table follow from it, and tests say what is missing), and its
//     use, mapped onto the component's Config in config.go;
//   - a new policy rule type: a row of policy's rule table and a compile
//     function (see policy/rules.go); nothing outside policy changes.
//
// Concurrency: New starts every component; Shutdown stops them in order
// and is idempotent.
package node
