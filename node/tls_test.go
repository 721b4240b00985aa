package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/testpki"
	"github.com/tailsift/tailsift/node"
)

// tlsNode starts a node whose OTLP listeners and admin serve TLS with a
// certificate of ca (and, with clientCAs, require client certificates of
// them), keeping every trace and forwarding to sk.
func tlsNode(t *testing.T, sk *sink, ca *testpki.CA, clientCAs *testpki.CA, reg *prometheus.Registry, adjust ...func(*node.Config)) (*node.Node, testpki.Files) {
	t.Helper()
	dir := t.TempDir()
	files := testpki.WriteFiles(t, dir, "server", ca.Server(t, "tailsift-1"), ca)
	policies := keepAllPolicies(t)
	cfg := node.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.Forward, cfg.Policies, cfg.RootWait = sk.addr, policies, 100*time.Millisecond
	cfg.TLSCertFile, cfg.TLSKeyFile = files.Cert, files.Key
	if clientCAs != nil {
		cfg.TLSClientCAFile = filepath.Join(dir, "clients.crt")
		testpki.WriteFile(t, cfg.TLSClientCAFile, clientCAs.PEM, 0o644)
	}
	for _, f := range adjust {
		f(&cfg)
	}
	n, err := node.New(cfg, node.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	return n, files
}

// sdkSend sends one two-span trace through the OpenTelemetry Go SDK over
// OTLP/gRPC and one over OTLP/HTTP, each with its own TLS config, and
// returns their trace IDs. Export errors (a refused handshake) are
// returned by the providers' ForceFlush.
func sdkSend(t *testing.T, n *node.Node, grpcTLS, httpTLS *tls.Config, headers ...map[string]string) ([]trace.TraceID, error) {
	t.Helper()
	ctx := context.Background()
	h := map[string]string{}
	for _, m := range headers {
		maps.Copy(h, m)
	}
	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(n.GRPCAddr().String()), otlptracegrpc.WithHeaders(h),
		otlptracegrpc.WithTLSCredentials(credentials.NewTLS(grpcTLS)), otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(n.HTTPAddr().String()), otlptracehttp.WithHeaders(h),
		otlptracehttp.WithTLSClientConfig(httpTLS), otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	var ids []trace.TraceID
	var errs []error
	for _, exp := range []sdktrace.SpanExporter{grpcExp, httpExp} {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp))
		rctx, root := tp.Tracer("tls").Start(ctx, "GET /checkout")
		_, child := tp.Tracer("tls").Start(rctx, "SELECT orders")
		child.End()
		root.End()
		ids = append(ids, root.SpanContext().TraceID())
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		errs = append(errs, tp.ForceFlush(fctx))
		cancel()
		tp.Shutdown(ctx)
	}
	return ids, errors.Join(errs...)
}

// waitReceived waits until the sink has the spans of each trace, spans
// per trace.
func waitReceived(t *testing.T, sk *sink, ids []trace.TraceID, spans int) {
	t.Helper()
	waitFor(t, func() bool {
		for _, id := range ids {
			if len(sk.received(id)) != spans {
				return false
			}
		}
		return true
	}, "every trace whole at the sink")
}

// rawExport sends an empty export request with a plain gRPC client and
// HTTP client built from the given credentials, and returns their errors.
func rawExport(n *node.Node, creds credentials.TransportCredentials, hc *http.Client, scheme string) (grpcErr, httpErr error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(n.GRPCAddr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		return err, err
	}
	defer conn.Close()
	_, grpcErr = coltracepb.NewTraceServiceClient(conn).Export(ctx, &coltracepb.ExportTraceServiceRequest{})
	body, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+n.HTTPAddr().String()+"/v1/traces", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := hc.Do(req)
	if err != nil {
		return grpcErr, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return grpcErr, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return grpcErr, nil
}

// TestSDKOverTLS: the OpenTelemetry Go SDK exports over TLS on both
// protocols and its traces arrive whole; clients in plaintext or that do
// not trust the node's CA get nowhere, and nothing of theirs is accepted.
func TestSDKOverTLS(t *testing.T) {
	ca, other := testpki.NewCA(t, "ca"), testpki.NewCA(t, "other")
	sk := startSink(t)
	n, _ := tlsNode(t, sk, ca, nil, nil)
	trusting := &tls.Config{RootCAs: ca.Pool()}

	ids, err := sdkSend(t, n, trusting, trusting)
	if err != nil {
		t.Fatalf("SDK export over TLS: %v", err)
	}
	waitReceived(t, sk, ids, 2)
	accepted := n.Stats().Accepted

	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	if g, h := rawExport(n, insecure.NewCredentials(), hc, "http"); g == nil || h == nil {
		t.Errorf("plaintext clients: gRPC %v, HTTP %v; want both refused", g, h)
	}
	wrong := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: other.Pool()}}}
	defer wrong.CloseIdleConnections()
	if g, h := rawExport(n, credentials.NewTLS(&tls.Config{RootCAs: other.Pool()}), wrong, "https"); g == nil || h == nil {
		t.Errorf("clients trusting another CA: gRPC %v, HTTP %v; want both refused", g, h)
	}
	if _, err := sdkSend(t, n, &tls.Config{RootCAs: other.Pool()}, &tls.Config{RootCAs: other.Pool()}); err == nil {
		t.Error("the SDK trusting another CA exported")
	}
	if s := n.Stats(); s.Accepted != accepted {
		t.Errorf("refused clients changed the accepted spans: %d, then %d", accepted, s.Accepted)
	}

	// The admin listener serves the same certificate.
	admin := &http.Client{Transport: &http.Transport{TLSClientConfig: trusting}}
	defer admin.CloseIdleConnections()
	resp, err := admin.Get("https://" + n.AdminAddr().String() + "/healthz")
	if err != nil {
		t.Fatalf("admin over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("admin /healthz over TLS: %d", resp.StatusCode)
	}
}

