package otlpjson

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
)

// benchInput is the default benchmark batch (about 500 spans) as protobuf
// and as OTLP/JSON, with its span count.
func benchInput(b *testing.B) (pb, js []byte, spans int) {
	req := otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(1, 2)))
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			spans += len(ss.Spans)
		}
	}
	pb, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	js, err = Encode(nil, pb)
	if err != nil {
		b.Fatal(err)
	}
	return pb, js, spans
}

func BenchmarkDecode(b *testing.B) {
	pb, js, spans := benchInput(b)
	dst := make([]byte, 0, 2*len(pb))
	b.SetBytes(int64(len(js)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = Decode(dst[:0], js); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(spans)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
}

func BenchmarkEncode(b *testing.B) {
	pb, js, spans := benchInput(b)
	dst := make([]byte, 0, 2*len(js))
	b.SetBytes(int64(len(pb)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = Encode(dst[:0], pb); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(spans)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
}
