package otlpwire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// regroup is the reference for what Builder must produce: spans under equal
// (resource, schema) share a ResourceSpans and under equal (scope, schema) a
// ScopeSpans, both in order of first appearance; empty groups vanish.
func regroup(req *coltracepb.ExportTraceServiceRequest) *coltracepb.ExportTraceServiceRequest {
	out := &coltracepb.ExportTraceServiceRequest{}
	sameRes := func(a, b *tracepb.ResourceSpans) bool {
		return proto.Equal(a.Resource, b.Resource) && a.SchemaUrl == b.SchemaUrl
	}
	sameScope := func(a, b *tracepb.ScopeSpans) bool {
		return proto.Equal(a.Scope, b.Scope) && a.SchemaUrl == b.SchemaUrl
	}
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			if len(ss.Spans) == 0 {
				continue
			}
			var dstRS *tracepb.ResourceSpans
			for _, o := range out.ResourceSpans {
				if sameRes(o, rs) {
					dstRS = o
				}
			}
			if dstRS == nil {
				dstRS = &tracepb.ResourceSpans{Resource: rs.Resource, SchemaUrl: rs.SchemaUrl}
				out.ResourceSpans = append(out.ResourceSpans, dstRS)
			}
			var dstSS *tracepb.ScopeSpans
			for _, o := range dstRS.ScopeSpans {
				if sameScope(o, ss) {
					dstSS = o
				}
			}
			if dstSS == nil {
				dstSS = &tracepb.ScopeSpans{Scope: ss.Scope, SchemaUrl: ss.SchemaUrl}
				dstRS.ScopeSpans = append(dstRS.ScopeSpans, dstSS)
			}
			dstSS.Spans = append(dstSS.Spans, ss.Spans...)
		}
	}
	return out
}

// TestScanBuildRoundTrip is the property test: scanning a random request and
// building it back from group keys and raw spans gives the same request, up
// to regrouping.
func TestScanBuildRoundTrip(t *testing.T) {
	var req Request
	var b Builder
	for seed := range uint64(2000) {
		orig := otlptest.RandomRequest(rand.New(rand.NewPCG(seed, 7)))
		if err := req.Scan(marshal(t, orig)); err != nil {
			t.Fatalf("seed %d: Scan: %v", seed, err)
		}
		b.Reset()
		for i := range req.Spans {
			b.Add(req.Groups[req.Spans[i].Group], req.Spans[i].Raw)
		}
		built := b.AppendRequest(nil)
		if b.Size() < len(built)/2 || b.Size() > len(built)*2 {
			t.Errorf("seed %d: Size() = %d, built %d bytes", seed, b.Size(), len(built))
		}
		var got coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(built, &got); err != nil {
			t.Fatalf("seed %d: built request does not parse: %v", seed, err)
		}
		if want := regroup(orig); !proto.Equal(&got, want) {
			t.Fatalf("seed %d: round trip differs\n got: %v\nwant: %v", seed, &got, want)
		}
	}
}

// TestScanFields checks every indexed field against the generated structs.
func TestScanFields(t *testing.T) {
	var req Request
	for seed := range uint64(500) {
		orig := otlptest.RandomRequest(rand.New(rand.NewPCG(seed, 9)))
		if err := req.Scan(marshal(t, orig)); err != nil {
			t.Fatal(err)
		}
		i := 0
		for _, rs := range orig.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, want := range ss.Spans {
					got := req.Spans[i]
					i++
					if !bytes.Equal(got.TraceID[:], want.TraceId) || !bytes.Equal(got.SpanID[:], want.SpanId) {
						t.Fatalf("seed %d span %d: ids %x/%x, want %x/%x", seed, i, got.TraceID, got.SpanID, want.TraceId, want.SpanId)
					}
					if got.IsRoot() != (len(want.ParentSpanId) == 0) || (!got.IsRoot() && !bytes.Equal(got.ParentSpanID[:], want.ParentSpanId)) {
						t.Fatalf("seed %d span %d: parent %x, want %x", seed, i, got.ParentSpanID, want.ParentSpanId)
					}
					if f, _ := SpanFields(got.Raw); string(f.Name) != want.Name || got.Kind != int32(want.Kind) ||
						got.StartUnixNano != want.StartTimeUnixNano || got.EndUnixNano != want.EndTimeUnixNano ||
						got.StatusCode != int32(want.GetStatus().GetCode()) {
						t.Fatalf("seed %d span %d: got %+v, want %v", seed, i, got, want)
					}
					if got.IsError() != (want.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR) {
						t.Fatalf("seed %d span %d: IsError = %v", seed, i, got.IsError())
					}
					if !bytes.Equal(got.Raw, marshal(t, want)) {
						t.Fatalf("seed %d span %d: raw bytes differ from the span's encoding", seed, i)
					}
					res, _ := proto.Marshal(rs.Resource)
					if rs.Resource != nil && !bytes.Equal(GroupResource(req.Groups[got.Group].Resource), res) {
						t.Fatalf("seed %d span %d: GroupResource differs from the resource", seed, i)
					}
				}
			}
		}
		if i != len(req.Spans) {
			t.Fatalf("seed %d: scanned %d spans, request has %d", seed, len(req.Spans), i)
		}
	}
}

