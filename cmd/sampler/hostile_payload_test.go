package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlpjson"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/rawcodec"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Payload attacks: requests that are valid OTLP but cost a careless node
// far more than their size, a trace that never ends, a span too big for
// any backend, and a backend that asks to be retried at once. They run in
// TestHostileProcess like the connection attacks (see hostileCases), with
// the same checks: the node stays up within its memory bound, ordinary
// traffic flows, and the accounting adds up, counting the attack's spans.
var payloadCases = []hostileCase{
	{
		// Before the fix a 264 KiB request of this shape took 2.6 GB.
		name:    "amplification requests",
		prepare: func(h *hostileRun) { h.prepareAmplify() },
		attack:  func(h *hostileRun) func() { return h.amplify() },
		check: func(t *testing.T, h *hostileRun, g prometheus.Gatherer) {
			t.Logf("amplification requests: %d accepted (%d spans), %d refused retryably", h.attack.ok.Load(), h.attack.spans.Load(), h.attack.refused.Load())
			if h.attack.ok.Load() < 3 {
				t.Errorf("%d amplification requests accepted: want each kind taken", h.attack.ok.Load())
			}
		},
	},
	{
		// decision_wait is longer than the send takes even on a loaded
		// machine, so only the limit decides the trace (ordinary traces
		// still go at root_wait).
		name:   "a trace with 100,000 resources",
		args:   []string{"--decision-wait", "60s"},
		attack: func(h *hostileRun) func() { return h.manyResources(110_000) },
		check: func(t *testing.T, h *hostileRun, g prometheus.Gatherer) {
			limited := mval(g, "tailsift_decision_trace_limit_traces_total")
			t.Logf("%d spans of one trace, each under its own resource; decided by the trace limit: %.0f traces", h.attack.spans.Load(), limited)
			if h.attack.spans.Load() < 110_000 || limited != 1 {
				t.Errorf("%d spans sent, %.0f traces decided by max_trace_spans: want the trace decided once it reached 100,000", h.attack.spans.Load(), limited)
			}
		},
	},
	{
		name: "a 5 MB span behind ordinary kept traffic",
		// The node takes requests up to 8 MiB; the backend (the exporter's
		// max_export_request_size) 4 MiB.
		args:   []string{"--max-request-size", "8MiB", "--max-inflight-bytes", "24MiB"},
		attack: func(h *hostileRun) func() { return h.bigSpans(3, 5<<20) },
		failed: 3,
		check: func(t *testing.T, h *hostileRun, g prometheus.Gatherer) {
			if n := mval(g, "tailsift_export_spans_failed_total", "reason", "oversize"); n != 3 {
				t.Errorf("%.0f spans failed as oversize, want the three 5 MB spans", n)
			}
		},
	},
	{
		name: "a backend answering Retry-After: 0",
		backend: func(h *hostileRun) string {
			h.backend = startFlakyBackend(h.t, h.sinkAddr)
			return "http://" + h.backend.addr
		},
		attack: func(h *hostileRun) func() { return h.backend.fail(5 * time.Second) },
		check: func(t *testing.T, h *hostileRun, g prometheus.Gatherer) {
			b := h.backend
			window := time.Duration(b.failedFor.Load())
			// The exporter's 4 workers back off from 100 ms, doubling to
			// 5 s, with full jitter: about 8 attempts each in 5 s. A hint
			// of 0 obeyed as such is a tight loop: thousands a second.
			bound := int64(100 + 20*window.Seconds())
			t.Logf("the backend answered 503 Retry-After: 0 to %d attempts in %v (bound %d), then took %d requests",
				b.refused.Load(), window.Round(time.Millisecond), bound, b.passed.Load())
			if b.refused.Load() == 0 || b.refused.Load() > bound || b.passed.Load() == 0 {
				t.Errorf("%d attempts refused in %v, %d passed: want some, at most %d, then delivery", b.refused.Load(), window, b.passed.Load(), bound)
			}
		},
	},
}

// attackCounts are the payload attacks' requests: accepted, refused with
// a retryable answer, and anything else (a failure of the test); spans
// counts the spans of accepted requests, acknowledged to the attacker.
type attackCounts struct {
	ok, refused, other, spans atomic.Int64
	otherErr                  atomic.Value // an example
}

func (c *attackCounts) record(err error, spans int) {
	switch {
	case err == nil:
		c.ok.Add(1)
		c.spans.Add(int64(spans))
	case isRetryable(err):
		c.refused.Add(1)
	default:
		c.other.Add(1)
		c.otherErr.Store(err.Error())
	}
}

// retryLater is an HTTP answer that asks the client to retry.
type retryLater struct{ code int }

