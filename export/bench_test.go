package export

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/otlpclient"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// BenchmarkBuildRequest measures building one request of a realistic batch
// (about 500 spans, 5 services) from raw spans, reusing the Builder and the
// output buffer as a warm batcher does.
func BenchmarkBuildRequest(b *testing.B) {
	f := newFixture(b, 20, otlptest.DefaultBatch())
	var bld otlpwire.Builder
	var buf []byte
	b.SetBytes(int64(len(f.raw)))
	b.ReportAllocs()
	for b.Loop() {
		bld.Reset()
		for _, tr := range f.traces {
			for i, s := range tr.spans {
				bld.Add(tr.keys[i], s)
			}
		}
		buf = bld.AppendRequest(buf[:0])
	}
	if len(buf) != len(f.raw) {
		b.Fatalf("built %d bytes, want %d", len(buf), len(f.raw))
	}
}

// discardSender completes every send at once: benchmarks of the batcher
// exclude the network.
type discardSender struct{}

func (discardSender) send(context.Context, []byte) (otlpclient.Result, error) {
	return otlpclient.Result{}, nil
}
func (discardSender) close() error { return nil }

// BenchmarkExportTrace measures ExportTrace of 10-span traces into batches,
// including building each full batch's request and queueing it.
func BenchmarkExportTrace(b *testing.B) {
	f := newFixture(b, 21, otlptest.DefaultBatch())
	cfg := DefaultConfig()
	cfg.QueueSize = 1024
	e, err := newExporter(cfg.EnsureDefaults(), nil, nil, discardSender{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(f.raw) / len(f.traces)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.ExportTrace(f.traces[i%len(f.traces)], Keep{})
		i++
	}
	b.StopTimer()
	if err := e.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	if s := e.Stats(); s.Failed != 0 {
		b.Fatalf("Stats = %+v: the queue overflowed", s)
	}
}

// TestExportTraceAllocs guards the batcher's hot path: once warm, adding a
// trace allocates nothing but the occasional request buffer of a full batch
// (and the test trace's iterator closure), whether or not it asks to be
// told when it is delivered (the batch's trace list is pooled).
func TestExportTraceAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	f := newFixture(t, 22, otlptest.DefaultBatch())
	for _, delivered := range []bool{false, true} {
		t.Run(fmt.Sprintf("delivered=%v", delivered), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.QueueSize = 1024
			e, err := newExporter(cfg.EnsureDefaults(), nil, nil, discardSender{})
			if err != nil {
				t.Fatal(err)
			}
			defer shutdown(t, e)
			traces, _ := benchTraces(f, delivered)
			i := 0
			export := func() {
				e.ExportTrace(traces[i%len(traces)], Keep{})
				i++
			}
			for range 1000 {
				export()
			}
			if avg := testing.AllocsPerRun(1000, export); avg > 1.1 {
				t.Errorf("ExportTrace allocates %.2f times per trace, want at most the iterator's 1 (+ a request buffer per batch)", avg)
			}
		})
	}
}

// countedTrace counts its Delivered calls: benchmarks export each trace
// many times.
type countedTrace struct {
	*testTrace
	n *atomic.Int64
}

func (c *countedTrace) Delivered(bool) { c.n.Add(1) }

// benchTraces returns the traces of f as ExportTrace takes them, counting
// their Delivered calls if delivered.
func benchTraces(f *fixture, delivered bool) ([]Trace, *atomic.Int64) {
	n := new(atomic.Int64)
	ts := make([]Trace, len(f.traces))
	for i, tr := range f.traces {
		ts[i] = tr
		if delivered {
			ts[i] = &countedTrace{testTrace: tr, n: n}
		}
	}
	return ts, n
}

// BenchmarkExportTraceDelivered compares ExportTrace of traces that ask to
// be told when they are delivered with plain ones: 10-span traces that fit
// a batch, and 40-span traces split into about three requests.
func BenchmarkExportTraceDelivered(b *testing.B) {
	whole := newFixture(b, 21, otlptest.DefaultBatch())
	big := newFixture(b, 23, otlptest.Batch{Services: 3, Traces: 10, SpansPerTrace: 40, AttrsPerSpan: 8, SpanDurationNs: 1})
	for _, fc := range []struct {
		name string
		f    *fixture
		max  int
	}{
		{"whole", whole, DefaultBatchMaxBytes},
		{"split", big, big.traces[0].requestSize() / 3},
	} {
		for _, delivered := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/delivered=%v", fc.name, delivered), func(b *testing.B) {
				cfg := DefaultConfig()
				cfg.QueueSize = 1024
				cfg.BatchMaxBytes = fc.max
				e, err := newExporter(cfg.EnsureDefaults(), nil, nil, discardSender{})
				if err != nil {
					b.Fatal(err)
				}
				traces, told := benchTraces(fc.f, delivered)
				b.SetBytes(int64(len(fc.f.raw) / len(traces)))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					e.ExportTrace(traces[i%len(traces)], Keep{})
					i++
					if len(e.queue) > cap(e.queue)/2 {
						// Let the workers catch up: a batch dropped on a
						// full queue is not built, which would flatter us.
						b.StopTimer()
						for len(e.queue) > 0 {
							time.Sleep(10 * time.Microsecond)
						}
						b.StartTimer()
					}
				}
				b.StopTimer()
				if err := e.Shutdown(context.Background()); err != nil {
					b.Fatal(err)
				}
				if s := e.Stats(); s.Failed != 0 {
					b.Fatalf("Stats = %+v: the queue overflowed", s)
				}
				if delivered && told.Load() != int64(i) {
					b.Fatalf("%d Delivered calls for %d traces", told.Load(), i)
				}
			})
		}
	}
}
