package otlpwire

import (
	"math/rand/v2"
	"testing"

	"github.com/tailsift/tailsift/internal/otlptest"
)

// TestSpanFieldsMatchesScan: reading a buffered span again gives the fields
// Scan indexed, and events are found by name.
func TestSpanFieldsMatchesScan(t *testing.T) {
	var req Request
	for seed := range uint64(300) {
		orig := otlptest.RandomRequest(rand.New(rand.NewPCG(seed, 21)))
		if err := req.Scan(marshal(t, orig)); err != nil {
			t.Fatal(err)
		}
		i := 0
		for _, rs := range orig.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					want := req.Spans[i]
					i++
					got, ok := SpanFields(want.Raw)
					if !ok {
						t.Fatalf("seed %d: SpanFields rejects a scanned span", seed)
					}
					got.Group = want.Group
					if got.TraceID != want.TraceID || got.SpanID != want.SpanID || got.ParentSpanID != want.ParentSpanID ||
						string(got.Name) != sp.Name || got.Kind != want.Kind || got.StatusCode != want.StatusCode ||
						got.StartUnixNano != want.StartUnixNano || got.EndUnixNano != want.EndUnixNano {
						t.Fatalf("seed %d: SpanFields = %+v, Scan = %+v", seed, got, want)
					}
					hasException := false
					for _, ev := range sp.Events {
						hasException = hasException || ev.Name == "exception"
					}
					if SpanHasEvent(want.Raw, "exception") != hasException {
						t.Fatalf("seed %d: SpanHasEvent = %v, want %v", seed, !hasException, hasException)
					}
					if SpanHasEvent(want.Raw, "no-such-event") {
						t.Fatalf("seed %d: found an event that does not exist", seed)
					}
				}
			}
		}
	}
	if err := req.Scan(marshal(t, otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(1, 1))))); err != nil {
		t.Fatal(err)
	}
	raw := req.Spans[0].Raw
	if n := testing.AllocsPerRun(100, func() { SpanFields(raw); SpanHasEvent(raw, "exception") }); n != 0 {
		t.Fatalf("allocates %v", n)
	}
	for n := range len(raw) { // truncations never panic
		SpanFields(raw[:n])
		SpanHasEvent(raw[:n], "exception")
	}
}