func TestGroupByTrace(t *testing.T) {
	var req Request
	for seed := range uint64(300) {
		orig := otlptest.RandomRequest(rand.New(rand.NewPCG(seed, 3)))
		if err := req.Scan(marshal(t, orig)); err != nil {
			t.Fatal(err)
		}
		req.GroupByTrace()
		seen := make(map[int32]bool)
		for ti, run := range req.Traces {
			prev := int32(-1)
			for _, si := range req.TraceSpans(ti) {
				if req.Spans[si].TraceID != run.ID {
					t.Fatalf("seed %d: span %d of trace %x has trace ID %x", seed, si, run.ID, req.Spans[si].TraceID)
				}
				if si <= prev {
					t.Fatalf("seed %d: spans of a trace out of request order", seed)
				}
				prev = si
				seen[si] = true
			}
			for tj := range ti {
				if req.Traces[tj].ID == run.ID {
					t.Fatalf("seed %d: trace %x listed twice", seed, run.ID)
				}
			}
		}
		if len(seen) != len(req.Spans) {
			t.Fatalf("seed %d: grouped %d spans of %d", seed, len(seen), len(req.Spans))
		}
	}
}

func TestScanRejectsMalformed(t *testing.T) {
	span := func(mut func(*tracepb.Span)) []byte {
		s := &tracepb.Span{TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8), Name: "x"}
		mut(s)
		return marshal(t, &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
			ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{s}}}}}})
	}
	valid := span(func(*tracepb.Span) {})
	cases := map[string][]byte{
		"short trace id":     span(func(s *tracepb.Span) { s.TraceId = s.TraceId[:15] }),
		"zero trace id":      span(func(s *tracepb.Span) { s.TraceId = make([]byte, 16) }),
		"missing trace id":   span(func(s *tracepb.Span) { s.TraceId = nil }),
		"missing span id":    span(func(s *tracepb.Span) { s.SpanId = nil }),
		"long span id":       span(func(s *tracepb.Span) { s.SpanId = make([]byte, 9) }),
		"bad parent id":      span(func(s *tracepb.Span) { s.ParentSpanId = []byte{1, 2, 3} }),
		"truncated":          valid[:len(valid)-1],
		"bad tag":            {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"field 0":            {0x00, 0x00},
		"resource_spans int": {0x08, 0x01},
		"length past end":    {0x0a, 0x05, 0x01},
		// span.start_time as varint instead of fixed64
		"wrong time type": append([]byte{0x0a, 0x1c, 0x12, 0x1a, 0x12, 0x18}, append(append([]byte{0x0a, 0x10}, bytes.Repeat([]byte{1}, 16)...), 0x12, 0x02, 0x38, 0x01)...),
	}
	var req Request
	for name, in := range cases {
		err := req.Scan(in)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Scan error = %v, want ErrMalformed", name, err)
		}
		if len(req.Spans) != 0 || len(req.Groups) != 0 {
			t.Errorf("%s: failed Scan left %d spans, %d groups", name, len(req.Spans), len(req.Groups))
		}
	}
	if err := req.Scan(valid); err != nil || len(req.Spans) != 1 {
		t.Fatalf("valid request: err %v, %d spans", err, len(req.Spans))
	}
	// Every truncation of a valid request is either an error or a valid
	// prefix, never a panic. A small request cuts every kind of field.
	small := otlptest.DefaultBatch()
	small.Traces, small.Services = 3, 2
	full := marshal(t, small.Request(rand.New(rand.NewPCG(1, 1))))
	for n := range len(full) {
		_ = req.Scan(full[:n]) // must not panic
	}
}