// TestSDKOverMutualTLS: with tls_client_ca_file, the SDK with a client
// certificate of that CA exports; without one, or with another CA's, it
// is refused in the handshake.
func TestSDKOverMutualTLS(t *testing.T) {
	ca, clients, other := testpki.NewCA(t, "ca"), testpki.NewCA(t, "clients"), testpki.NewCA(t, "other")
	sk := startSink(t)
	n, _ := tlsNode(t, sk, ca, clients, nil)
	withCert := func(l *testpki.Leaf) *tls.Config {
		c := &tls.Config{RootCAs: ca.Pool()}
		if l != nil {
			c.Certificates = []tls.Certificate{l.TLS(t)}
		}
		return c
	}
	good := withCert(clients.Client(t, "collector-a"))
	ids, err := sdkSend(t, n, good, good)
	if err != nil {
		t.Fatalf("SDK export over mTLS: %v", err)
	}
	waitReceived(t, sk, ids, 2)
	accepted := n.Stats().Accepted
	for name, c := range map[string]*tls.Config{
		"no client certificate":          withCert(nil),
		"a certificate of another CA":    withCert(other.Client(t, "intruder")),
		"the node's own CA, not clients": withCert(ca.Client(t, "wrong-ca")),
	} {
		if _, err := sdkSend(t, n, c, c); err == nil {
			t.Errorf("%s: the SDK exported", name)
		}
	}
	if s := n.Stats(); s.Accepted != accepted {
		t.Errorf("refused clients changed the accepted spans: %d, then %d", accepted, s.Accepted)
	}
}

// TestCertificateRotation: new certificate files written over the old
// ones, as cert-manager rotates them, are served without a restart, and
// the reload is counted.
func TestCertificateRotation(t *testing.T) {
	ca, ca2 := testpki.NewCA(t, "ca"), testpki.NewCA(t, "ca-2")
	sk := startSink(t)
	reg := prometheus.NewRegistry()
	n, files := tlsNode(t, sk, ca, nil, reg)
	served := func(roots *testpki.CA) (string, error) {
		c, err := tls.Dial("tcp", n.GRPCAddr().String(), &tls.Config{RootCAs: roots.Pool(), NextProtos: []string{"h2"}})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
	}
	if name, err := served(ca); err != nil || name != "tailsift-1" {
		t.Fatalf("before the rotation: %q, %v", name, err)
	}
	testpki.WriteFiles(t, filepath.Dir(files.Cert), "server", ca2.Server(t, "tailsift-2"), ca2)
	// The files are checked at most once a second, on a handshake.
	deadline := time.Now().Add(15 * time.Second)
	for {
		name, err := served(ca2)
		if err == nil && name == "tailsift-2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new certificate was not served within 15s: %q, %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ids, err := sdkSend(t, n, &tls.Config{RootCAs: ca2.Pool()}, &tls.Config{RootCAs: ca2.Pool()})
	if err != nil {
		t.Fatalf("SDK export after the rotation: %v", err)
	}
	waitReceived(t, sk, ids, 2)
	if _, err := served(ca); err == nil {
		t.Error("after the rotation a client trusting only the old CA still connected")
	}
	if v := metricstest.Value(t, reg, "tailsift_tls_reloads_total", map[string]string{"outcome": "ok"}); v != 1 {
		t.Errorf("tailsift_tls_reloads_total{outcome=ok} = %v, want 1", v)
	}
}

// keyedSink is a real OTLP/gRPC backend over TLS that requires an API key
// in the x-api-key header, as SaaS backends do, and counts the bytes that
// reach it on the wire.
type keyedSink struct {
	*sink
	rejected  atomic.Int64 // calls without the right key
	wireBytes atomic.Int64 // read from client connections, TLS included
	bodyBytes atomic.Int64 // of the requests accepted, uncompressed
}

func (ks *keyedSink) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	ks.bodyBytes.Add(int64(proto.Size(req)))
	return ks.sink.Export(ctx, req)
}

