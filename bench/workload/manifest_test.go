package workload

import "testing"

func TestSpanIDRoundTrip(t *testing.T) {
	trace := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	other := trace
	other[12]++
	for _, i := range []int{0, 1, 255, 256, MaxSpansPerTrace - 1} {
		id := SpanID(trace, i)
		if id == [8]byte{} {
			t.Fatalf("span %d has a zero ID", i)
		}
		if got := SpanIndex(trace, id); got != i {
			t.Fatalf("SpanIndex(SpanID(%d)) = %d", i, got)
		}
		if got := SpanIndex(other, id); got != -1 {
			t.Fatalf("span of another trace gave index %d, want -1", got)
		}
	}
}

func TestManifestLookup(t *testing.T) {
	m := NewManifest(2)
	m.Add(Trace{ID: [16]byte{1}, Spans: 3, Error: true})
	m.Add(Trace{ID: [16]byte{2}, Spans: 4})
	if tr, ok := m.Lookup([16]byte{2}); !ok || tr.Spans != 4 {
		t.Fatalf("Lookup = %+v, %v", tr, ok)
	}
	if _, ok := m.Lookup([16]byte{3}); ok {
		t.Fatal("found a trace that was never added")
	}
	if m.Spans() != 7 {
		t.Fatalf("Spans() = %d, want 7", m.Spans())
	}
	if m.Traces[0].Class(1) != ClassError || m.Traces[1].Class(0) != ClassSlow || m.Traces[1].Class(1) != ClassRest {
		t.Fatal("classes wrong")
	}
}