func (e retryLater) Error() string { return fmt.Sprintf("HTTP %d", e.code) }

// isRetryable follows the OTLP specification: RESOURCE_EXHAUSTED is
// retryable only with RetryInfo (without, the request can never be taken).
func isRetryable(err error) bool {
	if r, ok := err.(retryLater); ok {
		return r.code == http.StatusTooManyRequests || r.code == http.StatusServiceUnavailable
	}
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable:
		return true
	case codes.ResourceExhausted:
		for _, d := range st.Details() {
			if _, ok := d.(*errdetails.RetryInfo); ok {
				return true
			}
		}
	}
	return false
}

// payloadClient sends raw OTLP requests over both protocols.
type payloadClient struct {
	h  *hostileRun
	cc *grpc.ClientConn
	hc *http.Client
}

func (h *hostileRun) payloadClient() *payloadClient {
	cc, err := grpc.NewClient("passthrough:///"+h.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		h.errorf("grpc.NewClient: %v", err)
	}
	return &payloadClient{h: h, cc: cc, hc: &http.Client{Timeout: time.Minute}}
}

func (p *payloadClient) close() {
	if p.cc != nil {
		p.cc.Close()
	}
	p.hc.CloseIdleConnections()
}

func (p *payloadClient) grpc(body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var resp []byte
	return p.cc.Invoke(ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &body, &resp,
		grpc.ForceCodecV2(rawcodec.Codec{}))
}

func (p *payloadClient) http(body []byte, contentType string) error {
	resp, err := p.hc.Post("http://"+p.h.httpAddr+"/v1/traces", contentType, bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return retryLater{resp.StatusCode}
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
}

// loop calls send every interval until stop; the attacks are paced: they
// are about what one request costs, not about how many a client can send.
func loop(interval time.Duration, send func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			send()
			select {
			case <-done:
				return
			case <-time.After(interval):
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// droppedTraceID is a trace the example policies drop: its randomness is
// below the probabilistic rule's threshold, and it has no error, no
// latency and no priority.
func droppedTraceID(n byte) [16]byte { return [16]byte{0xa7, 0x7a, 0xc4, n} }

// amplify sends the shapes that cost a careless scanner resource size ×
// ScopeSpans: over gRPC and HTTP protobuf, a resource of a quarter of
// max_request_size followed by empty ScopeSpans; over HTTP JSON the same
// at a size whose JSON fits; and over gRPC one large resource with a span
// under each of thousands of scopes.
// prepareAmplify builds the empty-scopes requests amplify sends: half
// max_request_size in protobuf, a quarter in JSON.
func (h *hostileRun) prepareAmplify() {
	empty, err := proto.Marshal(otlptest.HostileRequest(otlptest.EmptyScopes, hostileMaxRequest/2, [16]byte{}, 0))
	if err != nil {
		h.t.Fatal(err)
	}
	quarter, err := proto.Marshal(otlptest.HostileRequest(otlptest.EmptyScopes, hostileMaxRequest/4, [16]byte{}, 0))
	if err != nil {
		h.t.Fatal(err)
	}
	emptyJSON, err := otlpjson.Encode(nil, quarter)
	if err != nil {
		h.t.Fatal(err)
	}
	h.payloads = map[string][]byte{"empty": empty, "emptyJSON": emptyJSON}
}

func (h *hostileRun) amplify() (stop func()) {
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			h.errorf("marshal: %v", err)
		}
		return b
	}
	empty, emptyJSON := h.payloads["empty"], h.payloads["emptyJSON"]
	var base atomic.Int64
	p := h.payloadClient()
	stops := []func(){
		loop(100*time.Millisecond, func() { h.attack.record(p.grpc(empty), 0) }),
		loop(100*time.Millisecond, func() { h.attack.record(p.http(empty, "application/x-protobuf"), 0) }),
		loop(100*time.Millisecond, func() { h.attack.record(p.http(emptyJSON, "application/json"), 0) }),
		loop(200*time.Millisecond, func() {
			req := otlptest.HostileRequest(otlptest.DistinctScopes, 1<<20, droppedTraceID(1), int(base.Add(1<<20)))
			h.attack.record(p.grpc(marshal(req)), countSpans(req))
		}),
	}
	// In full swing once a few were answered (on a loaded machine a
	// request of megabytes may take a while; the hold is what counts).
	for deadline := time.Now().Add(5 * time.Second); h.attack.ok.Load()+h.attack.refused.Load() < 4 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	return func() {
		for _, s := range stops {
			s()
		}
		p.close()
		h.checkAttackErrors()
	}
}

// manyResources sends spans of one trace, each under a resource of its
// own, in requests of half max_request_size (30,000 spans), back to back,
// until n were accepted.
func (h *hostileRun) manyResources(n int64) (stop func()) {
	p := h.payloadClient()
	next := 0
	done := make(chan struct{})
	stopLoop := loop(0, func() {
		if h.attack.spans.Load() >= n {
			select {
			case <-done:
			default:
				close(done)
			}
			return
		}
		req := otlptest.HostileRequest(otlptest.ManyResources, hostileMaxRequest/2, droppedTraceID(2), next)
		spans := countSpans(req)
		b, _ := proto.Marshal(req)
		err := p.grpc(b)
		if err == nil {
			next += spans
		}
		h.attack.record(err, spans)
	})
	select {
	case <-done:
	case <-time.After(hostileHold):
	}
	return func() {
		stopLoop()
		p.close()
		h.checkAttackErrors()
	}
}

// bigSpans sends n kept traces (an error on the root) over gRPC, each with
// one span of size bytes among ordinary ones, a few seconds apart.
func (h *hostileRun) bigSpans(n int, size int) (stop func()) {
	p := h.payloadClient()
	var accepted atomic.Int64
	stopLoop := loop(2*time.Second, func() {
		sent := int(accepted.Load())
		if sent == n {
			return
		}
		tid := [16]byte{0xb1, 0x65, byte(sent), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		root := []byte{1, 1, 1, 1, 1, 1, 1, byte(sent + 1)}
		spans := []*tracepb.Span{{TraceId: tid[:], SpanId: root, Name: "GET /upload", StartTimeUnixNano: 1, EndTimeUnixNano: 2,
			Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}}}
		for i := range 4 {
			s := &tracepb.Span{TraceId: tid[:], SpanId: []byte{2, 2, 2, 2, 2, 2, byte(sent + 1), byte(i + 1)}, ParentSpanId: root,
				Name: "child", StartTimeUnixNano: 1, EndTimeUnixNano: 2}
			if i == 2 {
				s.Attributes = []*commonpb.KeyValue{otlptest.Str("payload", strings.Repeat("x", size))}
			}
			spans = append(spans, s)
		}
		b, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
			ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}}})
		err := p.grpc(b)
		if err == nil {
			accepted.Add(1)
		}
		h.attack.record(err, len(spans))
	})
	for deadline := time.Now().Add(2 * hostileHold); accepted.Load() < int64(n) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	return func() {
		stopLoop()
		p.close()
		if got := accepted.Load(); got != int64(n) {
			h.errorf("%d of %d traces with a big span were accepted", got, n)
		}
		h.checkAttackErrors()
	}
}