func startKeyedSink(t *testing.T, ca *testpki.CA, key string) *keyedSink {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ks := &keyedSink{sink: &sink{spans: map[trace.TraceID]map[trace.SpanID]int{}, addr: lis.Addr().String()}}
	gate := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		if v := metadata.ValueFromIncomingContext(ctx, "x-api-key"); len(v) != 1 || v[0] != key {
			ks.rejected.Add(1)
			return nil, status.Error(codes.Unauthenticated, "invalid API key")
		}
		return next(ctx, req)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{ca.Server(t, "backend").TLS(t)}})),
		grpc.UnaryInterceptor(gate))
	coltracepb.RegisterTraceServiceServer(srv, ks)
	go srv.Serve(otlptest.CountingListener{Listener: lis, N: &ks.wireBytes})
	t.Cleanup(srv.Stop)
	return ks
}

// TestExportOverTLSWithAPIKey: kept traces go to a backend that requires
// TLS and an API key (read from a file, never logged), gzipped; they
// arrive whole. With a wrong key the backend's UNAUTHENTICATED is counted
// failed (rejected) at once: no retry.
func TestExportOverTLSWithAPIKey(t *testing.T) {
	ca := testpki.NewCA(t, "backend-ca")
	const key = "sk-live-7f3a9c0d1e2b"
	backend := startKeyedSink(t, ca, key)
	dir := t.TempDir()
	caFile, keyFile, wrongFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "api-key"), filepath.Join(dir, "wrong-key")
	testpki.WriteFile(t, caFile, ca.PEM, 0o644)
	testpki.WriteFile(t, keyFile, []byte(key+"\n"), 0o600)
	testpki.WriteFile(t, wrongFile, []byte("sk-live-0000000000\n"), 0o600)

	start := func(keyFile string, reg *prometheus.Registry, logs io.Writer) *node.Node {
		t.Helper()
		cfg := node.DefaultConfig()
		cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "", "", ""
		cfg.Policies = keepAllPolicies(t)
		cfg.RootWait = 100 * time.Millisecond
		cfg.Forward = "localhost:" + strings.Split(backend.addr, ":")[1]
		cfg.ForwardTLSCAFile, cfg.ForwardCompression = caFile, node.CompressionGzip
		cfg.ForwardHeaders = []string{"x-api-key=${file:" + keyFile + "}"}
		n, err := node.New(cfg, node.Options{Registry: reg, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown(context.Background()) })
		return n
	}

	var logs otlptest.SyncBuffer
	n := start(keyFile, prometheus.NewRegistry(), &logs)
	ids := sendRepetitiveTraces(t, n, 100)
	waitReceived(t, backend.sink, ids, 5)
	for _, id := range ids {
		for sid, copies := range backend.received(id) {
			if copies != 1 {
				t.Fatalf("span %s of trace %s arrived %d times", sid, id, copies)
			}
		}
	}
	wire, body := backend.wireBytes.Load(), backend.bodyBytes.Load()
	t.Logf("%d bytes of requests arrived in %d bytes on the wire (TLS, gzip)", body, wire)
	if body == 0 || wire*2 > body {
		t.Errorf("%d bytes on the wire for %d bytes of requests: not gzipped", wire, body)
	}
	if backend.rejected.Load() != 0 {
		t.Errorf("the backend rejected %d calls with the right key", backend.rejected.Load())
	}

	// The wrong key: rejected, counted, not retried.
	reg := prometheus.NewRegistry()
	wrong := start(wrongFile, reg, &logs)
	sendRepetitiveTraces(t, wrong, 10)
	waitFor(t, func() bool { s := wrong.Stats(); return s.Buffered == 0 && s.ExportPending == 0 }, "the wrong key's exports given up")
	s := wrong.Stats()
	if s.ExportFailed != 50 || s.Sent != 0 {
		t.Errorf("with a wrong key: %d spans failed, %d sent; want 50 failed", s.ExportFailed, s.Sent)
	}
	if v := metricstest.Value(t, reg, "tailsift_export_spans_failed_total", map[string]string{"reason": "rejected"}); v != 50 {
		t.Errorf("spans failed as rejected: %v, want 50", v)
	}
	retries := metricstest.Value(t, reg, "tailsift_export_requests_total", map[string]string{"outcome": "retry"})
	failed := metricstest.Value(t, reg, "tailsift_export_requests_total", map[string]string{"outcome": "failed"})
	if retries != 0 || failed == 0 || float64(backend.rejected.Load()) != failed {
		t.Errorf("with a wrong key: %v retries, %v requests failed, %d calls rejected; want no retry, one call per failed request",
			retries, failed, backend.rejected.Load())
	}
	checkAccounting(t, s)

	for _, secret := range []string{key, "sk-live-0000000000"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows the API key %q", secret)
		}
	}
}

