package ingest_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/decision"
	"github.com/tailsift/tailsift/export"
	"github.com/tailsift/tailsift/ingest"
	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlpjson"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/policy"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pipeline is a real receiver in front of a real engine, buffer and exporter.
type pipeline struct {
	recv   *ingest.Receiver
	engine *decision.Engine
	exp    *export.Exporter
	reg    *prometheus.Registry
}

type keptTraces struct{ *export.Exporter }

func (k keptTraces) ExportTrace(t *buffer.Trace, threshold uint64, rootAttrs []decision.Attribute) {
	k.Exporter.ExportTrace(t, export.Keep{Threshold: threshold, RootAttributes: exportAttrs(rootAttrs)})
}

func (k keptTraces) ExportSpans(group otlpwire.Group, spans [][]byte, threshold uint64, rootAttrs []decision.Attribute) {
	k.Exporter.ExportSpans(group, spans, export.Keep{Threshold: threshold, RootAttributes: exportAttrs(rootAttrs)})
}

func exportAttrs(attrs []decision.Attribute) []export.Attribute {
	var out []export.Attribute
	for _, a := range attrs {
		out = append(out, export.Attribute(a))
	}
	return out
}

func start(t *testing.T, memoryLimit int64, maxRequest int) *pipeline {
	t.Helper()
	reg := prometheus.NewRegistry()
	bc := buffer.DefaultConfig()
	if memoryLimit > 0 {
		bc.MemoryLimit = memoryLimit
	}
	buf, err := buffer.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	ec := export.DefaultConfig()
	ec.Writer = io.Discard
	exp, err := export.New(ec, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Parse("test", []byte("rules: [{name: keep-all, type: always}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	engine, err := decision.New(decision.DefaultConfig(), buf, set, keptTraces{exp}, reg)
	if err != nil {
		t.Fatal(err)
	}
	ic := ingest.DefaultConfig()
	ic.GRPCAddr, ic.HTTPAddr, ic.MaxRequestBytes = "127.0.0.1:0", "127.0.0.1:0", maxRequest
	recv, err := ingest.New(ic, engine, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline{recv: recv, engine: engine, exp: exp, reg: reg}
	t.Cleanup(func() {
		ctx := context.Background()
		recv.Shutdown(ctx)
		engine.Shutdown(ctx)
		exp.Shutdown(ctx)
	})
	return p
}

func (p *pipeline) requests(t *testing.T, protocol, outcome string) float64 {
	return metricstest.Value(t, p.reg, "tailsift_ingest_requests_total", map[string]string{"protocol": protocol, "outcome": outcome})
}

func validRequest(t *testing.T, seed uint64) (*coltracepb.ExportTraceServiceRequest, []byte) {
	t.Helper()
	b := otlptest.DefaultBatch()
	b.Traces = 5
	req := b.Request(rand.New(rand.NewPCG(seed, 1)))
	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return req, raw
}

func badRequest(t *testing.T) []byte {
	t.Helper()
	raw, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{TraceId: []byte{1, 2, 3}, SpanId: make([]byte, 8)}}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func grpcClient(t *testing.T, p *pipeline) coltracepb.TraceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(p.recv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return coltracepb.NewTraceServiceClient(conn)
}

func TestGRPC(t *testing.T) {
	p := start(t, 0, 1<<20)
	client := grpcClient(t, p)
	ctx := context.Background()
	req, _ := validRequest(t, 1)

	if _, err := client.Export(ctx, req); err != nil {
		t.Fatalf("Export: %v", err)
	}
	if _, err := client.Export(ctx, req, grpc.UseCompressor(grpcgzip.Name)); err != nil {
		t.Fatalf("Export with gzip: %v", err)
	}
	if got := p.engine.Stats().Accepted; got != 2*50 {
		t.Fatalf("engine accepted %d spans, want 100", got)
	}

	var bad coltracepb.ExportTraceServiceRequest
	proto.Unmarshal(badRequest(t), &bad)
	_, err := client.Export(ctx, &bad)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "trace_id has 3 bytes") {
		t.Fatalf("malformed request: %v, want InvalidArgument naming the field", err)
	}

	huge := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{SchemaUrl: strings.Repeat("x", 2<<20)}}}
	if _, err := client.Export(ctx, huge); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized request: %v, want ResourceExhausted", err)
	}
	if got := p.engine.Stats().Accepted; got != 100 {
		t.Fatalf("rejected requests changed the engine: accepted %d", got)
	}
	if ok, bad := p.requests(t, "grpc", "ok"), p.requests(t, "grpc", "malformed"); ok != 2 || bad != 1 {
		t.Fatalf("requests ok=%v malformed=%v, want 2 and 1", ok, bad)
	}
	p.waitIdle(t)
}

// waitIdle waits until no request holds any of the in-flight budget: every
// path, refused or not, gives back what it took.
func (p *pipeline) waitIdle(t *testing.T) {
	t.Helper()
	(&limited{recv: p.recv, reg: p.reg}).waitInflight(t, 0, 0)
}

