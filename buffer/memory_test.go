package buffer_test

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// BenchmarkHeldMemory measures what a buffered span costs: 100,000 spans
// of realistic requests (10-span traces, 8 attributes per span, 5 services)
// buffered, then the heap growth per span compared with the span's wire
// size. Each iteration fills a fresh buffer.
func BenchmarkHeldMemory(b *testing.B) {
	const requests = 200
	raws := make([][]byte, requests)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range raws {
		raws[i], _ = proto.Marshal(otlptest.DefaultBatch().Request(r))
	}
	var heapPerSpan, accountedPerSpan, wirePerSpan float64
	b.ReportAllocs()
	for b.Loop() {
		buf, _ := buffer.New(buffer.Config{MemoryLimit: 1 << 40, Shards: 64})
		var req otlpwire.Request
		var bt buffer.Batch
		var in buffer.Interner
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		spans, wire := 0, 0
		for _, raw := range raws {
			if err := req.Scan(raw); err != nil {
				b.Fatal(err)
			}
			req.GroupByTrace()
			in.Reset(buf, &req)
			bt.Reset()
			for t := range req.Traces {
				bt.StartTrace(req.Traces[t].ID)
				if err := bt.AddRequestSpans(&req, req.TraceSpans(t), &in); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := buf.Append(&bt, 1); err != nil {
				b.Fatal(err)
			}
			in.Release()
			wire += req.SpanBytes()
			spans += len(req.Spans)
		}
		req.Reset()
		bt.Reset()
		runtime.GC()
		runtime.ReadMemStats(&after)
		heapPerSpan = float64(after.HeapAlloc-before.HeapAlloc) / float64(spans)
		accountedPerSpan = float64(buf.Stats().Bytes) / float64(spans)
		wirePerSpan = float64(wire) / float64(spans)
		runtime.KeepAlive(buf)
	}
	b.ReportMetric(heapPerSpan, "heap-B/span")
	b.ReportMetric(accountedPerSpan, "accounted-B/span")
	b.ReportMetric(wirePerSpan, "wire-B/span")
}
