package node_test

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tailsift/tailsift/internal/capture"
	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/node"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

// sink is a real OTLP/gRPC backend that records every span it receives.
type sink struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[trace.TraceID]map[trace.SpanID]int // receive count per span
	addr  string
}

func startSink(t *testing.T) *sink {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{spans: map[trace.TraceID]map[trace.SpanID]int{}, addr: lis.Addr().String()}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, s)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return s
}

func (s *sink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				tid, sid := trace.TraceID(sp.TraceId), trace.SpanID(sp.SpanId)
				if s.spans[tid] == nil {
					s.spans[tid] = map[trace.SpanID]int{}
				}
				s.spans[tid][sid]++
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (s *sink) received(tid trace.TraceID) map[trace.SpanID]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[trace.SpanID]int{}
	for k, v := range s.spans[tid] {
		out[k] = v
	}
	return out
}

func (s *sink) total() (spans int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.spans {
		for _, n := range m {
			spans += n
		}
	}
	return spans
}

// seededIDs makes the SDK's trace IDs reproducible, so the test's
// probabilistic share is the same on every run.
type seededIDs struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (g *seededIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var tid trace.TraceID
	binary.BigEndian.PutUint64(tid[:8], g.r.Uint64())
	binary.BigEndian.PutUint64(tid[8:], g.r.Uint64()|1)
	return tid, g.newSpanID()
}

func (g *seededIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.newSpanID()
}

func (g *seededIDs) newSpanID() trace.SpanID {
	var sid trace.SpanID
	binary.BigEndian.PutUint64(sid[:], g.r.Uint64()|1)
	return sid
}

type class int

const (
	normal class = iota
	withError
	slow
)

type sentTrace struct {
	class class
	spans []trace.SpanID
}

func startNode(t *testing.T, forward string) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "127.0.0.1:0", "", ""
	cfg.Forward = forward
	cfg.DecisionWait, cfg.RootWait = 5*time.Second, time.Second // slack for a loaded CI machine
	n, err := node.New(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	return n
}

