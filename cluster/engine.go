package cluster

import (
	"context"
	"iter"

	"github.com/tailsift/tailsift/internal/otlpwire"
)

// Engine is this node's decision engine as the cluster calls it: the
// router gives it the traces this node owns, hand-off takes from it what
// moved to other owners and gives it what moved here, and Explain asks it
// about a trace. The cluster moves bytes and trace IDs: spans stay OTLP
// bytes, decisions are records only the engine reads, explanations are
// JSON. The composition root (package node) adapts the real engine to
// this interface.
//
// All methods must be safe for concurrent use: Consume is called from
// every ingest goroutine and from the peer service at once, TakeMoved and
// Decisions from a ring change while Consume runs.
type Engine interface {
	// Consume takes the traces of req that in selects, for this node to
	// decide; req has been grouped by trace (GroupByTrace). It may block
	// briefly (a write-ahead log sync) but never waits for room: when the
	// engine is full it returns an error, with a RetryAfter method if
	// trying again later helps, and has taken none of the spans. req, the
	// bytes it points into and in remain the caller's, which reuses them
	// once Consume returns: the engine copies what it keeps.
	Consume(ctx context.Context, req *otlpwire.Request, in Input) error

	// TakeMoved removes the buffered traces whose IDs moved reports and
	// appends them to dst. From then on they are the caller's: it sends
	// them to their new owner, or gives them back through Consume. It
	// waits for a decision in progress, so a trace is either decided here
	// or taken, never both. moved is called with engine locks held: it
	// must be quick and must not call the engine.
	TakeMoved(moved func(id *[16]byte) bool, dst []MovedTrace) []MovedTrace

	// Decisions appends the decisions the engine remembers for the trace
	// IDs moved reports, for late spans to follow them at the new owner.
	// It does not block. The records are the caller's; moved is called as
	// in TakeMoved.
	Decisions(moved func(id *[16]byte) bool, dst []Decision) []Decision

	// AdoptDecisions remembers decisions another node made, each record
	// as Decisions encoded it there (perhaps by another version). If one
	// cannot be read it returns an error and adopts none. It does not
	// block and does not retain recs.
	AdoptDecisions(recs [][]byte) error

	// SetShare tells the engine the fraction of the cluster's traces this
	// node owns. It does not block.
	SetShare(f float64)

	// Explain returns what the engine knows of trace id, a JSON object
	// that names node as the node that answered. It does not block; the
	// bytes are the caller's.
	Explain(id [16]byte, node string) []byte
}

// Input says which traces of a request Consume takes, and since when
// they are known.
type Input struct {
	// Traces lists indexes in req.Traces; nil selects them all.
	Traces []int32
	// Arrivals holds, for traces handed off by another node, when their
	// first span and first root span arrived there: their decision
	// timing does not restart. Traces not in it arrive now.
	Arrivals map[[16]byte]Arrival
}

// Arrival is when a trace's first span and first root span arrived, in
// unix nanoseconds on this node's clock; RootSeen 0 means no root span
// yet. Between nodes it travels as an age (see wire.go).
type Arrival struct {
	FirstSeen, RootSeen int64
}

// MovedTrace is a buffered trace that TakeMoved took for its new owner.
// It does not change while the cluster holds it, and is read by one
// goroutine at a time.
type MovedTrace interface {
	// TraceID returns the trace's ID.
	TraceID() [16]byte
	// Arrival returns when the trace's first span and first root span
	// arrived on this node.
	Arrival() Arrival
	// SpanCount returns how many spans Spans yields.
	SpanCount() int
	// Spans yields each span's group (resource and scope parts, as
	// otlpwire.Request.Scan makes them) and raw bytes (the encoded Span
	// message), in arrival order. The slices are immutable and valid
	// while the trace is held: the caller may keep references to them.
	Spans() iter.Seq2[otlpwire.Group, []byte]
}

// Decision is a remembered decision on its way to the new owner of its
// trace.
type Decision struct {
	ID [16]byte // the trace's, which names the new owner
	// Record is the decision as the engine encodes it; the cluster
	// carries it unread to the new owner's AdoptDecisions.
	Record []byte
}
