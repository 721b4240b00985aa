package sink

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/internal/otlpserver"
	"github.com/tailsift/tailsift/internal/otlptest"
)

// traceID returns a distinct, non-zero trace ID for n; bytes 10-15 (the
// span ID prefix) differ between values of n too.
// hexIDs are ids as Report.Classes[].Missed lists them.
func hexIDs(ids ...[16]byte) []string {
	var s []string
	for _, id := range ids {
		s = append(s, hex.EncodeToString(id[:]))
	}
	return s
}

func traceID(n byte) [16]byte {
	var id [16]byte
	for i := range id {
		id[i] = n*17 + byte(i) + 1
	}
	return id
}

// span is span i of trace, with the ID workload.SpanID gives it.
func span(trace [16]byte, i int) *tracepb.Span {
	return spanWithID(trace, workload.SpanID(trace, i))
}

func spanWithID(trace [16]byte, id [8]byte) *tracepb.Span {
	return &tracepb.Span{
		TraceId:           trace[:],
		SpanId:            id[:],
		Name:              "GET /api/v1/orders/{id}",
		Kind:              tracepb.Span_SPAN_KIND_SERVER,
		StartTimeUnixNano: 1_000,
		EndTimeUnixNano:   2_000,
		Attributes:        []*commonpb.KeyValue{otlptest.Str("http.route", "/api/v1/orders/{id}")},
	}
}

// spans returns spans idx of trace.
func spans(trace [16]byte, idx ...int) []*tracepb.Span {
	out := make([]*tracepb.Span, len(idx))
	for i, j := range idx {
		out[i] = span(trace, j)
	}
	return out
}

// request puts spans into one ExportTraceServiceRequest.
func request(spans ...[]*tracepb.Span) *coltracepb.ExportTraceServiceRequest {
	ss := &tracepb.ScopeSpans{}
	for _, s := range spans {
		ss.Spans = append(ss.Spans, s...)
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{otlptest.Str("service.name", "sampler-under-test")}},
		ScopeSpans: []*tracepb.ScopeSpans{ss},
	}}}
}

func marshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func startSink(t *testing.T) *Sink {
	t.Helper()
	s, err := Start(Config{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s
}

// grpcClient is a generated OTLP client connected to the sink.
func grpcClient(t *testing.T, s *Sink) (coltracepb.TraceServiceClient, *grpc.ClientConn) {
	t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return coltracepb.NewTraceServiceClient(conn), conn
}

func sendGRPC(t *testing.T, c coltracepb.TraceServiceClient, req *coltracepb.ExportTraceServiceRequest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Export(ctx, req); err != nil {
		t.Fatalf("gRPC Export: %v", err)
	}
}

// httpClient has its own transport so its idle connections can be closed
// before goleak looks.
func httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// post sends body to the sink's /v1/traces and returns the status and the
// response body.
func post(t *testing.T, c *http.Client, s *Sink, contentType, encoding string, body []byte) (int, []byte) {
	t.Helper()
	code, out, err := postErr(c, s, contentType, encoding, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, out
}

func postErr(c *http.Client, s *Sink, contentType, encoding string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+s.HTTPAddr().String()+"/v1/traces", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

func sendHTTP(t *testing.T, c *http.Client, s *Sink, req *coltracepb.ExportTraceServiceRequest, gzipped bool) {
	t.Helper()
	if err := exportHTTP(c, s, req, gzipped); err != nil {
		t.Fatal(err)
	}
}

// exportHTTP is what an OTLP/HTTP exporter does; safe to call from any
// goroutine.
func exportHTTP(c *http.Client, s *Sink, req *coltracepb.ExportTraceServiceRequest, gzipped bool) error {
	body, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	enc := ""
	if gzipped {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(body)
		zw.Close()
		body, enc = buf.Bytes(), "gzip"
	}
	code, out, err := postErr(c, s, contentProtobuf, enc, body)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("POST /v1/traces = %d %q", code, out)
	}
	return err
}

// realisticRequests builds n requests of otlptest.DefaultBatch shape (500
// spans: 50 traces of 10, interleaved over 5 services, 8 attributes) with
// span IDs made by workload.SpanID, and the manifest of their traces.
func realisticRequests(tb testing.TB, n int) ([][]byte, *workload.Manifest) {
	tb.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	m := workload.NewManifest(n * 50)
	var out [][]byte
	for range n {
		req := otlptest.DefaultBatch().Request(r)
		next := map[[16]byte]int{}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					id := [16]byte(sp.TraceId)
					i := next[id]
					next[id] = i + 1
					sid := workload.SpanID(id, i)
					sp.SpanId = sid[:]
					sp.ParentSpanId = nil
				}
			}
		}
		for id, spans := range next {
			m.Add(workload.Trace{ID: id, Spans: int32(spans), Duration: 5 * time.Millisecond, EndOffset: time.Second})
		}
		out = append(out, marshal(tb, req))
	}
	return out, m
}

const contentProtobuf = otlpserver.ContentProtobuf

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
