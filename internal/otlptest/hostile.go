package otlptest

import (
	"encoding/binary"
	"fmt"
	"strings"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Hostile names a request shape that costs a receiver more than its size
// if the receiver is careless: the regression cases of the hardening work.
type Hostile int

const (
	// EmptyScopes: one large resource, then as many empty ScopeSpans
	// (2 bytes each) as fit. A scanner that copies the resource per
	// ScopeSpans needs resource size × count bytes.
	EmptyScopes Hostile = iota
	// DistinctScopes: one large resource, then ScopeSpans each with its
	// own scope name and one minimal span.
	DistinctScopes
	// ManyResources: one trace whose every span has a resource of its
	// own (the "trace with 100,000 resources").
	ManyResources
	// ManyTraces: minimal spans, each of its own trace.
	ManyTraces
)

func (h Hostile) String() string {
	return [...]string{"empty-scopes", "distinct-scopes", "many-resources", "many-traces"}[h]
}

// HostileShapes lists every Hostile shape.
var HostileShapes = []Hostile{EmptyScopes, DistinctScopes, ManyResources, ManyTraces}

// HostileRequest builds a request of shape h of about size bytes. traceID
// seeds the trace IDs (the first 8 bytes are kept, the rest count up).
// base numbers the request's spans, scopes and resources from base on, so
// that requests built with different bases do not repeat them.
func HostileRequest(h Hostile, size int, traceID [16]byte, base int) *coltracepb.ExportTraceServiceRequest {
	span := func(i int) *tracepb.Span {
		i += base
		tid := traceID
		if h == ManyTraces {
			binary.BigEndian.PutUint64(tid[8:], binary.BigEndian.Uint64(tid[8:])+uint64(i))
		}
		sid := make([]byte, 8)
		binary.BigEndian.PutUint64(sid, uint64(i)+1)
		// Not roots: a root would make the trace due at root_wait, and the
		// shapes are about what a trace costs while it is buffered.
		return &tracepb.Span{TraceId: tid[:], SpanId: sid, ParentSpanId: []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1},
			Name: "x", StartTimeUnixNano: 1, EndTimeUnixNano: 2}
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	switch h {
	case EmptyScopes, DistinctScopes:
		big := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			Str("service.name", "hostile"), Str("padding", strings.Repeat("r", size/4)),
		}}
		rs := &tracepb.ResourceSpans{Resource: big}
		n := (size - size/4) / 2
		if h == DistinctScopes {
			n = (size - size/4) / 40
		}
		for i := range n {
			if h == EmptyScopes {
				rs.ScopeSpans = append(rs.ScopeSpans, &tracepb.ScopeSpans{})
				continue
			}
			rs.ScopeSpans = append(rs.ScopeSpans, &tracepb.ScopeSpans{
				Scope: &commonpb.InstrumentationScope{Name: fmt.Sprint(base + i)},
				Spans: []*tracepb.Span{span(i)},
			})
		}
		req.ResourceSpans = []*tracepb.ResourceSpans{rs}
	case ManyResources:
		for i := range size / 70 {
			res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{Str("service.name", fmt.Sprint("s", base+i))}}
			req.ResourceSpans = append(req.ResourceSpans, &tracepb.ResourceSpans{Resource: res,
				ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span(i)}}}})
		}
	case ManyTraces:
		ss := &tracepb.ScopeSpans{}
		for i := range size / 40 {
			ss.Spans = append(ss.Spans, span(i))
		}
		req.ResourceSpans = []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{ss}}}
	}
	return req
}
