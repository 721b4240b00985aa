package otlpwire

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

func benchRequest(b *testing.B) []byte {
	return marshal(b, otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(1, 2))))
}

func reportSpans(b *testing.B, spans int) {
	b.ReportMetric(float64(spans)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(spans*b.N), "ns/span")
}

// BenchmarkScan is the ingest hot path: index a ~500-span request.
func BenchmarkScan(b *testing.B) {
	in := benchRequest(b)
	var req Request
	if err := req.Scan(in); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if err := req.Scan(in); err != nil {
			b.Fatal(err)
		}
	}
	reportSpans(b, len(req.Spans))
}

// BenchmarkScanGroup adds grouping by trace ID, as ingest does per request.
func BenchmarkScanGroup(b *testing.B) {
	in := benchRequest(b)
	var req Request
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if err := req.Scan(in); err != nil {
			b.Fatal(err)
		}
		req.GroupByTrace()
	}
	reportSpans(b, len(req.Spans))
}

// BenchmarkBuild is the export hot path: regroup ~500 raw spans into a request.
func BenchmarkBuild(b *testing.B) {
	in := benchRequest(b)
	var req Request
	if err := req.Scan(in); err != nil {
		b.Fatal(err)
	}
	var bl Builder
	out := make([]byte, 0, 2*len(in))
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		bl.Reset()
		for i := range req.Spans {
			bl.Add(req.Groups[req.Spans[i].Group], req.Spans[i].Raw)
		}
		out = bl.AppendRequest(out[:0])
	}
	reportSpans(b, len(req.Spans))
}

// BenchmarkSpanAttr reads the 3rd of 8 attributes of a span.
func BenchmarkSpanAttr(b *testing.B) {
	var req Request
	if err := req.Scan(benchRequest(b)); err != nil {
		b.Fatal(err)
	}
	raw := req.Spans[0].Raw
	b.ReportAllocs()
	for b.Loop() {
		if v, ok := SpanAttr(raw, "http.response.status_code"); !ok || v.Int() != 200 {
			b.Fatal("attribute not found")
		}
	}
}

// BenchmarkUnmarshalReference is what the scanner replaces: a full decode of
// the same request into the generated structs, for comparison only.
func BenchmarkUnmarshalReference(b *testing.B) {
	in := benchRequest(b)
	var req Request
	if err := req.Scan(in); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		var m coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(in, &m); err != nil {
			b.Fatal(err)
		}
	}
	reportSpans(b, len(req.Spans))
}