func (h *hostileRun) checkAttackErrors() {
	if n := h.attack.other.Load(); n > 0 {
		h.errorf("%d attack requests failed other than by a retryable refusal, e.g. %v", n, h.attack.otherErr.Load())
	}
}

func countSpans(req *coltracepb.ExportTraceServiceRequest) int {
	n := 0
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	return n
}

// flakyBackend is an OTLP/HTTP destination that, while failing, answers
// 503 with "Retry-After: 0" and otherwise passes each request on to the
// bench's sink over OTLP/gRPC.
type flakyBackend struct {
	addr            string
	failing         atomic.Bool
	failedFor       atomic.Int64 // how long it failed, in nanoseconds
	refused, passed atomic.Int64
	sink            *grpc.ClientConn
	srv             *http.Server
}

func startFlakyBackend(t *testing.T, sinkAddr string) *flakyBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("passthrough:///"+sinkAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	b := &flakyBackend{addr: lis.Addr().String(), sink: cc}
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 10 * time.Second}
	go b.srv.Serve(lis)
	t.Cleanup(func() {
		b.srv.Close()
		cc.Close()
	})
	return b
}

func (b *flakyBackend) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if b.failing.Load() {
		b.refused.Add(1)
		w.Header().Set("Retry-After", "0")
		http.Error(w, "try again now", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	var resp []byte
	if err := b.sink.Invoke(ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &body, &resp,
		grpc.ForceCodecV2(rawcodec.Codec{})); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable) // the sink is not up yet: retry as usual
		return
	}
	b.passed.Add(1)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// fail makes the backend refuse for d, and returns at once; stop waits for
// d to pass.
func (b *flakyBackend) fail(d time.Duration) (stop func()) {
	start := time.Now()
	b.failing.Store(true)
	done := make(chan struct{})
	time.AfterFunc(d, func() {
		b.failing.Store(false)
		b.failedFor.Store(int64(time.Since(start)))
		close(done)
	})
	return func() { <-done }
}
