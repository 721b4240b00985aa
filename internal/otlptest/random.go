package otlptest

import (
	"math"
	"math/rand/v2"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// RandomRequest returns a request with random structure and contents: zero
// to a few resources and scopes (some missing, some repeated), spans with
// every field set at random, attribute values of every type. Every span has
// a valid (16-byte, non-zero) trace ID and an 8-byte span ID.
func RandomRequest(r *rand.Rand) *coltracepb.ExportTraceServiceRequest {
	req := &coltracepb.ExportTraceServiceRequest{}
	traces := make([][]byte, 1+r.IntN(4))
	for i := range traces {
		traces[i] = TraceID(r)
	}
	for range r.IntN(4) {
		rs := &tracepb.ResourceSpans{}
		if r.IntN(5) > 0 {
			rs.Resource = &resourcepb.Resource{Attributes: randomAttrs(r, 3), DroppedAttributesCount: uint32(r.IntN(2))}
		}
		if r.IntN(2) == 0 {
			rs.SchemaUrl = "https://opentelemetry.io/schemas/1.26.0"
		}
		for range r.IntN(4) {
			ss := &tracepb.ScopeSpans{}
			if r.IntN(4) > 0 {
				ss.Scope = &commonpb.InstrumentationScope{Name: randomString(r), Version: "1.2.3", Attributes: randomAttrs(r, 1)}
			}
			if r.IntN(3) == 0 {
				ss.SchemaUrl = "https://example.com/scope-schema"
			}
			for range r.IntN(6) {
				ss.Spans = append(ss.Spans, randomSpan(r, traces[r.IntN(len(traces))]))
			}
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		req.ResourceSpans = append(req.ResourceSpans, rs)
	}
	return req
}

func randomSpan(r *rand.Rand, traceID []byte) *tracepb.Span {
	start := r.Uint64()
	s := &tracepb.Span{
		TraceId:                traceID,
		SpanId:                 SpanID(r),
		Name:                   randomString(r),
		Kind:                   tracepb.Span_SpanKind(r.IntN(6)),
		StartTimeUnixNano:      start,
		EndTimeUnixNano:        start + uint64(r.IntN(1e9)),
		Attributes:             randomAttrs(r, 6),
		DroppedAttributesCount: uint32(r.IntN(2)),
		Flags:                  uint32(r.IntN(0x300)),
	}
	if r.IntN(3) > 0 {
		s.ParentSpanId = SpanID(r)
	}
	if r.IntN(3) == 0 {
		s.TraceState = "ot=th:8;rv:abcdef12345678,vendor=x"
	}
	if r.IntN(2) == 0 {
		s.Status = &tracepb.Status{Code: tracepb.Status_StatusCode(r.IntN(3)), Message: randomString(r)}
	}
	for range r.IntN(3) {
		s.Events = append(s.Events, &tracepb.Span_Event{TimeUnixNano: r.Uint64(), Name: "exception", Attributes: randomAttrs(r, 2)})
	}
	for range r.IntN(2) {
		s.Links = append(s.Links, &tracepb.Span_Link{TraceId: TraceID(r), SpanId: SpanID(r), Attributes: randomAttrs(r, 1), Flags: 0x100})
	}
	return s
}

func randomAttrs(r *rand.Rand, max int) []*commonpb.KeyValue {
	n := r.IntN(max + 1)
	kvs := make([]*commonpb.KeyValue, 0, n)
	for i := range n {
		kvs = append(kvs, &commonpb.KeyValue{Key: "k" + string(rune('a'+i)), Value: randomValue(r, 2)})
	}
	return kvs
}

func randomValue(r *rand.Rand, depth int) *commonpb.AnyValue {
	kinds := 5
	if depth > 0 {
		kinds = 7
	}
	switch r.IntN(kinds) {
	case 0:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: randomString(r)}}
	case 1:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: r.IntN(2) == 0}}
	case 2:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: r.Int64() - math.MaxInt64/2}}
	case 3:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: r.NormFloat64() * 1e6}}
	case 4:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte(randomString(r))}}
	case 5:
		arr := &commonpb.ArrayValue{}
		for range r.IntN(3) {
			arr.Values = append(arr.Values, randomValue(r, depth-1))
		}
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: arr}}
	default:
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: randomAttrs(r, 2)}}}
	}
}

func randomString(r *rand.Rand) string {
	const letters = "abcdefghijklmnopqrstuvwxyz/._-ÄÖ€"
	rs := []rune(letters)
	out := make([]rune, r.IntN(12))
	for i := range out {
		out[i] = rs[r.IntN(len(rs))]
	}
	return string(out)
}

// TraceID returns a random valid (non-zero) trace ID.
func TraceID(r *rand.Rand) []byte { return nonZeroID(r, 16) }

// SpanID returns a random non-zero span ID.
func SpanID(r *rand.Rand) []byte { return nonZeroID(r, 8) }

func nonZeroID(r *rand.Rand, n int) []byte {
	id := make([]byte, n)
	for {
		for i := range id {
			id[i] = byte(r.Uint32())
		}
		for _, b := range id {
			if b != 0 {
				return id
			}
		}
	}
}