func TestGRPCOverloadAndShutdownAreRetryable(t *testing.T) {
	p := start(t, 16<<10, 1<<20)
	client := grpcClient(t, p)
	var err error
	for i := 0; err == nil && i < 100; i++ {
		req, _ := validRequest(t, uint64(i))
		_, err = client.Export(context.Background(), req)
	}
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("full buffer: %v, want ResourceExhausted", err)
	}
	var delay time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.GetRetryDelay().AsDuration()
		}
	}
	if delay <= 0 {
		t.Fatalf("ResourceExhausted without RetryInfo: clients would not retry (%v)", st.Details())
	}
	p.engine.Shutdown(context.Background())
	req, _ := validRequest(t, 999)
	if _, err := client.Export(context.Background(), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("stopped engine: %v, want Unavailable", err)
	}
}

func post(t *testing.T, p *pipeline, contentType, encoding string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+p.recv.HTTPAddr().String()+"/v1/traces", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func gzipped(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func TestHTTP(t *testing.T) {
	p := start(t, 0, 1<<20)
	_, raw := validRequest(t, 1)
	js, err := otlpjson.Encode(nil, raw)
	if err != nil {
		t.Fatal(err)
	}
	statusMsg := func(t *testing.T, ct string, body []byte) *spb.Status {
		t.Helper()
		var st spb.Status
		if ct == "application/json" {
			if !strings.Contains(string(body), `"message"`) {
				t.Fatalf("JSON error body %q has no message", body)
			}
			return &st
		}
		if err := proto.Unmarshal(body, &st); err != nil || st.Message == "" {
			t.Fatalf("error body is not a google.rpc.Status: %q (%v)", body, err)
		}
		return &st
	}
	cases := []struct {
		name, contentType, encoding string
		body                        []byte
		wantCode                    int
		wantBody                    string // substring, for errors
	}{
		{"protobuf", "application/x-protobuf", "", raw, 200, ""},
		{"protobuf gzip", "application/x-protobuf", "gzip", gzipped(raw), 200, ""},
		{"json", "application/json", "", js, 200, "{}"},
		{"json with charset", "application/json; charset=utf-8", "gzip", gzipped(js), 200, "{}"},
		{"malformed protobuf", "application/x-protobuf", "", badRequest(t), 400, "trace_id has 3 bytes"},
		{"malformed json", "application/json", "", []byte(`{"resourceSpans":[{`), 400, "malformed"},
		{"json bad hex id", "application/json", "", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}`), 400, "traceId"},
		{"bad gzip", "application/x-protobuf", "gzip", []byte("not gzip"), 400, "gzip"},
		{"unsupported type", "text/plain", "", raw, 415, "Content-Type"},
		{"unsupported encoding", "application/x-protobuf", "br", raw, 415, "Content-Encoding"},
		{"too large", "application/x-protobuf", "", make([]byte, 2<<20), 413, "larger than"},
		{"too large after gunzip", "application/x-protobuf", "gzip", gzipped(make([]byte, 4<<20)), 413, "larger than"},
	}
	accepted := int64(0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := post(t, p, c.contentType, c.encoding, c.body)
			if resp.StatusCode != c.wantCode {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, c.wantCode)
			}
			if c.wantCode == 200 {
				accepted += 50
				if c.wantBody != "" && string(body) != c.wantBody {
					t.Fatalf("body %q, want %q", body, c.wantBody)
				}
				return
			}
			ct := resp.Header.Get("Content-Type")
			statusMsg(t, ct, body)
			if !strings.Contains(string(body), c.wantBody) {
				t.Fatalf("error body %q does not mention %q", body, c.wantBody)
			}
		})
	}
	if got := p.engine.Stats().Accepted; got != accepted {
		t.Fatalf("engine accepted %d spans, want %d: a rejected request changed something", got, accepted)
	}
	if got := p.requests(t, "http", "malformed"); got != 4 {
		t.Fatalf("malformed requests counted %v, want 4", got)
	}
	p.waitIdle(t)

	resp, err := http.Get("http://" + p.recv.HTTPAddr().String() + "/v1/traces")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d, want 405", resp.StatusCode)
	}
}

func TestHTTPOverloadAndShutdownAreRetryable(t *testing.T) {
	p := start(t, 16<<10, 1<<20)
	var resp *http.Response
	for i := 0; i < 100; i++ {
		_, raw := validRequest(t, uint64(i))
		if resp, _ = post(t, p, "application/x-protobuf", "", raw); resp.StatusCode != 200 {
			break
		}
	}
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("full buffer: %d Retry-After=%q, want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	p.engine.Shutdown(context.Background())
	_, raw := validRequest(t, 999)
	if resp, _ = post(t, p, "application/x-protobuf", "", raw); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("stopped engine: %d, want 503 with Retry-After", resp.StatusCode)
	}
}
