package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/node"
)

// secretMarker is in every span the encryption test sends: its name and
// an attribute value.
const secretMarker = "card-number-4111-1111-tailsift"

// With --data-key-file, nothing the sampler writes to its data directory
// shows span bytes in plain text: spans are in the write-ahead log and,
// past the memory limit, spilled. The control, without a key, finds them:
// so the scan can fail.
func TestDataDirEncrypted(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	for _, encrypted := range []bool{true, false} {
		t.Run(map[bool]string{true: "with-key", false: "control-without-key"}[encrypted], func(t *testing.T) {
			dir := t.TempDir()
			cfg := node.DefaultConfig()
			cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "", "", ""
			cfg.Forward = startSink(t).addr
			cfg.DataDir, cfg.Durability, cfg.MemoryLimit = filepath.Join(dir, "data"), node.DurabilityWAL, 4<<20
			cfg.DecisionWait, cfg.RootWait = time.Minute, time.Minute
			if encrypted {
				key := make([]byte, 32)
				rand.Read(key)
				cfg.DataKeyFile = filepath.Join(dir, "data.key")
				if err := os.WriteFile(cfg.DataKeyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			n, err := node.New(cfg, node.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Shutdown(context.Background())

			ctx := context.Background()
			exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(n.GRPCAddr().String()), otlptracegrpc.WithInsecure())
			if err != nil {
				t.Fatal(err)
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithMaxExportBatchSize(64), sdktrace.WithBlocking()))
			tr := tp.Tracer("encryption-test")
			padding := strings.Repeat("x", 2000)
			for range 3000 { // ~6 MB of spans: past the 4 MiB limit, so they spill too
				_, span := tr.Start(ctx, "charge "+secretMarker)
				span.SetAttributes(attribute.String("payment.card", secretMarker), attribute.String("padding", padding))
				span.End()
			}
			if err := tp.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool {
				return metricstest.Value(t, n.Registry(), "tailsift_buffer_spilled_bytes", nil) > 0
			}, "spans to spill to the data directory")
			if wal := metricstest.Value(t, n.Registry(), "tailsift_buffer_wal_bytes_total", nil); wal < 6e6 {
				t.Fatalf("%.0f bytes in the write-ahead log, want the ~6 MB sent", wal)
			}

			found := filesContaining(t, cfg.DataDir, []byte(secretMarker))
			if encrypted && len(found) > 0 {
				t.Fatalf("span bytes in plain text in the encrypted data directory: %v", found)
			}
			if !encrypted && len(found) == 0 {
				t.Fatalf("control: no plain-text span bytes found without a key; the scan cannot tell")
			}
			t.Logf("files with the marker: %v", found)
		})
	}
}

