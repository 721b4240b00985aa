package buffer

import (
	"bytes"
	"runtime"
	"testing"
)

// BenchmarkAppend is the buffer side of ingest: requests of 500 spans (50
// traces of 10, half of them new) appended as ingest goroutines do, with
// the decision loop taking traces as they come due.
func BenchmarkAppend(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchmarkAppend(b, newBuffer(b, 1<<40)) })
	// With a disk: "wal" logs and syncs each request first; "spill" has a
	// small memory limit, so the spill loop writes most bytes out and the
	// taker reads them back.
	for _, mode := range []string{"wal", "spill"} {
		b.Run(mode, func(b *testing.B) {
			cfg := DefaultConfig()
			if mode == "wal" {
				cfg.Log = openLog(b, b.TempDir(), nil)
			} else {
				cfg.Disk = openStore(b, b.TempDir())
				cfg.MemoryLimit = 8 << 20
			}
			buf, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer buf.Close()
			benchmarkAppend(b, buf)
		})
	}
}

func benchmarkAppend(b *testing.B, buf *Buffer) {
	raw := bytes.Repeat([]byte{'x'}, 330) // a typical span with 8 attributes
	const traces, spansPer = 50, 10
	var bt Batch
	next, now := 0, int64(0)
	var taken []*Trace
	b.SetBytes(traces * spansPer * int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		now++
		g := mustAcquire(b, buf, "resource-and-scope-of-a-service")
		bt.Reset()
		for i := range traces {
			tid := next - i%2*traces // half continue traces of the previous request
			bt.StartTrace(id(tid))
			for range spansPer / 2 {
				bt.AddSpan(Span{Group: g, Raw: raw, StartUnixNano: 1, EndUnixNano: 2})
			}
			next++
		}
		for {
			_, err := buf.Append(&bt, now)
			if err == nil {
				break
			}
			if err != ErrFull {
				b.Fatal(err)
			}
			runtime.Gosched() // spilling: the loop catches up
		}
		buf.Release(g)
		taken = buf.TakeReady(now-4, now-4, taken[:0])
		for _, t := range taken {
			if err := buf.Load(t); err != nil {
				b.Fatal(err)
			}
			buf.Forget(t)
		}
	}
	b.ReportMetric(float64(traces*spansPer/2)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
}
