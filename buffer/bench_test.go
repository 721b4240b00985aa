package buffer

import (
	"bytes"
	"testing"
)

// BenchmarkAppend is the buffer side of ingest: requests of 500 spans (50
// traces of 10, half of them new) appended as ingest goroutines do, with
// the decision loop taking traces as they come due.
func BenchmarkAppend(b *testing.B) {
	buf := newBuffer(b, 1<<40)
	raw := bytes.Repeat([]byte{'x'}, 330) // a typical span with 8 attributes
	const traces, spansPer = 50, 10
	var bt Batch
	next, now := 0, int64(0)
	var taken []*Trace
	b.SetBytes(traces * spansPer * int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		now++
		g := buf.Acquire([]byte("resource-and-scope-of-a-service"))
		bt.Reset()
		for i := range traces {
			tid := next - i%2*traces // half continue traces of the previous request
			bt.StartTrace(id(tid))
			for range spansPer / 2 {
				bt.AddSpan(Span{Group: g, Raw: raw, StartUnixNano: 1, EndUnixNano: 2})
			}
			next++
		}
		if _, err := buf.Append(&bt, now); err != nil {
			b.Fatal(err)
		}
		buf.Release(g)
		taken = buf.TakeReady(now-4, now-4, taken[:0])
	}
	b.ReportMetric(float64(traces*spansPer/2)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
}
