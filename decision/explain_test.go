package decision

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// TestExplainRingHoldsNoTrace: decided traces leave nothing alive but the
// ring's fixed entries, allocated at start and reported. Before, the ring
// held each trace's groups: 1,500 traces with distinct 1 MiB resources
// kept 1.46 GB alive after the buffer showed 0 bytes.
func TestExplainRingHoldsNoTrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bc := buffer.DefaultConfig()
		bc.MemoryLimit = 64 << 20
		h := newHarnessBuffer(t, testConfig(), bc)
		defer h.shutdown()
		ring := int64(cap(h.engine.recent.entries))
		if g := metricstest.Value(t, h.reg, "tailsift_decision_explain_ring_bytes", nil); ring != int64(testConfig().RecentDecisions) || int64(g) != ring*recentEntryBytes {
			t.Fatalf("ring of %d entries reported as %.0f bytes, want %d entries of %d bytes", ring, g, testConfig().RecentDecisions, recentEntryBytes)
		}

		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		const traces, resourceBytes = 100, 256 << 10 // 25 MiB of resources
		var ids [][]byte
		for i := range traces {
			id := otlptest.TraceID(h.rng)
			ids = append(ids, id)
			res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
				otlptest.Str("service.name", fmt.Sprint("svc-", i)),
				otlptest.Str("padding", strings.Repeat(fmt.Sprint(i%10), resourceBytes)),
			}}
			b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
				Resource: res, ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{h.span(id, nil, time.Millisecond, false)}}}}}})
			if err != nil {
				t.Fatal(err)
			}
			var req otlpwire.Request
			if err := req.Scan(b); err != nil {
				t.Fatal(err)
			}
			if err := h.engine.Consume(context.Background(), &req); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(3 * time.Second) // root_wait: every trace decided
		// Dropped, so that nothing is at the exporter (whose output, in
		// this harness, is a buffer in memory).
		if s := h.checkAccounting(); s.TracesDropped != traces || h.buf.Stats().Bytes != 0 {
			t.Fatalf("%+v, buffer %d bytes: want all %d dropped and the buffer empty", s, h.buf.Stats().Bytes, traces)
		}
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 4<<20 {
			t.Fatalf("heap grew by %d MiB after %d MiB of resources were decided: something holds the decided traces", grown>>20, traces*resourceBytes>>20)
		}
		for i, id := range ids {
			x := h.engine.Explain([16]byte(id))
			if want := fmt.Sprint("svc-", i); len(x.Services) != 1 || x.Services[0] != want {
				t.Fatalf("explain of trace %d: services %v, want [%s]", i, x.Services, want)
			}
		}
	})
}

// TestServiceNamesAreBounded: a trace under many services keeps the first
// that fit, and says there were more.
func TestServiceNamesAreBounded(t *testing.T) {
	var names serviceNames
	var groups []*buffer.Group
	buf, _ := buffer.New(buffer.DefaultConfig())
	for i := range 100 {
		res, _ := proto.Marshal(&resourcepb.Resource{Attributes: []*commonpb.KeyValue{otlptest.Str("service.name", fmt.Sprint("service-number-", i))}})
		g, err := buf.Acquire(otlpwire.Group{Resource: append([]byte{0x0a, byte(len(res))}, res...)})
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g)
	}
	names.set(groups)
	var got []string
	for n := range names.all() {
		got = append(got, string(n))
	}
	if len(got) < 3 || !names.more || got[0] != "service-number-0" {
		t.Fatalf("kept %v (more: %v): want the first few and more", got, names.more)
	}
}
