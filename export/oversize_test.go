package export

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// paddedTrace is one trace (ID tid) under one resource and scope: a root
// span, then children, the i-th span padded by an attribute to sizes[i]
// encoded bytes exactly. Span IDs are tid's first byte then i+1.
func paddedTrace(t testing.TB, tid [16]byte, sizes ...int) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "padded"}}
	for i, size := range sizes {
		sid := make([]byte, 8)
		binary.BigEndian.PutUint64(sid, uint64(tid[0])<<56|uint64(i+1))
		sp := &tracepb.Span{TraceId: tid[:], SpanId: sid, Name: "padded", StartTimeUnixNano: 1, EndTimeUnixNano: 2}
		if i > 0 {
			sp.ParentSpanId = ss.Spans[0].SpanId
		}
		pad := otlptest.Str("padding", "")
		sp.Attributes = []*commonpb.KeyValue{pad}
		// The length prefixes grow with the padding: a few rounds settle.
		for range 4 {
			n := proto.Size(sp)
			if n == size {
				break
			}
			v := pad.Value.GetStringValue()
			pad.Value = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: strings.Repeat("x", max(len(v)+size-n, 0))}}
		}
		if n := proto.Size(sp); n != size {
			t.Fatalf("span %d: %d bytes, cannot pad to %d", i, n, size)
		}
		ss.Spans = append(ss.Spans, sp)
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{otlptest.Str("service.name", "padded")}},
		ScopeSpans: []*tracepb.ScopeSpans{ss},
	}}}
}

// soloSize is what span i of tr costs a request alone, as the batcher
// estimates it: the most a request holding only it can be.
func (t *testTrace) soloSize(i int) int {
	return otlpwire.GroupSize(t.keys[i]) + spanFrame(len(t.spans[i]))
}

// traceByID returns the trace of f with the given ID.
func (f *fixture) traceByID(t testing.TB, id [16]byte) *testTrace {
	t.Helper()
	for _, tr := range f.traces {
		if tr.id == id {
			return tr
		}
	}
	t.Fatalf("no trace %x", id)
	return nil
}

// without returns a copy of f that expects none of the given spans.
func (f *fixture) without(ids ...[8]byte) *fixture {
	g := *f
	g.want = make(map[[8]byte]wantSpan, len(f.want))
	for id, w := range f.want {
		g.want[id] = w
	}
	for _, id := range ids {
		delete(g.want, id)
	}
	return &g
}

func spanIDOf(t testing.TB, span []byte) [8]byte {
	t.Helper()
	f, ok := otlpwire.SpanFields(span)
	if !ok {
		t.Fatal("malformed span")
	}
	return f.SpanID
}

