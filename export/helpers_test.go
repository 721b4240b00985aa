package export

import (
	"bytes"
	"context"
	"iter"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// testTrace is a kept trace as a buffer would hold it: groups and raw
// spans aliasing a scanned request.
type testTrace struct {
	id    [16]byte
	keys  []otlpwire.Group
	spans [][]byte
}

func (t *testTrace) Spans() iter.Seq2[otlpwire.Group, []byte] {
	return func(yield func(otlpwire.Group, []byte) bool) {
		for i := range t.spans {
			if !yield(t.keys[i], t.spans[i]) {
				return
			}
		}
	}
}

// requestSize is the most the trace adds to a batch (as the batcher
// estimates it): a BatchMaxBytes of that flushes right after it.
func (t *testTrace) requestSize() int {
	var refs []spanRef
	for k, s := range t.Spans() {
		refs = append(refs, spanRef{group: k, span: s})
	}
	n := estimate(refs)
	return n
}

// fixture is a realistic request cut into kept traces, and what a sink must
// receive for each span.
type fixture struct {
	raw    []byte
	traces []*testTrace
	want   map[[8]byte]wantSpan
}

type wantSpan struct {
	res         *resourcepb.Resource
	resSchema   string
	scope       *commonpb.InstrumentationScope
	scopeSchema string
	span        *tracepb.Span
}

func newFixture(t testing.TB, seed uint64, b otlptest.Batch) *fixture {
	t.Helper()
	return fixtureOf(t, b.Request(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))))
}

// fixtureOf cuts req into kept traces.
func fixtureOf(t testing.TB, req *coltracepb.ExportTraceServiceRequest) *fixture {
	t.Helper()
	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{raw: raw, want: map[[8]byte]wantSpan{}}
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				f.want[[8]byte(sp.SpanId)] = wantSpan{rs.Resource, rs.SchemaUrl, ss.Scope, ss.SchemaUrl, sp}
			}
		}
	}
	var r otlpwire.Request // its slices stay valid: it is never reused
	if err := r.Scan(raw); err != nil {
		t.Fatal(err)
	}
	r.GroupByTrace()
	for ti, run := range r.Traces {
		tt := &testTrace{id: run.ID}
		for _, si := range r.TraceSpans(ti) {
			s := &r.Spans[si]
			tt.keys = append(tt.keys, r.Groups[s.Group])
			tt.spans = append(tt.spans, s.Raw)
		}
		f.traces = append(f.traces, tt)
	}
	return f
}

func (f *fixture) spans() int64 { return int64(len(f.want)) }

// checkDelivered checks that reqs hold every span of f exactly once, equal
// to the original with its resource and scope, and, if whole, that no trace
// is split across requests.
func checkDelivered(t *testing.T, f *fixture, reqs []*coltracepb.ExportTraceServiceRequest, whole bool) {
	t.Helper()
	seen := map[[8]byte]int{}
	traceReq := map[[16]byte]int{}
	for i, req := range reqs {
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					id := [8]byte(sp.SpanId)
					w, ok := f.want[id]
					switch {
					case !ok:
						t.Errorf("request %d: unexpected span %x", i, id)
						continue
					case !proto.Equal(sp, w.span):
						t.Errorf("span %x differs:\n got %v\nwant %v", id, sp, w.span)
					case !proto.Equal(rs.Resource, w.res) || rs.SchemaUrl != w.resSchema:
						t.Errorf("span %x: resource %v (%q), want %v (%q)", id, rs.Resource, rs.SchemaUrl, w.res, w.resSchema)
					case !proto.Equal(ss.Scope, w.scope) || ss.SchemaUrl != w.scopeSchema:
						t.Errorf("span %x: scope %v, want %v", id, ss.Scope, w.scope)
					}
					seen[id]++
					tid := [16]byte(sp.TraceId)
					if j, ok := traceReq[tid]; whole && ok && j != i {
						t.Errorf("trace %x split across requests %d and %d", tid, j, i)
					}
					traceReq[tid] = i
				}
			}
		}
	}
	for id := range f.want {
		if seen[id] != 1 {
			t.Errorf("span %x received %d times, want 1", id, seen[id])
		}
	}
}

// grpcSink is a real OTLP/gRPC trace receiver on loopback. handle decides
// each call's answer (nil: OK); requests answered OK are recorded. opts
// configure the server (grpc.MaxRecvMsgSize: its default is 4 MiB).
type grpcSink struct {
	coltracepb.UnimplementedTraceServiceServer
	addr   string
	handle func(ctx context.Context, call int) (*coltracepb.ExportTraceServiceResponse, error)

	mu    sync.Mutex
	calls int
	reqs  []*coltracepb.ExportTraceServiceRequest
}

func startGRPCSink(t *testing.T, handle func(ctx context.Context, call int) (*coltracepb.ExportTraceServiceResponse, error), opts ...grpc.ServerOption) *grpcSink {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveGRPCSink(t, lis, handle, opts...)
}