func TestEmptyRequest(t *testing.T) {
	var req Request
	if err := req.Scan(nil); err != nil || len(req.Spans) != 0 {
		t.Fatalf("Scan(nil) = %v, %d spans", err, len(req.Spans))
	}
	var b Builder
	if out := b.AppendRequest(nil); len(out) != 0 {
		t.Fatalf("empty builder wrote %x", out)
	}
}

func TestAttributeLookup(t *testing.T) {
	span := &tracepb.Span{TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8),
		Attributes: []*commonpb.KeyValue{
			otlptest.Str("http.route", "/orders/{id}"),
			otlptest.Int("http.response.status_code", 503),
			{Key: "ratio", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.25}}},
			{Key: "cached", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}},
			{Key: "blob", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{9, 8}}}},
			{Key: "list", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{}}}},
			{Key: "unset"},
			otlptest.Str("http.route", "second value loses"),
		}}
	raw := marshal(t, span)
	check := func(key string, wantType ValueType, ok bool) Value {
		t.Helper()
		v, found := SpanAttr(raw, key)
		if found != ok || v.Type != wantType {
			t.Fatalf("SpanAttr(%q) = %v/%v, want type %v found %v", key, v.Type, found, wantType, ok)
		}
		return v
	}
	if v := check("http.route", ValueString, true); string(v.Str()) != "/orders/{id}" {
		t.Fatalf("http.route = %q", v.Str())
	}
	if v := check("http.response.status_code", ValueInt, true); v.Int() != 503 || v.Str() != nil || v.Double() != 0 {
		t.Fatalf("status code = %d", v.Int())
	}
	if v := check("ratio", ValueDouble, true); v.Double() != 0.25 || v.Int() != 0 {
		t.Fatalf("ratio = %v", v.Double())
	}
	if v := check("cached", ValueBool, true); !v.Bool() {
		t.Fatal("cached = false")
	}
	if v := check("blob", ValueBytes, true); !bytes.Equal(v.Bytes(), []byte{9, 8}) {
		t.Fatalf("blob = %x", v.Bytes())
	}
	check("list", ValueArray, true)
	check("unset", ValueEmpty, true)
	check("http.rout", ValueEmpty, false)
	check("", ValueEmpty, false)

	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{otlptest.Str("service.name", "checkout")}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span}}}}}}
	var r Request
	if err := r.Scan(marshal(t, req)); err != nil {
		t.Fatal(err)
	}
	if v, ok := ResourceAttr(r.Groups[0].Resource, "service.name"); !ok || string(v.Str()) != "checkout" {
		t.Fatalf("service.name = %q, %v", v.Str(), ok)
	}
	if _, ok := ResourceAttr(r.Groups[0].Resource, "host.name"); ok {
		t.Fatal("host.name found on a resource without it")
	}
	if n := testing.AllocsPerRun(100, func() { SpanAttr(raw, "http.response.status_code") }); n != 0 {
		t.Fatalf("SpanAttr allocates %v per call", n)
	}
	// Malformed bytes read as "not found", never panic.
	for n := range len(raw) {
		SpanAttr(raw[:n], "blob")
	}
}

// TestHotPathDoesNotAllocate guards the zero-allocation claim: a warm Request
// and Builder reused across requests allocate nothing per span.
func TestHotPathDoesNotAllocate(t *testing.T) {
	in := marshal(t, otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(5, 5))))
	var req Request
	var b Builder
	out := make([]byte, 0, 2*len(in))
	run := func() {
		if err := req.Scan(in); err != nil {
			t.Fatal(err)
		}
		req.GroupByTrace()
		b.Reset()
		for i := range req.Spans {
			b.Add(req.Groups[req.Spans[i].Group], req.Spans[i].Raw)
		}
		out = b.AppendRequest(out[:0])
	}
	run()
	if n := testing.AllocsPerRun(50, run); n != 0 {
		t.Fatalf("scan + group + build allocates %v times per request of %d spans", n, len(req.Spans))
	}
}