// TestOversizeSpanBehindKeptTraffic: a kept trace with a 5 MB span, among
// ordinary kept traces, exported to real sinks that refuse requests over
// 4 MiB (gRPC's default; the HTTP sink answers 413). The span is dropped
// before batching and counted (oversize); it is never sent, so no request
// is refused or retried and the one worker never stalls on it. Every
// ordinary trace and the rest of the big trace arrive; the big trace is
// told Delivered(false), the others Delivered(true); the accounting adds up.
func TestOversizeSpanBehindKeptTraffic(t *testing.T) {
	bigID := [16]byte{0xb1, 0x6b, 0x16}
	req := otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(40, 41)))
	big := paddedTrace(t, bigID, 300, 5_000_000, 400, 500)
	req.ResourceSpans = append(req.ResourceSpans, big.ResourceSpans...)
	f := fixtureOf(t, req)
	bigTrace := f.traceByID(t, bigID)
	bigSpan := spanIDOf(t, bigTrace.spans[1])
	want := f.without(bigSpan)
	all := f.spans()

	for _, tc := range []struct {
		name  string
		start func(t *testing.T) (endpoint string, received func() (calls int, reqs []*coltracepb.ExportTraceServiceRequest, sizes []int))
	}{
		{"grpc", func(t *testing.T) (string, func() (int, []*coltracepb.ExportTraceServiceRequest, []int)) {
			sink := startGRPCSink(t, nil) // MaxRecvMsgSize: the default 4 MiB
			return sink.addr, func() (int, []*coltracepb.ExportTraceServiceRequest, []int) {
				calls, reqs := sink.received()
				sizes := make([]int, len(reqs))
				for i, r := range reqs {
					sizes[i] = proto.Size(r)
				}
				return calls, reqs, sizes
			}
		}},
		{"http", func(t *testing.T) (string, func() (int, []*coltracepb.ExportTraceServiceRequest, []int)) {
			sink := startHTTPSinkMax(t, DefaultMaxRequestBytes, nil)
			return sink.srv.URL, func() (int, []*coltracepb.ExportTraceServiceRequest, []int) {
				calls, _, reqs := sink.received()
				sink.mu.Lock()
				defer sink.mu.Unlock()
				return calls, reqs, append([]int(nil), sink.sizes...)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			endpoint, received := tc.start(t)
			cfg := fastRetries(DefaultConfig()) // MaxRequestBytes: the default 4 MiB
			cfg.Endpoint = endpoint
			cfg.Workers = 1 // a request retried would hold back every other
			e, reg := newTestExporter(t, cfg)
			ds := deliveredTraces(t, f.traces, nil)
			var bigD *deliveredTrace
			var ordinary []*deliveredTrace
			for _, d := range ds {
				if d.id == bigID {
					bigD = d
				} else {
					ordinary = append(ordinary, d)
				}
			}
			// The big trace in the middle of the traffic.
			for _, d := range ordinary[:len(ordinary)/2] {
				e.ExportTrace(d, Keep{})
			}
			e.ExportTrace(bigD, Keep{})
			if s := e.Stats(); s.Failed != 1 {
				t.Errorf("Stats after the big trace = %+v, want its big span failed at once", s)
			}
			for _, d := range ordinary[len(ordinary)/2:] {
				e.ExportTrace(d, Keep{})
			}
			shutdown(t, e)

			calls, reqs, sizes := received()
			if calls != len(reqs) {
				t.Errorf("sink answered %d calls, accepted %d: a request was refused", calls, len(reqs))
			}
			for i, n := range sizes {
				if n > cfg.MaxRequestBytes {
					t.Errorf("request %d has %d bytes, more than MaxRequestBytes %d", i, n, cfg.MaxRequestBytes)
				}
			}
			checkDelivered(t, want, reqs, true)
			checkTold(t, ordinary, true)
			checkTold(t, []*deliveredTrace{bigD}, false)
			checkAccounting(t, e, reg, Stats{Accepted: all, Sent: all - 1, Failed: 1}, map[string]int64{"oversize": 1})
			if r, f := requests(t, reg, "retry"), requests(t, reg, "failed"); r != 0 || f != 0 {
				t.Errorf("requests{retry} = %d, {failed} = %d; want none", r, f)
			}
		})
	}
}