// filesContaining returns the files under dir that contain needle.
func filesContaining(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, needle) {
			found = append(found, filepath.Base(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// Decisions persist in the data directory: after a restart, a late span
// of a kept trace is forwarded and a late span of a dropped trace is
// dropped, although alone each would be decided the other way (the late
// span of the kept trace has no error, the one of the dropped trace has).
func TestDecisionsSurviveRestart(t *testing.T) {
	for _, durability := range []string{node.DurabilityNone, node.DurabilityWAL} {
		t.Run(durability, func(t *testing.T) {
			sk := startSink(t)
			cfg := errorsOnlyConfig(t, sk)
			cfg.DataDir, cfg.Durability = filepath.Join(t.TempDir(), "data"), durability
			cfg.DecisionWait, cfg.RootWait = 5*time.Second, 100*time.Millisecond
			start := func() *node.Node {
				n, err := node.New(cfg, node.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { n.Shutdown(context.Background()) })
				return n
			}
			kept, dropped := [16]byte{1, 1}, [16]byte{2, 2}
			before := start()
			exportSpans(t, before, span(kept, 1, true, true), span(dropped, 1, true, false))
			waitFor(t, func() bool { s := before.Stats(); return s.TracesKept == 1 && s.TracesDropped == 1 }, "both traces decided")
			if err := before.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}

			after := start()
			exportSpans(t, after, span(kept, 2, false, false), span(dropped, 2, false, true))
			waitFor(t, func() bool { return len(sk.received(trace.TraceID(kept))) == 2 }, "the late span of the kept trace forwarded")
			s := waitQuiet(t, after, time.Minute)
			if s.DroppedLate != 1 || s.TracesKept != 0 || s.TracesDropped != 0 {
				t.Fatalf("after the restart: %d late spans dropped, %d traces kept, %d dropped: want 1, 0, 0 (the decisions made before)", s.DroppedLate, s.TracesKept, s.TracesDropped)
			}
			if got := sk.received(trace.TraceID(dropped)); len(got) != 0 {
				t.Fatalf("spans of the dropped trace reached the backend: %v", got)
			}
			checkAccounting(t, s)
		})
	}
}

// span is span number n of trace id: a root span or a child, ERROR or not.
func span(id [16]byte, n byte, root, isError bool) *tracepb.Span {
	s := &tracepb.Span{TraceId: id[:], SpanId: []byte{n, 0, 0, 0, 0, 0, 0, 1}, Name: "op",
		StartTimeUnixNano: 1_700_000_000_000_000_000, EndTimeUnixNano: 1_700_000_000_100_000_000}
	if !root {
		s.ParentSpanId = []byte{1, 0, 0, 0, 0, 0, 0, 1}
	}
	if isError {
		s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
	}
	return s
}

// exportSpans sends spans to n's OTLP/gRPC listener in one request.
func exportSpans(t *testing.T, n *node.Node, spans ...*tracepb.Span) {
	t.Helper()
	conn, err := grpc.NewClient(n.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "checkout"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}}}
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

// With --durability=wal in a cluster, the client's OK waits for the owner
// of each trace: right after the OK, the owner has the spans (logged), and
// nothing waits in a forward queue. When the owner does not answer, the
// receiving node takes the spans itself before the OK.
func TestClusterWALForwardsBeforeOK(t *testing.T) {
	sk := startSink(t)
	dir := t.TempDir()
	i := 0
	nodes := startCluster(t, 2, sk.addr, func(c *node.Config) {
		c.DataDir, c.Durability = filepath.Join(dir, fmt.Sprint(i)), node.DurabilityWAL
		i++
	})
	ring := nodes[0].Cluster().Router().Ring()
	owned := func(by string, n int) [][16]byte {
		var ids [][16]byte
		for x := 0; len(ids) < n; x++ {
			id := [16]byte{9, byte(x >> 8), byte(x)}
			if ring.Members()[ring.Owner(&id)].Name == by {
				ids = append(ids, id)
			}
		}
		return ids
	}
	var spans []*tracepb.Span
	for _, id := range owned("node-1", 10) {
		spans = append(spans, span(id, 1, false, false))
	}
	exportSpans(t, nodes[0], spans...)
	if s0, s1 := nodes[0].Stats(), nodes[1].Stats(); s1.Buffered != 10 || s0.Forwarded != 10 || s0.ForwardQueued != 0 {
		t.Fatalf("right after the OK: owner buffers %d spans, sender forwarded %d with %d queued; want 10, 10, 0", s1.Buffered, s0.Forwarded, s0.ForwardQueued)
	}

	// The owner crashes; until gossip notices, its traces still route to
	// it: the sender keeps them, logged, before answering.
	nodes[1].Abort()
	spans = spans[:0]
	for _, id := range owned("node-1", 20)[10:] {
		spans = append(spans, span(id, 1, false, false))
	}
	exportSpans(t, nodes[0], spans...)
	s0 := nodes[0].Stats()
	kept := metricstest.Value(t, nodes[0].Registry(), "tailsift_cluster_forward_requeued_spans_total", map[string]string{"outcome": "kept_local"})
	if s0.Buffered != 10 || kept != 10 || s0.ForwardQueued != 0 {
		t.Fatalf("owner down: sender buffers %d spans (%.0f kept local), %d queued; want 10, 10, 0", s0.Buffered, kept, s0.ForwardQueued)
	}
	if wal := metricstest.Value(t, nodes[0].Registry(), "tailsift_buffer_wal_commits_total", nil); wal == 0 {
		t.Fatal("the spans kept locally were not logged")
	}
	// Let gossip drop the dead node, so shutting down hands off nothing to it.
	waitFor(t, func() bool { return len(nodes[0].Cluster().Members()) == 1 }, "the dead node to leave the ring")
}

// A node recovers what another node had logged and not decided: here the
// data directory of a running node is copied (as a crash would leave it)
// and a second node starts on the copy, with the log now off. It decides
// the recovered traces (the error ones reach the backend), and their
// records are gone once decided, so they are not recovered again.
func TestRecoverCopiedDataDir(t *testing.T) {
	dir := t.TempDir()
	sk := startSink(t)
	cfg := errorsOnlyConfig(t, sk)
	cfg.DataDir, cfg.Durability = filepath.Join(dir, "a"), node.DurabilityWAL
	cfg.DecisionWait, cfg.RootWait = time.Hour, time.Hour
	a, err := node.New(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	var ids [][16]byte
	for i := range 6 {
		id := [16]byte{7, byte(i)}
		ids = append(ids, id)
		exportSpans(t, a, span(id, 1, true, i%3 == 0), span(id, 2, false, false))
	}
	copyDir(t, cfg.DataDir, filepath.Join(dir, "b")) // the OK means logged: copy at once

	cfg.DataDir, cfg.Durability, cfg.RootWait = filepath.Join(dir, "b"), node.DurabilityNone, 100*time.Millisecond
	b, err := node.New(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := waitQuiet(t, b, time.Minute)
	if s.Recovered != 12 || s.TracesKept != 2 || s.TracesDropped != 4 {
		t.Fatalf("recovered %d spans, kept %d traces, dropped %d: want 12, 2, 4", s.Recovered, s.TracesKept, s.TracesDropped)
	}
	checkAccounting(t, s)
	for i, id := range ids {
		if got, want := len(sk.received(trace.TraceID(id))), map[bool]int{true: 2, false: 0}[i%3 == 0]; got != want {
			t.Errorf("trace %d: %d spans at the backend, want %d", i, got, want)
		}
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Started again on the copy: nothing left to recover.
	c, err := node.New(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown(context.Background())
	if r := c.Stats().Recovered; r != 0 {
		t.Fatalf("%d spans recovered a second time", r)
	}
}

// copyDir copies the files of src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// errorsOnlyConfig is a one-node config on loopback forwarding to sk, whose
// policies keep error traces and drop the rest.
func errorsOnlyConfig(t *testing.T, sk *sink) node.Config {
	t.Helper()
	policies := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(policies, []byte("rules:\n  - name: errors\n    type: error\ndefault: drop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "", "", ""
	cfg.Forward, cfg.Policies = sk.addr, policies
	return cfg
}
