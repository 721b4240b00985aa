package sink

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/otlpwire"
)

// benchRequests is how many distinct 500-span requests the benchmarks
// cycle through: 3,200 traces.
const benchRequests = 64

func reportSpans(b *testing.B, spans int) {
	b.ReportMetric(float64(spans)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(spans*b.N), "ns/span")
}

// BenchmarkRecord measures recording one 500-span request of
// otlptest.DefaultBatch shape (50 traces of 10 spans, interleaved).
//
//   - record: recording already-scanned spans, every trace new (the
//     measurement restarts, untimed, each time the requests wrap around).
//   - scan+record: the whole handler path after the body is read: scan with
//     a pooled otlpwire.Request, then record.
//   - parallel: scan+record from GOMAXPROCS goroutines, for the contention
//     on the measurement's one lock (traces repeat: duplicates).
func BenchmarkRecord(b *testing.B) {
	bodies, m := realisticRequests(b, benchRequests)
	size := 0
	for _, body := range bodies {
		size += len(body)
	}
	size /= len(bodies)
	const spansPerRequest = 500

	b.Run("record", func(b *testing.B) {
		scanned := make([]otlpwire.Request, len(bodies))
		for i := range bodies {
			if err := scanned[i].Scan(bodies[i]); err != nil {
				b.Fatal(err)
			}
		}
		ms := newMeasurement(m, time.Now())
		b.SetBytes(int64(size))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i == len(scanned) {
				b.StopTimer()
				ms, i = newMeasurement(m, time.Now()), 0
				b.StartTimer()
			}
			ms.record(scanned[i].Spans)
			i++
		}
		reportSpans(b, spansPerRequest)
	})

	b.Run("scan+record", func(b *testing.B) {
		s := &Sink{}
		s.reqs.New = func() any { return new(otlpwire.Request) }
		s.cur.Store(newMeasurement(m, time.Now()))
		b.SetBytes(int64(size))
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i == len(bodies) {
				b.StopTimer()
				s.cur.Store(newMeasurement(m, time.Now()))
				i = 0
				b.StartTimer()
			}
			if err := s.consume(bodies[i]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		reportSpans(b, spansPerRequest)
	})

	b.Run("parallel", func(b *testing.B) {
		s := &Sink{}
		s.reqs.New = func() any { return new(otlpwire.Request) }
		s.cur.Store(newMeasurement(m, time.Now()))
		var next atomic.Int64
		b.SetBytes(int64(size))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1))
			for pb.Next() {
				if err := s.consume(bodies[i%len(bodies)]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
		reportSpans(b, spansPerRequest)
	})
}