// TestOversizeSplitWithinMaxRequestBytes: a trace bigger than a request is
// split into requests of at most MaxRequestBytes, measured at a real gRPC
// sink that refuses anything bigger: small spans in batches of at most
// BatchMaxBytes, a span bigger than a batch alone in its request, a span
// exactly at the limit sent, one byte more dropped (oversize). The trace
// is told Delivered(false) once, after its other parts arrived.
func TestOversizeSplitWithinMaxRequestBytes(t *testing.T) {
	id := [16]byte{0x5b, 0x11, 0x7}
	sizes := []int{500}
	for range 40 {
		sizes = append(sizes, 1000)
	}
	sizes = append(sizes, 30_000, 40_000, 60_000, 60_001) // bigger than a batch; the edge; over it
	sizes = append(sizes, 1000, 1000)
	f := fixtureOf(t, paddedTrace(t, id, sizes...))
	tr := f.traces[0]
	edge, over := len(sizes)-4, len(sizes)-3
	cfg := fastRetries(DefaultConfig())
	cfg.MaxRequestBytes = tr.soloSize(edge)
	cfg.BatchMaxBytes = 16 << 10
	if tr.soloSize(over) != cfg.MaxRequestBytes+1 || tr.requestSize() <= cfg.MaxRequestBytes {
		t.Fatalf("fixture: edge %d, over %d, trace %d bytes", tr.soloSize(edge), tr.soloSize(over), tr.requestSize())
	}
	sink := startGRPCSink(t, nil, grpc.MaxRecvMsgSize(cfg.MaxRequestBytes))
	cfg.Endpoint = sink.addr
	e, reg := newTestExporter(t, cfg)
	d := &deliveredTrace{testTrace: tr, t: t, check: func(d *deliveredTrace, sent bool) {
		if got := sink.spansOf(d.id); got != len(d.spans)-1 {
			d.t.Errorf("told Delivered(%v) when the sink had %d of the %d spans sent", sent, got, len(d.spans)-1)
		}
	}}
	e.ExportTrace(d, Keep{})
	shutdown(t, e)

	calls, reqs := sink.received()
	if calls != len(reqs) {
		t.Errorf("sink answered %d calls, accepted %d: a request was refused", calls, len(reqs))
	}
	if len(reqs) < 5 {
		t.Errorf("%d requests, want the trace split in at least 5", len(reqs))
	}
	for i, r := range reqs {
		n, spans := proto.Size(r), spansByTrace([]*coltracepb.ExportTraceServiceRequest{r})[id]
		if n > cfg.MaxRequestBytes {
			t.Errorf("request %d has %d bytes, more than MaxRequestBytes %d", i, n, cfg.MaxRequestBytes)
		}
		if n > cfg.BatchMaxBytes && spans != 1 {
			t.Errorf("request %d has %d bytes in %d spans: only a span bigger than a batch goes over BatchMaxBytes %d", i, n, spans, cfg.BatchMaxBytes)
		}
	}
	checkDelivered(t, f.without(spanIDOf(t, tr.spans[over])), reqs, false)
	checkTold(t, []*deliveredTrace{d}, false)
	all := f.spans()
	checkAccounting(t, e, reg, Stats{Accepted: all, Sent: all - 1, Failed: 1}, map[string]int64{"oversize": 1})
}

// logLines is a slog handler's output, safe for concurrent use.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), substr)
}

// TestOversizeEdges runs on the stdout endpoint and fake time: a trace of
// one oversize span is told at once; a span that fits only as it came is
// dropped when the Keep's edits grow it over the limit; late spans
// (ExportSpans) are checked too; a second drop within the log interval adds
// no log line.
func TestOversizeEdges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lone := fixtureOf(t, paddedTrace(t, [16]byte{1}, 3000)).traces[0]
		pair := fixtureOf(t, paddedTrace(t, [16]byte{2}, 3000, 200)).traces[0]
		cfg := DefaultConfig()
		cfg.MaxRequestBytes = lone.soloSize(0) // the big spans fit as they came
		cfg.BatchMaxBytes = cfg.MaxRequestBytes
		out := &lineSink{}
		logs := &logLines{}
		cfg.Endpoint, cfg.Writer = "stdout", out
		reg := prometheus.NewRegistry()
		e, err := New(cfg, reg, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}

		// The rule attribute grows the root span over the limit.
		k := Keep{RootAttributes: []Attribute{ruleAttr}}
		d := &deliveredTrace{testTrace: lone, t: t}
		e.ExportTrace(d, k)
		checkTold(t, []*deliveredTrace{d}, false) // nothing left to send: at once
		checkAccounting(t, e, reg, Stats{Accepted: 1, Failed: 1}, map[string]int64{"oversize": 1})

		// Unedited, it fits: sent alone, the limit is inclusive.
		e.ExportTrace(lone, Keep{})
		// Late spans: the big root grows over the limit, its child is sent.
		exportLate(e, pair, k)
		shutdown(t, e)

		reqs := out.requests(t)
		for i, r := range reqs {
			if n := proto.Size(r); n > cfg.MaxRequestBytes {
				t.Errorf("request %d has %d bytes, more than MaxRequestBytes %d", i, n, cfg.MaxRequestBytes)
			}
		}
		got := spansByTrace(reqs)
		if got[lone.id] != 1 || got[pair.id] != 1 {
			t.Errorf("spans sent by trace: %v, want the unedited lone span and the late child", got)
		}
		checkAccounting(t, e, reg, Stats{Accepted: 4, Sent: 2, Failed: 2}, map[string]int64{"oversize": 2})
		if n := logs.count("too large"); n != 1 {
			t.Errorf("%d log lines about oversize spans, want 1 (rate-limited):\n%s", n, logs.buf.String())
		}
	})
}
