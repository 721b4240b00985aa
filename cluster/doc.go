// Package cluster makes several sampler nodes one: membership by gossip
// (hashicorp/memberlist), a consistent-hash ring that names the owner of
// each trace ID, routing of spans to their owner, and hand-off of buffered
// traces and recent decisions when the ring changes.
//
// Any node accepts OTLP. After a request is scanned, the Router groups its
// traces by owner once: the local traces go to this node's engine, each
// peer's traces are batched and sent to the peer as an ordinary OTLP/gRPC
// export, marked with a hop count in gRPC metadata. A node that receives
// spans it does not own (its view of the ring is newer than the sender's)
// forwards them once more; the hop limit ends any loop.
//
// A span is acknowledged to its client once it is in the local buffer or in
// a bounded per-peer queue; a peer that cannot be reached after retries does
// not lose it: the spans are kept locally and counted. Hand-off is a small
// gRPC method (Handoff) whose payload is an OTLP request plus each trace's
// age and the decisions for moved trace IDs.
//
// Membership fails loudly, never into a cluster of one: each node needs a
// name unique in the cluster (by default its host name and gossip port),
// and a node is ready only once it has joined (reached a --join peer, or
// been joined by one) and no other node claims its name. A join that
// fails or a name claimed from another address is counted, logged at a
// limited rate, and given as the reason the node is not ready.
//
// The package knows nothing of policies: it moves bytes and trace IDs.
// It knows the decision engine only as Engine (engine.go), in its own
// small vocabulary: a scanned request with an Input to consume, moved
// traces as MovedTrace (ID, arrival times, spans), decisions as records
// it carries unread, explanations as JSON. The composition root (package
// node) adapts the engine and its buffer to it.
package cluster
