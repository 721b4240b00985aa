package ingest

import (
	"context"
	"testing"

	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/tap"
)

// BenchmarkAdmission is the in-flight accounting alone, per request: what
// the budget adds to a request that takes 100-700 µs end to end
// (BenchmarkExport). "stream context" is what gRPC does for every stream
// anyway, the baseline of "grpc".
func BenchmarkAdmission(b *testing.B) {
	r := &Receiver{cfg: DefaultConfig(), limits: limits{maxBytes: 1 << 40, httpMaxBytes: 1 << 40, maxProcessing: 1 << 30}}
	r.metrics = newMetrics(prometheus.NewRegistry(), &r.limits)
	r.uploads.init(r.cfg.RequestTimeout, r.metrics.refused)
	info := &tap.Info{FullMethodName: exportMethod}
	b.Run("stream context", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, cancel := context.WithCancel(context.Background())
			cancel()
		}
	})
	b.Run("grpc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			stream, cancel := context.WithCancel(context.Background())
			ctx, err := r.tapGRPC(stream, info)
			if err != nil {
				b.Fatal(err)
			}
			t := ctx.Value(ticketKey{}).(*ticket)
			if !t.stop() || !t.u.remove(&t.upload) {
				b.Fatal("ticket not claimed")
			}
			t.resize(50<<10 + StreamOverhead)
			if !r.limits.process() {
				b.Fatal("not processed")
			}
			t.grow(20 << 10)
			r.limits.done()
			r.limits.leave(&t.hold)
			cancel()
		}
	})
	b.Run("http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.limits.enter()
			h := hold{l: &r.limits, max: r.limits.httpMaxBytes}
			up := &httpUpload{}
			r.uploads.push(&up.upload, "http", nil, 0, time.Now(), up)
			h.grow(50<<10 + 1)
			up.held.Store(h.n)
			if !r.uploads.remove(&up.upload) {
				b.Fatal("upload stopped")
			}
			h.resize(50 << 10)
			if !r.limits.process() {
				b.Fatal("not processed")
			}
			h.grow(20 << 10)
			r.limits.done()
			r.limits.leave(&h)
		}
	})
	if r.limits.bytes.Load() != 0 || r.limits.requests.Load() != 0 {
		b.Fatalf("%d bytes and %d requests left in the budget", r.limits.bytes.Load(), r.limits.requests.Load())
	}
}
