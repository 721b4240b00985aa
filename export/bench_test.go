package export

import (
	"context"
	"testing"

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

func (discardSender) send(context.Context, []byte) (result, error) { return result{}, nil }
func (discardSender) close() error                                 { return nil }

// BenchmarkExportTrace measures ExportTrace of 10-span traces into batches,
// including building each full batch's request and queueing it.
func BenchmarkExportTrace(b *testing.B) {
	f := newFixture(b, 21, otlptest.DefaultBatch())
	cfg := DefaultConfig()
	cfg.QueueSize = 1024
	e, err := newExporter(cfg.withDefaults(), nil, nil, discardSender{})
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
// (and the test trace's iterator closure).
func TestExportTraceAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	f := newFixture(t, 22, otlptest.DefaultBatch())
	cfg := DefaultConfig()
	cfg.QueueSize = 1024
	e, err := newExporter(cfg.withDefaults(), nil, nil, discardSender{})
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, e)
	i := 0
	export := func() {
		e.ExportTrace(f.traces[i%len(f.traces)], Keep{})
		i++
	}
	for range 1000 {
		export()
	}
	if avg := testing.AllocsPerRun(1000, export); avg > 1.1 {
		t.Errorf("ExportTrace allocates %.2f times per trace, want at most the iterator's 1 (+ a request buffer per batch)", avg)
	}
}
