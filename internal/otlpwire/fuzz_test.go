package otlpwire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

// FuzzScan feeds arbitrary bytes to the scanner. It must never panic; input
// it accepts must build into a request that scans to the same spans and that
// the reference protobuf decoder also accepts.
func FuzzScan(f *testing.F) {
	for seed := range uint64(8) {
		f.Add(marshal(f, otlptest.RandomRequest(rand.New(rand.NewPCG(seed, 11)))))
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		var req Request
		if err := req.Scan(in); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		req.GroupByTrace()
		var b Builder
		for i := range req.Spans {
			b.Add(req.Groups[req.Spans[i].Group].Key, req.Spans[i].Raw)
		}
		out := b.AppendRequest(nil)
		var again Request
		if err := again.Scan(out); err != nil {
			t.Fatalf("built request does not scan: %v", err)
		}
		if len(again.Spans) != len(req.Spans) {
			t.Fatalf("rebuilt request has %d spans, want %d", len(again.Spans), len(req.Spans))
		}
		for i := range req.Spans {
			a, z := &req.Spans[i], &again.Spans[i]
			if a.TraceID != z.TraceID || a.SpanID != z.SpanID || !bytes.Equal(a.Raw, z.Raw) {
				t.Fatalf("span %d changed in the rebuild", i)
			}
		}
		var ref coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(out, &ref); err != nil {
			t.Fatalf("reference decoder rejects the built request: %v", err)
		}
	})
}
