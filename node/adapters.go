package node

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/cluster"
	"github.com/tailsift/tailsift/decision"
	"github.com/tailsift/tailsift/export"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// The adapters between the components: each consumer states what it needs
// in its own vocabulary (decision.Exporter, cluster.Engine) and imports
// none of the others; these types translate, and hold no state.
//
// The assertions make a rename fail the build rather than quietly
// disconnect a component. export.Delivered matters most: the exporter
// finds it on the traces it is given at run time, and buffer.Trace
// implements it to delete the trace's write-ahead records once sent.
var (
	_ decision.Exporter  = keptTraces{}
	_ cluster.Engine     = engine{}
	_ cluster.MovedTrace = movedTrace{}
	_ export.Trace       = (*buffer.Trace)(nil)
	_ export.Delivered   = (*buffer.Trace)(nil)
)

// keptTraces adapts the exporter to the engine's interface.
type keptTraces struct{ *export.Exporter }

func (k keptTraces) ExportTrace(t *buffer.Trace, threshold uint64, rootAttrs []decision.Attribute) {
	var scratch [4]export.Attribute // the usual few stay on the stack
	k.Exporter.ExportTrace(t, keep(threshold, rootAttrs, scratch[:0]))
}

func (k keptTraces) ExportSpans(group otlpwire.Group, spans [][]byte, threshold uint64, rootAttrs []decision.Attribute) {
	var scratch [4]export.Attribute
	k.Exporter.ExportSpans(group, spans, keep(threshold, rootAttrs, scratch[:0]))
}

// keep converts the engine's account of a kept trace, appending the
// attributes to scratch.
func keep(threshold uint64, rootAttrs []decision.Attribute, scratch []export.Attribute) export.Keep {
	k := export.Keep{Threshold: threshold}
	if len(rootAttrs) > 0 {
		for _, a := range rootAttrs {
			scratch = append(scratch, export.Attribute(a))
		}
		k.RootAttributes = scratch
	}
	return k
}

// engine adapts the decision engine (and the traces of its buffer) to the
// cluster's interface. Consume is on the ingest path: it converts without
// allocating unless the spans were handed off with their arrival times.
type engine struct{ e *decision.Engine }

func (a engine) Consume(ctx context.Context, req *otlpwire.Request, in cluster.Input) error {
	din := decision.Input{Traces: in.Traces}
	if in.Arrivals != nil {
		din.Arrivals = make(map[[16]byte]decision.Arrival, len(in.Arrivals))
		for id, ar := range in.Arrivals {
			din.Arrivals[id] = decision.Arrival(ar)
		}
	}
	return a.e.ConsumeGrouped(ctx, req, din)
}

func (a engine) TakeMoved(moved func(id *[16]byte) bool, dst []cluster.MovedTrace) []cluster.MovedTrace {
	for _, t := range a.e.TakeMoved(moved, nil) {
		dst = append(dst, movedTrace{t})
	}
	return dst
}

// Decisions encodes the records into one allocation.
func (a engine) Decisions(moved func(id *[16]byte) bool, dst []cluster.Decision) []cluster.Decision {
	recs := a.e.Decisions(moved, nil)
	var arena []byte
	ends := make([]int, len(recs))
	for i := range recs {
		arena, _ = recs[i].AppendBinary(arena)
		ends[i] = len(arena)
	}
	start := 0
	for i := range recs {
		dst = append(dst, cluster.Decision{ID: recs[i].ID, Record: arena[start:ends[i]:ends[i]]})
		start = ends[i]
	}
	return dst
}

func (a engine) AdoptDecisions(recs [][]byte) error {
	out := make([]decision.Record, len(recs))
	for i, b := range recs {
		if err := out[i].UnmarshalBinary(b); err != nil {
			return err
		}
	}
	a.e.AdoptDecisions(out)
	return nil
}

func (a engine) SetShare(f float64) { a.e.SetShare(f) }

func (a engine) Explain(id [16]byte, node string) []byte {
	x := a.e.Explain(id)
	x.Node = node
	b, err := json.Marshal(x)
	if err != nil {
		panic("BUG: an explanation does not encode: " + err.Error())
	}
	return b
}

// movedTrace is a buffered trace on its way to its new owner. It is one
// pointer: as an interface value it takes no allocation.
type movedTrace struct{ t *buffer.Trace }

func (m movedTrace) TraceID() [16]byte { return m.t.ID }
func (m movedTrace) Arrival() cluster.Arrival {
	return cluster.Arrival{FirstSeen: m.t.FirstSeen, RootSeen: m.t.RootSeen}
}
func (m movedTrace) SpanCount() int                           { return int(m.t.SpanCount) }
func (m movedTrace) Spans() iter.Seq2[otlpwire.Group, []byte] { return m.t.Spans() }

// Cluster is the node's cluster membership (cluster.Cluster), with the
// explain API's answers read back into the engine's type.
type Cluster struct{ *cluster.Cluster }

// Explain asks the owner of trace id what it knows of the trace (see
// cluster.Cluster.Explain); Node names the node that answered.
func (c Cluster) Explain(ctx context.Context, id [16]byte) (decision.Explanation, error) {
	b, err := c.Cluster.Explain(ctx, id)
	if err != nil {
		return decision.Explanation{}, err
	}
	var x decision.Explanation
	if err := json.Unmarshal(b, &x); err != nil {
		return decision.Explanation{}, fmt.Errorf("explanation of %x: %w", id, err)
	}
	return x, nil
}
