package traceview

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/policy"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// buffered puts a request into a real buffer and takes its traces back.
func buffered(t testing.TB, req *coltracepb.ExportTraceServiceRequest) []*buffer.Trace {
	t.Helper()
	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var r otlpwire.Request
	if err := r.Scan(raw); err != nil {
		t.Fatal(err)
	}
	r.GroupByTrace()
	buf, _ := buffer.New(buffer.DefaultConfig())
	var in buffer.Interner
	in.Reset(buf, &r)
	defer in.Release()
	var bt buffer.Batch
	for ti := range r.Traces {
		bt.StartTrace(r.Traces[ti].ID)
		if err := bt.AddRequestSpans(&r, r.TraceSpans(ti), &in); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := buf.Append(&bt, 1); err != nil {
		t.Fatal(err)
	}
	return buf.TakeAll(nil)
}

func TestViewReadsSpans(t *testing.T) {
	b := otlptest.DefaultBatch()
	b.Traces, b.Services = 4, 3
	req := b.Request(rand.New(rand.NewPCG(2, 3)))
	// Add an exception event to one span, to find.
	target := req.ResourceSpans[1].ScopeSpans[0].Spans[0]
	target.Events = append(target.Events, &tracepb.Span_Event{Name: "exception"})
	want := map[[8]byte]*tracepb.Span{}
	for _, rs := range req.ResourceSpans {
		for _, sp := range rs.ScopeSpans[0].Spans {
			want[[8]byte(sp.SpanId)] = sp
		}
	}
	var v View
	events := 0
	for _, tr := range buffered(t, req) {
		v.Reset(tr)
		if v.Len() != int(tr.SpanCount) || v.Len() != 10 {
			t.Fatalf("Len %d, trace has %d spans", v.Len(), tr.SpanCount)
		}
		if r := v.Root(); r < 0 || !v.Span(r).IsRoot {
			t.Fatalf("root %d not found", r)
		}
		// Each trace's 10 spans are spread over the 3 services.
		if got := v.Services(); got != 3 {
			t.Fatalf("Services() = %d, want 3", got)
		}
		for i := range v.Len() {
			sp := v.Span(i)
			// Match the span by its start/end and name.
			var orig *tracepb.Span
			for _, o := range want {
				if o.StartTimeUnixNano == sp.StartUnixNano && string(o.Name) == string(sp.Name) && bytes.Equal(o.TraceId, tr.ID[:]) && (len(o.ParentSpanId) == 0) == sp.IsRoot {
					orig = o
				}
			}
			if orig == nil {
				t.Fatalf("span %d (%+v) not in the request", i, sp)
			}
			if sp.EndUnixNano != orig.EndTimeUnixNano || sp.Kind != int32(orig.Kind) || sp.StatusCode != int32(orig.GetStatus().GetCode()) {
				t.Fatalf("span fields %+v, want %v", sp, orig)
			}
			code, ok := v.SpanAttr(i, "http.response.status_code")
			if !ok || code.Kind != policy.ValueInt || code.Int != 200 {
				t.Fatalf("status code attribute = %+v, %v", code, ok)
			}
			route, ok := v.SpanAttr(i, "http.route")
			if !ok || route.Kind != policy.ValueString || string(route.Str) != "/api/v1/orders/{id}" {
				t.Fatalf("http.route = %+v", route)
			}
			svc, ok := v.ResourceAttr(i, "service.name")
			if !ok || !bytes.HasPrefix(svc.Str, []byte("svc-")) {
				t.Fatalf("service.name = %+v", svc)
			}
			if _, ok := v.SpanAttr(i, "no.such.key"); ok {
				t.Fatal("found a missing attribute")
			}
			if v.HasEvent(i, "exception") {
				events++
			}
		}
	}
	if events != 1 {
		t.Fatalf("found %d exception events, want 1", events)
	}
}

func TestViewIsLazyAndDoesNotAllocate(t *testing.T) {
	traces := buffered(t, otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(4, 4))))
	var v View
	v.Reset(traces[0])
	if v.indexed {
		t.Fatal("Reset indexed the spans: rules that need only the summary would pay for it")
	}
	v.Len()
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		v.Reset(traces[i%len(traces)])
		i++
		v.Root()
		v.SpanAttr(0, "http.route")
		v.ResourceAttr(0, "service.name")
		v.Services()
	})
	if allocs != 0 {
		t.Fatalf("a warm View allocates %v per trace", allocs)
	}
}

func BenchmarkView(b *testing.B) {
	traces := buffered(b, otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(4, 4))))
	var v View
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		v.Reset(traces[i%len(traces)])
		i++
		r := v.Root()
		v.SpanAttr(r, "http.route")
		v.ResourceAttr(r, "service.name")
	}
}
