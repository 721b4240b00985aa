package otlpwire

import (
	"errors"
	"runtime"
	"testing"

	"github.com/tailsift/tailsift/internal/otlptest"
)

// What scanning a request may allocate, cold (a new Request, as the first
// request of a pool sees it): a small multiple of the request's size. The
// index costs 88 bytes per span of at least 30 wire bytes (sized once for
// the request's density, see growSpans), a group 68 bytes per ScopeSpans
// with a span; the trace map and runs add less. Measured: 5-6x at worst.
const (
	maxScanAmplification = 8
	scanSlack            = 64 << 10
)

// scanAllocs returns the bytes allocated by scanning and grouping b, and
// the scan's error.
func scanAllocs(b []byte) (uint64, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var r Request
	err := r.Scan(b)
	if err == nil {
		r.GroupByTrace()
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(&r)
	return after.TotalAlloc - before.TotalAlloc, err
}

// TestScanMemoryIsLinear: the shapes that cost a careless scanner resource
// size × ScopeSpans (2.6 GB for a 264 KiB request, before the fix) cost a
// small multiple of their size.
func TestScanMemoryIsLinear(t *testing.T) {
	for _, h := range otlptest.HostileShapes {
		t.Run(h.String(), func(t *testing.T) {
			in := marshal(t, otlptest.HostileRequest(h, 1<<20, [16]byte{1}, 0))
			allocs, err := scanAllocs(in)
			if err != nil {
				t.Fatal(err)
			}
			if limit := uint64(maxScanAmplification*len(in) + scanSlack); allocs > limit {
				t.Fatalf("scanning %d bytes allocated %d (%.1fx), want at most %d", len(in), allocs, float64(allocs)/float64(len(in)), limit)
			}
			t.Logf("%d bytes, %d allocated (%.2fx)", len(in), allocs, float64(allocs)/float64(len(in)))
		})
	}
}

// FuzzScanMemory: whatever the input, accepted or refused, scanning it
// allocates a small multiple of its size.
func FuzzScanMemory(f *testing.F) {
	for _, h := range otlptest.HostileShapes {
		f.Add(marshal(f, otlptest.HostileRequest(h, 4<<10, [16]byte{1}, 0)))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		allocs, err := scanAllocs(in)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		if limit := uint64(maxScanAmplification*len(in) + scanSlack); allocs > limit {
			t.Fatalf("scanning %d bytes allocated %d, want at most %d", len(in), allocs, limit)
		}
	})
}

// BenchmarkScanHostile scans each hostile shape of 1 MiB with a reused
// Request: the work is linear in the size, like an ordinary request's.
func BenchmarkScanHostile(b *testing.B) {
	for _, h := range otlptest.HostileShapes {
		b.Run(h.String(), func(b *testing.B) {
			in := marshal(b, otlptest.HostileRequest(h, 1<<20, [16]byte{1}, 0))
			var r Request
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if err := r.Scan(in); err != nil {
					b.Fatal(err)
				}
				r.GroupByTrace()
			}
		})
	}
}

// BenchmarkScanHostileCold is BenchmarkScanHostile with a new Request each
// time: what the first request of that shape allocates.
func BenchmarkScanHostileCold(b *testing.B) {
	for _, h := range otlptest.HostileShapes {
		b.Run(h.String(), func(b *testing.B) {
			in := marshal(b, otlptest.HostileRequest(h, 1<<20, [16]byte{1}, 0))
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				var r Request
				if err := r.Scan(in); err != nil {
					b.Fatal(err)
				}
				r.GroupByTrace()
			}
		})
	}
}
