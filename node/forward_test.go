package node_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/node"
)

// TestForwardFileMode: the file of --forward file:PATH holds kept traces,
// which may carry anything an application put in a span: a new one is
// readable by its owner only.
func TestForwardFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kept.jsonl")
	cfg := node.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.Forward, cfg.ClusterBind = "127.0.0.1:0", "", "", "file:"+path, ""
	n, err := node.New(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// The umask can only clear bits: 0600 whatever it is.
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("forward file created with mode %v, want 0600", perm)
	}
}

// TestMaxExportRequestSize: max_export_request_size reaches the exporter.
// Set to 1MiB, a kept trace with a 2 MB span (which the sink would accept)
// reaches the sink without that span, counted failed (oversize), while the
// other kept traces arrive whole; the node's accounting adds up.
func TestMaxExportRequestSize(t *testing.T) {
	sk := startSink(t)
	cfg := errorsOnlyConfig(t, sk)
	if cfg.MaxExportRequestSize != 4<<20 {
		t.Errorf("default max_export_request_size = %d, want 4MiB", cfg.MaxExportRequestSize)
	}
	yaml := filepath.Join(t.TempDir(), "sampler.yaml")
	if err := os.WriteFile(yaml, []byte("max_export_request_size: 1MiB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfg.LoadFile(yaml); err != nil {
		t.Fatal(err)
	}
	bad := cfg
	bad.MaxExportRequestSize = 512
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "max_export_request_size") {
		t.Errorf("max_export_request_size 512: Validate = %v, want an error naming the key", err)
	}

	n, err := node.New(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(n.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(1, 5))) // traces 0, 20 and 40 have an error span
	bigID := trace.TraceID{0xb1, 0x6}
	root, big := []byte{0xb1, 0, 0, 0, 0, 0, 0, 1}, []byte{0xb1, 0, 0, 0, 0, 0, 0, 2}
	req.ResourceSpans = append(req.ResourceSpans, &tracepb.ResourceSpans{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{otlptest.Str("service.name", "big")}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{
			{TraceId: bigID[:], SpanId: root, Name: "root", StartTimeUnixNano: 1, EndTimeUnixNano: 3,
				Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}},
			{TraceId: bigID[:], SpanId: big, ParentSpanId: root, Name: "big", StartTimeUnixNano: 1, EndTimeUnixNano: 2,
				Attributes: []*commonpb.KeyValue{otlptest.Str("payload", strings.Repeat("x", 2_000_000))}},
		}}},
	})
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if err := n.Shutdown(context.Background()); err != nil { // decides everything and flushes
		t.Fatal(err)
	}

	s := n.Stats()
	checkAccounting(t, s)
	got := sk.received(bigID)
	if got[trace.SpanID(root)] != 1 || got[trace.SpanID(big)] != 0 {
		t.Errorf("big trace at the sink: %v, want its root and not its 2 MB span", got)
	}
	if s.ExportFailed != 1 || s.Sent != int64(sk.total()) || s.TracesKept < 4 {
		t.Errorf("Stats %+v, sink has %d spans: want the big span failed, every other kept span sent", s, sk.total())
	}
	if v := metricstest.Value(t, n.Registry(), "tailsift_export_spans_failed_total", map[string]string{"reason": "oversize"}); v != 1 {
		t.Errorf("spans_failed_total{reason=oversize} = %v, want 1", v)
	}
}
