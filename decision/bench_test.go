package decision

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailsift/tailsift/buffer"
)

// BenchmarkRecordDecision is what observability adds to each decided
// trace: the three histograms and an entry of the explain ring (counters
// are added once per tick, not per trace). Compare with the engine's cost
// per decided trace in BENCHMARKS.md (about 40 µs: 11.5 spans at 3.5 µs).
func BenchmarkRecordDecision(b *testing.B) {
	m := newMetrics(prometheus.NewRegistry(), new(counters), &Engine{})
	r := newRecent(100_000)
	t := &buffer.Trace{Summary: buffer.Summary{FirstSeen: 1, MinStart: 1e9, MaxEnd: 2e9, SpanCount: 12}}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		t.ID[0], t.ID[1], t.ID[2] = byte(i), byte(i>>8), byte(i>>16)
		m.observe(i%10 == 0, 3*time.Second, t)
		r.mu.Lock()
		r.add(recentDecision{id: t.ID, kept: i%10 == 0, rule: "errors", probability: 1, decidedAt: int64(i), summary: t.Summary})
		r.mu.Unlock()
	}
}