// waitQuiet waits until nothing is buffered or waiting for export.
func waitQuiet(t *testing.T, n *node.Node, timeout time.Duration) node.Stats {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := n.Stats()
		if s.Buffered == 0 && s.ExportPending == 0 && !n.Recovering() {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("not quiet after %v: %+v", timeout, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func checkAccounting(t *testing.T, s node.Stats) {
	t.Helper()
	if sum := s.Out(); s.Accepted != sum {
		t.Fatalf("accounting: accepted %d != sent %d + export failed %d + dropped %d + late dropped %d + buffered %d + pending %d",
			s.Accepted, s.Sent, s.ExportFailed, s.DroppedPolicy, s.DroppedLate, s.Buffered, s.ExportPending)
	}
}

// TestSDKEndToEnd sends 1,200 traces through the real OpenTelemetry Go SDK
// over both OTLP/gRPC and OTLP/HTTP, each trace's spans split across the two
// and over many export calls, and checks what reaches a real backend.
func TestSDKEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	sk := startSink(t)
	n := startNode(t, sk.addr)
	ctx := context.Background()

	ids := &seededIDs{r: rand.New(rand.NewPCG(42, 43))}
	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(n.GRPCAddr().String()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(n.HTTPAddr().String()), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	batching := []sdktrace.BatchSpanProcessorOption{sdktrace.WithMaxExportBatchSize(64), sdktrace.WithBatchTimeout(20 * time.Millisecond), sdktrace.WithBlocking()}
	viaGRPC := sdktrace.NewTracerProvider(sdktrace.WithIDGenerator(ids), sdktrace.WithBatcher(grpcExp, batching...))
	viaHTTP := sdktrace.NewTracerProvider(sdktrace.WithIDGenerator(ids), sdktrace.WithBatcher(httpExp, batching...))
	defer viaGRPC.Shutdown(ctx)
	defer viaHTTP.Shutdown(ctx)

	const traces = 1200
	sent := map[trace.TraceID]*sentTrace{}
	totalSpans := 0
	base := time.Now().Add(-time.Minute)
	for i := range traces {
		// Children through one protocol, the root through the other.
		rootTracer, childTracer := viaHTTP.Tracer("e2e"), viaGRPC.Tracer("e2e")
		if i%2 == 1 {
			rootTracer, childTracer = childTracer, rootTracer
		}
		st := &sentTrace{class: normal}
		switch i % 10 { // 10% errors, 10% slow
		case 1:
			st.class = withError
		case 2:
			st.class = slow
		}
		rootDur := 50 * time.Millisecond
		if st.class == slow {
			rootDur = 1500 * time.Millisecond
		}
		start := base.Add(time.Duration(i) * time.Millisecond)
		rctx, root := rootTracer.Start(ctx, "GET /checkout", trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindServer))
		children := 3 + i%5
		for c := range children {
			_, child := childTracer.Start(rctx, "SELECT orders", trace.WithTimestamp(start.Add(time.Millisecond)))
			if st.class == withError && c == children-1 {
				child.SetStatus(codes.Error, "deadlock")
			}
			child.End(trace.WithTimestamp(start.Add(10 * time.Millisecond)))
			st.spans = append(st.spans, child.SpanContext().SpanID())
		}
		root.End(trace.WithTimestamp(start.Add(rootDur)))
		st.spans = append(st.spans, root.SpanContext().SpanID())
		sent[root.SpanContext().TraceID()] = st
		totalSpans += len(st.spans)
	}
	if err := viaGRPC.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := viaHTTP.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	s := waitQuiet(t, n, time.Minute)
	checkAccounting(t, s)
	if s.Accepted != int64(totalSpans) {
		t.Fatalf("sampler accepted %d spans, SDK sent %d", s.Accepted, totalSpans)
	}
	requests := metricstest.Value(t, n.Registry(), "tailsift_ingest_requests_total", map[string]string{"protocol": "grpc", "outcome": "ok"}) +
		metricstest.Value(t, n.Registry(), "tailsift_ingest_requests_total", map[string]string{"protocol": "http", "outcome": "ok"})
	if requests < 100 {
		t.Fatalf("spans arrived in only %v export calls; the test wants them spread over many", requests)
	}

	var restKept, rest int
	for tid, st := range sent {
		got := sk.received(tid)
		switch {
		case st.class != normal:
			if len(got) != len(st.spans) {
				t.Fatalf("%v trace %s arrived with %d of %d spans", st.class, tid, len(got), len(st.spans))
			}
		case len(got) == 0:
			rest++
		case len(got) == len(st.spans):
			rest++
			restKept++
		default:
			t.Fatalf("trace %s arrived with %d of %d spans", tid, len(got), len(st.spans))
		}
		for sid, count := range got {
			if count != 1 {
				t.Fatalf("span %s of trace %s arrived %d times", sid, tid, count)
			}
		}
	}
	// 10% of the rest, within 4.5 standard deviations of a binomial.
	mean, sd := 0.1*float64(rest), math.Sqrt(float64(rest)*0.1*0.9)
	if math.Abs(float64(restKept)-mean) > 4.5*sd {
		t.Fatalf("kept %d of %d ordinary traces, want about %.0f ± %.0f", restKept, rest, mean, 4.5*sd)
	}
	if got := sk.total(); int64(got) != s.Sent {
		t.Fatalf("sink received %d spans, sampler counted %d sent", got, s.Sent)
	}
	t.Logf("%d traces, %d spans in %v requests; kept %d of %d ordinary traces; %d spans sent, %d dropped",
		traces, totalSpans, requests, restKept, rest, s.Sent, s.DroppedPolicy)

	// Late spans: one more span for a kept (error) trace and for a dropped one.
	var keptID, droppedID trace.TraceID
	for tid, st := range sent {
		if st.class == withError && !keptID.IsValid() {
			keptID = tid
		}
		if st.class == normal && len(sk.received(tid)) == 0 && !droppedID.IsValid() {
			droppedID = tid
		}
	}
	late := func(tid trace.TraceID) trace.SpanID {
		parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sent[tid].spans[len(sent[tid].spans)-1],
			TraceFlags: trace.FlagsSampled, Remote: true})
		_, sp := viaGRPC.Tracer("e2e").Start(trace.ContextWithRemoteSpanContext(ctx, parent), "late retry")
		sp.End()
		return sp.SpanContext().SpanID()
	}
	droppedBefore := s.DroppedLate // children that lost a race with their root, if any
	lateKept, lateDropped := late(keptID), late(droppedID)
	if err := viaGRPC.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	s = waitQuiet(t, n, time.Minute)
	checkAccounting(t, s)
	if s.DroppedLate != droppedBefore+1 {
		t.Fatalf("late spans dropped: %d, want %d", s.DroppedLate, droppedBefore+1)
	}
	if sk.received(keptID)[lateKept] != 1 {
		t.Fatal("late span of a kept trace did not reach the backend")
	}
	if len(sk.received(droppedID)) != 0 || sk.received(droppedID)[lateDropped] != 0 {
		t.Fatal("a span of a dropped trace reached the backend")
	}
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	checkAccounting(t, n.Stats())
}

// TestForwardFile: --forward file:PATH appends kept traces as OTLP JSON
// lines that the capture reader replays.
func TestForwardFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kept.jsonl")
	cfg := node.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.Forward, cfg.ClusterBind = "127.0.0.1:0", "", "", "file:"+path, ""
	n, err := node.New(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(n.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	batch := otlptest.DefaultBatch() // traces 0, 20 and 40 have an error span
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(context.Background(), batch.Request(rand.New(rand.NewPCG(1, 5)))); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(context.Background()); err != nil { // decides everything and flushes
		t.Fatal(err)
	}
	traces := map[[16]byte]int{}
	err = capture.Read(path, func(pb []byte) error {
		var r otlpwire.Request
		if err := r.Scan(pb); err != nil {
			return err
		}
		for _, s := range r.Spans {
			traces[s.TraceID]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if kept := n.Stats().TracesKept; len(traces) < 3 || int64(len(traces)) != kept {
		t.Fatalf("file holds %d traces, the node kept %d (at least the 3 error traces)", len(traces), kept)
	}
	for id, n := range traces {
		if n != 10 {
			t.Fatalf("trace %x has %d of 10 spans in the file", id, n)
		}
	}
	bad := node.DefaultConfig()
	bad.Forward = "file:"
	if _, err := node.New(bad, node.Options{}); err == nil || !strings.Contains(err.Error(), "needs a path") {
		t.Fatalf("file: without a path: %v", err)
	}
}