// serveGRPCSink serves a grpcSink on lis until the test ends.
func serveGRPCSink(t *testing.T, lis net.Listener, handle func(ctx context.Context, call int) (*coltracepb.ExportTraceServiceResponse, error), opts ...grpc.ServerOption) *grpcSink {
	t.Helper()
	s := &grpcSink{addr: lis.Addr().String(), handle: handle}
	srv := grpc.NewServer(opts...)
	coltracepb.RegisterTraceServiceServer(srv, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return s
}

func (s *grpcSink) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	s.calls++
	call := s.calls
	s.mu.Unlock()
	resp := &coltracepb.ExportTraceServiceResponse{}
	if s.handle != nil {
		var err error
		if resp, err = s.handle(ctx, call); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	return resp, nil
}

func (s *grpcSink) received() (calls int, reqs []*coltracepb.ExportTraceServiceRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, append([]*coltracepb.ExportTraceServiceRequest(nil), s.reqs...)
}

// fastRetries are retry settings for tests over real sockets: short, and
// bounded so a failing test does not hang.
func fastRetries(c Config) Config {
	c.RetryInitial = time.Millisecond
	c.RetryMax = 10 * time.Millisecond
	c.RetryMaxElapsed = 10 * time.Second
	c.Timeout = 5 * time.Second
	return c
}

func newTestExporter(t *testing.T, cfg Config) (*Exporter, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	e, err := New(cfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e, reg
}

func shutdown(t *testing.T, e *Exporter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// metric returns the value of the counter or gauge name with the given label
// pairs, 0 if absent.
func metric(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// failedBy returns the failed-span counter per reason.
func failedBy(t *testing.T, g prometheus.Gatherer) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, r := range reasonNames {
		if v := metric(t, g, "tailsift_export_spans_failed_total", "reason", r); v != 0 {
			out[r] = int64(v)
		}
	}
	return out
}

// checkAccounting checks Stats against want, its identity, and that the
// metrics agree with it.
func checkAccounting(t *testing.T, e *Exporter, g prometheus.Gatherer, want Stats, wantFailed map[string]int64) {
	t.Helper()
	got := e.Stats()
	if got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	if got.Accepted != got.Sent+got.Failed+got.Pending {
		t.Errorf("Stats %+v: Accepted != Sent + Failed + Pending", got)
	}
	if v := int64(metric(t, g, "tailsift_export_spans_sent_total")); v != got.Sent {
		t.Errorf("spans_sent_total = %d, want %d", v, got.Sent)
	}
	if v := int64(metric(t, g, "tailsift_export_spans_pending")); v != got.Pending {
		t.Errorf("spans_pending = %d, want %d", v, got.Pending)
	}
	byReason := failedBy(t, g)
	var sum int64
	for _, v := range byReason {
		sum += v
	}
	if sum != got.Failed {
		t.Errorf("sum of spans_failed_total = %d (%v), want Failed = %d", sum, byReason, got.Failed)
	}
	if wantFailed != nil {
		for r, v := range wantFailed {
			if byReason[r] != v {
				t.Errorf("spans_failed_total{reason=%q} = %d, want %d (all: %v)", r, byReason[r], v, byReason)
			}
		}
		for r, v := range byReason {
			if _, ok := wantFailed[r]; !ok {
				t.Errorf("unexpected spans_failed_total{reason=%q} = %d", r, v)
			}
		}
	}
}

func requests(t *testing.T, g prometheus.Gatherer, outcome string) int {
	t.Helper()
	return int(metric(t, g, "tailsift_export_requests_total", "outcome", outcome))
}

// waitFor polls cond for up to 10s (a bound for broken tests, not a timing
// expectation).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// blockedQueueSetup is the fixture of the queue-full tests: six traces of
// one size, a sink whose calls announce themselves on entered and block
// until release is closed, and a config with one worker, a queue of one
// request and a batch per trace (flushed by size as soon as it is added).
func blockedQueueSetup(t *testing.T, seed uint64) (f *fixture, sink *grpcSink, cfg Config, entered, release chan struct{}) {
	t.Helper()
	f = newFixture(t, seed, otlptest.Batch{Services: 1, Traces: 6, SpansPerTrace: 3, AttrsPerSpan: 2, SpanDurationNs: 1e6})
	entered, release = make(chan struct{}, 16), make(chan struct{})
	sink = startGRPCSink(t, func(ctx context.Context, call int) (*coltracepb.ExportTraceServiceResponse, error) {
		entered <- struct{}{}
		select {
		case <-release:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	cfg = fastRetries(DefaultConfig())
	cfg.Endpoint = sink.addr
	cfg.Workers = 1
	cfg.QueueSize = 1
	cfg.BatchTimeout = time.Hour
	cfg.BatchMaxBytes = f.traces[0].requestSize()
	return f, sink, cfg, entered, release
}

// cloneGroup copies a group's parts, as ingest's request buffers are reused.
func cloneGroup(g otlpwire.Group) otlpwire.Group {
	return otlpwire.Group{Resource: bytes.Clone(g.Resource), Scope: bytes.Clone(g.Scope)}
}

// wipeGroup overwrites a group's parts, as the next request would.
func wipeGroup(g otlpwire.Group) {
	clear(g.Resource)
	clear(g.Scope)
}
