// Package workload generates the benchmark's load: traces with realistic
// shapes, encoded before the timed phase into the OTLP requests an SDK's
// batch processor would send, with a manifest of every trace.
//
// # Job
//
// [Build] turns a [Config], a rate and a duration into a [Schedule]: every
// ExportTraceServiceRequest of the run, pre-encoded, with the time and
// connection to send it on, and a [Manifest] listing each trace (ID, span
// count, error, duration, end). The sender only replays bytes, so the
// generator costs almost no CPU while the engine is measured; the sink
// checks what arrives against the manifest.
//
// # Realism model
//
// Services: Config.Services service instances, each a resource
// (service.name, service.version, service.instance.id, host.name,
// k8s.pod.name, deployment.environment, telemetry.sdk.*) with five REST
// routes, a database and two in-process operations. The first fifth of the
// services (at least one) are entry points; a service calls only services
// of higher index that are not entry points (a layered, acyclic call graph).
//
// Arrivals: traces start as a Poisson process (exponential gaps) at
// rate / E[spans per trace] traces per second, E taken exactly over the
// distributions below.
//
// Size: an ordinary trace has 2 + min(X, 10·MeanSpans−2) spans, X geometric
// with mean MeanSpans−2 (mean MeanSpans within 0.1%); a share LargeShare of
// traces instead has uniform LargeMin..LargeMax spans.
//
// Tree: the root is a SERVER span of an entry service on a weighted route
// (GET item 40%, GET list 25%, POST 15%, PUT 12%, DELETE 8%). Each further
// span attaches to a uniformly chosen SERVER or INTERNAL span whose level
// (root = 1) is below MaxDepth: with probability 0.35 as a call to another
// service (a
// CLIENT span in the caller and a SERVER span in the callee, flagged as
// having a remote parent), 0.25 a database CLIENT span (a leaf), otherwise
// an INTERNAL span. Each child's interval lies strictly inside its parent's
// (calls span 20–90% of the parent, the callee 85–98% of the call, database
// spans 2–30%, internal work 10–80%, at a uniform offset); siblings overlap
// freely. So every child ends before its parent and the root ends last.
//
// Durations: a share TailShare of traces lasts TailMin·e^(0.4·|Z|) (median
// ≈1.3×TailMin, capped at 20×TailMin); the others are log-normal with sigma
// 0.8, conditioned on lasting less than TailMin, with their median exactly
// MedianDuration (the location is solved for; it is ln MedianDuration when
// TailMin ≫ MedianDuration).
//
// Status: a share ErrorShare of traces has one span with status ERROR
// (message, error.type and an "exception" event): never the root nor the
// client side of a call; an HTTP span then answers 500, as does the client
// calling it. Roots answer 4xx in 3% of traces, calls 404 in 2%; otherwise
// each route's usual 200/201/204.
//
// Attributes: 8 per span (9 on the error span), after the semantic
// conventions: HTTP server spans carry http.request.method, http.route,
// url.scheme, server.address, user_agent.original,
// http.response.status_code, enduser.id and the propagated
// http.request.header.x-request-id (the trace ID); HTTP clients carry
// url.template, url.full, server.address/port and network.protocol.version;
// database spans db.system.name, db.namespace, db.operation.name,
// db.collection.name, db.query.text and server.address/port; internal spans
// code.* and app.* attributes. enduser.id comes from a pool of 10,000 users,
// skewed towards a few heavy ones, and is the same on every span of a trace.
//
// Emission: as in an OpenTelemetry SDK, a span is emitted when it ends,
// into its service's connection's batch (service % Connections), flushed at
// BatchSpans spans or BatchTimeout after the batch's first span;
// Request.At is the flush time. A request holds one ResourceSpans with one
// ScopeSpans per service. So a trace's spans arrive spread over several
// requests and times, and each request mixes spans of many traces.
//
// Root last: a root span is handed to its batch only once every request
// carrying the trace's other spans has been flushed (spans waiting in the
// root's own batch do not hold it back; they leave together). So the
// request carrying a root never goes out before any other request of its
// trace, which the engine's root_wait readiness rule relies on. In
// production, exporters of different processes race, and a child can
// arrive after its root; this generator deliberately does not model that.
// The hold-back delays a root by at most one BatchTimeout more: at 100k
// spans/s 0.4% of roots are held past their own batch timeout, at 2k
// spans/s about a third (by ~80ms).
//
// IDs: trace IDs are 16 uniform random bytes from the seed (non-zero,
// unique in the run: samplers take randomness from the low 7 bytes); span
// IDs are [SpanID](trace, i), span 0 being the root, so the sink can check
// completeness with a bitmap.
//
// # Encoding
//
// Spans are written with protowire-style appends from pieces encoded once
// per Build (resources, scope, each operation's name and fixed attributes,
// status-code and user attributes, error parts), patching only IDs, times,
// status and the request ID. Sizes are computed before writing, so each
// body is written once into memory of exactly its size, carved from shared
// slabs: a few allocations per hundred requests, about the wire size
// (≈400 bytes) per span, plus a 32-byte record per span in flight while
// building. Build takes about 0.4–0.6 µs per span on the reference machine
// when its memory is warm; the first large Build of a fresh VM pays for
// first-touch page faults on top (up to ~1.7 µs per span for 4M spans).
//
// # Determinism and concurrency
//
// Build is pure: the same Config (Seed included), start, rate and duration
// give a byte-identical Schedule; start only shifts timestamps. It uses no
// goroutines and no global state, so Builds may run concurrently. A
// Schedule is read-only once built (bodies share memory: never modify one),
// except Manifest Trace.Undelivered, which the sender sets atomically.
package workload