// keepAllPolicies writes a policy file that keeps every trace.
func keepAllPolicies(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(path, []byte("rules:\n  - name: all\n    type: always\ndefault: keep\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sendRepetitiveTraces sends traces of 5 spans, alike as real ones are
// (the same names and attributes), through the OpenTelemetry Go SDK over
// plaintext OTLP/gRPC, and returns their IDs once the node has them.
func sendRepetitiveTraces(t *testing.T, n *node.Node, traces int) []trace.TraceID {
	t.Helper()
	ctx := context.Background()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(n.GRPCAddr().String()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBlocking()))
	defer tp.Shutdown(ctx)
	tr := tp.Tracer("checkout")
	var ids []trace.TraceID
	for range traces {
		rctx, root := tr.Start(ctx, "GET /api/v1/checkout", trace.WithSpanKind(trace.SpanKindServer))
		root.SetAttributes(attribute.String("http.route", "/api/v1/checkout"), attribute.String("http.request.method", "GET"))
		for range 4 {
			_, child := tr.Start(rctx, "SELECT orders", trace.WithAttributes(
				attribute.String("db.system", "postgresql"), attribute.String("db.statement", "SELECT * FROM orders WHERE id = $1")))
			child.End()
		}
		root.End()
		ids = append(ids, root.SpanContext().TraceID())
	}
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestSDKOverMutualTLSWithAPIKey: clients authenticate with a certificate
// (mTLS) and an API key; the key names their tenant, whose spans are
// counted. Without the key, or with a wrong one, the SDK's export is
// refused as unauthenticated on both protocols and nothing is accepted.
func TestSDKOverMutualTLSWithAPIKey(t *testing.T) {
	ca, clients := testpki.NewCA(t, "ca"), testpki.NewCA(t, "clients")
	keys := filepath.Join(t.TempDir(), "api-keys")
	testpki.WriteFile(t, keys, []byte("team-a team-a-key-0123456789\nteam-b team-b-key-0123456789\n"), 0o600)
	sk := startSink(t)
	reg := prometheus.NewRegistry()
	n, _ := tlsNode(t, sk, ca, clients, reg, func(c *node.Config) { c.AuthAPIKeysFile = keys })
	tc := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{clients.Client(t, "collector-a").TLS(t)}}

	ids, err := sdkSend(t, n, tc, tc, map[string]string{"authorization": "Bearer team-a-key-0123456789"})
	if err != nil {
		t.Fatalf("SDK export over mTLS with an API key: %v", err)
	}
	waitReceived(t, sk, ids, 2)
	if v := metricstest.Value(t, reg, "tailsift_ingest_tenant_spans_total", map[string]string{"tenant": "team-a"}); v != 4 {
		t.Errorf("team-a's spans: %v, want 4 (two traces of two spans)", v)
	}
	accepted := n.Stats().Accepted
	for name, h := range map[string]map[string]string{
		"no key":      nil,
		"a wrong key": {"authorization": "Bearer team-c-key-0123456789"},
	} {
		if _, err := sdkSend(t, n, tc, tc, h); err == nil {
			t.Errorf("%s: the SDK exported", name)
		}
	}
	if s := n.Stats(); s.Accepted != accepted {
		t.Errorf("unauthenticated exports changed the accepted spans: %d, then %d", accepted, s.Accepted)
	}
	missing := metricstest.Value(t, reg, "tailsift_ingest_auth_failures_total", map[string]string{"protocol": "grpc", "reason": "missing"})
	invalid := metricstest.Value(t, reg, "tailsift_ingest_auth_failures_total", map[string]string{"protocol": "http", "reason": "invalid"})
	if missing == 0 || invalid == 0 {
		t.Errorf("auth failures counted: gRPC missing %v, HTTP invalid %v; want both", missing, invalid)
	}
}
