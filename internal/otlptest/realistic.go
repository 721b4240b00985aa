package otlptest

import (
	"fmt"
	"math/rand/v2"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Batch describes a realistic request: spans of several traces from several
// services, interleaved as an SDK or collector batch processor sends them.
type Batch struct {
	Services       int // distinct resources in the request
	Traces         int // distinct traces in the request
	SpansPerTrace  int
	ErrorEvery     int // every n-th trace has an ERROR span; 0 for none
	AttrsPerSpan   int // typical HTTP server attributes, up to 8
	StartUnixNano  uint64
	SpanDurationNs uint64
}

// DefaultBatch is about 500 spans from 5 services, 8 attributes per span:
// a typical collector export.
func DefaultBatch() Batch {
	return Batch{Services: 5, Traces: 50, SpansPerTrace: 10, ErrorEvery: 20, AttrsPerSpan: 8,
		StartUnixNano: uint64(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano()), SpanDurationNs: 5e6}
}

// Request builds the batch. Spans of each trace are spread over the services
// and interleaved with other traces; span 0 of each trace is its root.
func (b Batch) Request(r *rand.Rand) *coltracepb.ExportTraceServiceRequest {
	req := &coltracepb.ExportTraceServiceRequest{}
	scopes := make([]*tracepb.ScopeSpans, b.Services)
	for i := range scopes {
		scopes[i] = &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", Version: "0.72.0"}}
		req.ResourceSpans = append(req.ResourceSpans, &tracepb.ResourceSpans{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
				Str("service.name", fmt.Sprintf("svc-%d", i)),
				Str("service.version", "1.4.2"),
				Str("host.name", fmt.Sprintf("ip-10-0-%d-17.ec2.internal", i)),
				Str("k8s.pod.name", fmt.Sprintf("svc-%d-7d9f8c6b5-x2x4q", i)),
				Str("telemetry.sdk.language", "go"),
			}},
			ScopeSpans: []*tracepb.ScopeSpans{scopes[i]},
			SchemaUrl:  "https://opentelemetry.io/schemas/1.26.0",
		})
	}
	type pending struct {
		id    []byte
		spans []*tracepb.Span
	}
	traces := make([]pending, b.Traces)
	for t := range traces {
		id := TraceID(r)
		var parent []byte
		for s := range b.SpansPerTrace {
			sp := b.span(r, id, parent, s, t)
			if s == 0 {
				parent = sp.SpanId
			}
			traces[t].spans = append(traces[t].spans, sp)
		}
		traces[t].id = id
	}
	// Interleave: round-robin over traces, each span to a service by position.
	for s := range b.SpansPerTrace {
		for t := range traces {
			svc := (t + s) % b.Services
			scopes[svc].Spans = append(scopes[svc].Spans, traces[t].spans[s])
		}
	}
	return req
}

func (b Batch) span(r *rand.Rand, traceID, parent []byte, idx, trace int) *tracepb.Span {
	start := b.StartUnixNano + uint64(idx)*1000
	sp := &tracepb.Span{
		TraceId:           traceID,
		SpanId:            SpanID(r),
		ParentSpanId:      parent,
		Name:              "GET /api/v1/orders/{id}",
		Kind:              tracepb.Span_SPAN_KIND_SERVER,
		StartTimeUnixNano: start,
		EndTimeUnixNano:   start + b.SpanDurationNs,
		Flags:             0x301,
	}
	attrs := []*commonpb.KeyValue{
		Str("http.request.method", "GET"),
		Str("http.route", "/api/v1/orders/{id}"),
		Int("http.response.status_code", 200),
		Str("server.address", "orders.internal"),
		Str("enduser.id", fmt.Sprintf("user-%06d", r.IntN(1e6))),
		Str("url.scheme", "https"),
		Str("network.protocol.version", "1.1"),
		Str("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
	}
	sp.Attributes = attrs[:min(b.AttrsPerSpan, len(attrs))]
	if b.ErrorEvery > 0 && trace%b.ErrorEvery == 0 && idx == b.SpansPerTrace-1 {
		sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "upstream timeout"}
	}
	return sp
}

// Str is a string attribute.
func Str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// Int is an integer attribute.
func Int(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}
