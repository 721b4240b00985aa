package decision

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// BenchmarkRecordDecision is what observability adds to each decided
// trace: the three histograms and an entry of the explain ring (counters
// are added once per tick, not per trace). Compare with the engine's cost
// per decided trace in BENCHMARKS.md (about 40 µs: 11.5 spans at 3.5 µs).
func BenchmarkRecordDecision(b *testing.B) {
	m := newMetrics(prometheus.NewRegistry(), new(counters), &Engine{})
	r := newRecent(100_000)
	t := realisticTrace(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		t.ID[0], t.ID[1], t.ID[2] = byte(i), byte(i>>8), byte(i>>16)
		m.observe(i%10 == 0, 3*time.Second, t)
		r.mu.Lock()
		r.add(t, i%10 == 0, "errors", 1, int64(i))
		r.mu.Unlock()
	}
}

// realisticTrace is a buffered trace of the realistic batch: a dozen spans
// under a few services' resources.
func realisticTrace(tb testing.TB) *buffer.Trace {
	tb.Helper()
	raw, err := proto.Marshal(otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(1, 2))))
	if err != nil {
		tb.Fatal(err)
	}
	var req otlpwire.Request
	if err := req.Scan(raw); err != nil {
		tb.Fatal(err)
	}
	req.GroupByTrace()
	buf, err := buffer.New(buffer.DefaultConfig())
	if err != nil {
		tb.Fatal(err)
	}
	var in buffer.Interner
	in.Reset(buf, &req)
	defer in.Release()
	var bt buffer.Batch
	bt.StartTrace(req.Traces[0].ID)
	if err := bt.AddRequestSpans(&req, req.TraceSpans(0), &in); err != nil {
		tb.Fatal(err)
	}
	if _, err := buf.Append(&bt, 1); err != nil {
		tb.Fatal(err)
	}
	return buf.TakeAll(nil)[0]
}
