package node_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tailsift/tailsift/cluster"
	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/node"
)

// fastFailure makes memberlist declare a stopped node dead in about a
// second on loopback, and gives up on unreachable peers quickly.
func fastFailure(c *cluster.Config) {
	c.ProbeInterval, c.SuspicionMult = 200*time.Millisecond, 2
	c.ForwardRetryMaxElapsed = 5 * time.Second
	c.RejoinInterval = time.Second
}

// startCluster starts n nodes on loopback that join the first one, and
// waits until each sees all of them.
func startCluster(t *testing.T, n int, forward string, adjust ...func(*node.Config)) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	for i := range n {
		cfg := node.DefaultConfig()
		cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "", "127.0.0.1:0", "127.0.0.1:0"
		cfg.NodeName, cfg.Forward, cfg.PeerListen = fmt.Sprintf("node-%d", i), forward, "127.0.0.1:0"
		cfg.DecisionWait, cfg.RootWait = 10*time.Second, 500*time.Millisecond
		for _, f := range adjust {
			f(&cfg)
		}
		if i > 0 {
			cfg.Join = []string{nodes[0].Cluster().GossipAddr()}
		}
		nd, err := node.New(cfg, node.Options{Cluster: fastFailure})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Shutdown(context.Background()) })
		nodes = append(nodes, nd)
	}
	waitFor(t, func() bool {
		for _, nd := range nodes {
			if len(nd.Cluster().Members()) != n {
				return false
			}
		}
		return true
	}, fmt.Sprintf("%d nodes to see each other", n))
	return nodes
}

// One trace whose three spans are sent by three SDKs to three different
// nodes arrives at the backend whole, once, decided by root_wait (so by
// one node that had the root), and every node's accounting adds up.
// decision_wait is an hour: a trace that arrives at all was decided by its
// root, however long a busy machine takes to get it there. The roots end
// once the children have reached their trace's owner: root_wait (500ms)
// is for children that end after the root, not for forwarding delays,
// which a busy machine stretches past it.
func TestClusterGathersTrace(t *testing.T) {
	sk := startSink(t)
	nodes := startCluster(t, 3, sk.addr, func(c *node.Config) { c.DecisionWait, c.MaxTraceAge = time.Hour, time.Hour })
	ctx := context.Background()
	var tps []*sdktrace.TracerProvider
	for _, nd := range nodes {
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(nd.GRPCAddr().String()), otlptracegrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		t.Cleanup(func() { tp.Shutdown(ctx) })
		tps = append(tps, tp)
	}
	var ids []trace.TraceID
	var roots []trace.Span
	for i := range 20 {
		rootCtx, root := tps[i%3].Tracer("t").Start(ctx, "root")
		childCtx, child := tps[(i+1)%3].Tracer("t").Start(rootCtx, "child")
		_, leaf := tps[(i+2)%3].Tracer("t").Start(childCtx, "leaf")
		leaf.SetStatus(codes.Error, "boom") // kept by the error rule
		leaf.End()
		child.End()
		roots = append(roots, root)
		ids = append(ids, root.SpanContext().TraceID())
	}
	waitFor(t, func() bool {
		var buffered int64
		for _, nd := range nodes {
			s := nd.Stats()
			if s.ForwardQueued != 0 {
				return false
			}
			buffered += s.Buffered
		}
		return buffered == 2*int64(len(roots))
	}, "every child buffered at its trace's owner")
	for _, root := range roots {
		root.End()
	}
	start := time.Now()
	defer func() {
		if t.Failed() {
			for i, nd := range nodes {
				t.Logf("node %d: %+v %+v", i, nd.Stats(), nd.Cluster().Stats())
			}
		}
	}()
	waitFor(t, func() bool {
		for _, id := range ids {
			if len(sk.received(id)) < 3 {
				return false
			}
		}
		return true
	}, "every trace at the sink")
	t.Logf("all traces arrived %v after the last root", time.Since(start))
	for _, id := range ids {
		for sid, n := range sk.received(id) {
			if n != 1 {
				t.Errorf("trace %s span %s received %d times", id, sid, n)
			}
		}
	}
	var total node.Stats
	for i, nd := range nodes {
		s := nd.Stats()
		if s.Accepted != s.Out() {
			t.Errorf("node %d accounting: %+v", i, s)
		}
		total = total.Plus(s)
	}
	if total.ClientAccepted != 60 || total.Forwarded == 0 {
		t.Errorf("cluster: %d spans from clients (want 60), %d forwarded", total.ClientAccepted, total.Forwarded)
	}
}

// Adaptive and rate-limit targets are cluster-wide: each node applies the
// share of the trace-ID space it owns, so once the nodes agree on the
// members the shares sum to one, also after a node leaves. A node shows a
// new ring in Members a moment before it applies the new share, so the
// test waits for the shares to settle (a node stuck on a stale share
// fails it when the wait runs out).
func TestClusterShareOfTargets(t *testing.T) {
	nodes := startCluster(t, 3, "stdout")
	shares := func(nodes []*node.Node) (sum float64, each []float64) {
		for _, nd := range nodes {
			v := metricstest.Value(t, nd.Registry(), "tailsift_decision_cluster_share", nil)
			each = append(each, v)
			sum += v
		}
		return sum, each
	}
	settled := func(nodes []*node.Node) func() bool {
		return func() bool { sum, _ := shares(nodes); return math.Abs(sum-1) <= 1e-9 }
	}
	waitFor(t, settled(nodes), "the shares of 3 nodes to sum to 1")
	_, each := shares(nodes)
	for _, v := range each {
		if v < 0.25 || v > 0.42 {
			t.Errorf("node share %.3f of 3, want about 1/3 (all: %v)", v, each)
		}
	}
	if err := nodes[2].Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return len(nodes[0].Cluster().Members()) == 2 && len(nodes[1].Cluster().Members()) == 2
	}, "the others to see the leave")
	waitFor(t, settled(nodes[:2]), "after a leave, the shares of 2 nodes to sum to 1")
}

// /readyz answers 503 until the node has joined a peer given by --join,
// and 200 once it has; a node without --join is ready at once.
func TestReadyzWaitsForJoin(t *testing.T) {
	readyz := func(nd *node.Node) int {
		resp, err := http.Get("http://" + nd.AdminAddr().String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// A peer address nobody listens on yet: reserve a port, then free it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peerGossip := lis.Addr().String()
	lis.Close()

	cfg := node.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "", "127.0.0.1:0", "127.0.0.1:0"
	cfg.PeerListen = "127.0.0.1:0"
	cfg.NodeName, cfg.Forward, cfg.Join = "waiting", "stdout", []string{peerGossip}
	waiting, err := node.New(cfg, node.Options{Cluster: fastFailure})
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Shutdown(context.Background())
	time.Sleep(300 * time.Millisecond) // a join round has failed by now
	if code := readyz(waiting); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d before any peer is reachable, want 503", code)
	}

	// The peer starts on that address: the next join round reaches it.
	pcfg := cfg
	pcfg.NodeName, pcfg.ClusterBind, pcfg.Join, pcfg.PeerListen = "peer", peerGossip, nil, "127.0.0.1:0"
	peer, err := node.New(pcfg, node.Options{Cluster: fastFailure})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Shutdown(context.Background())
	if code := readyz(peer); code != http.StatusOK {
		t.Fatalf("/readyz = %d on a node with no --join, want 200", code)
	}
	waitFor(t, func() bool { return readyz(waiting) == http.StatusOK }, "the node to join and be ready")
	if n := len(waiting.Cluster().Members()); n != 2 {
		t.Fatalf("ready with %d members", n)
	}
}

// Spans forwarded to a node that crashed are not lost: the forward fails,
// and once gossip has removed the node the batch is routed again, to the
// trace's new owner. The forward budget comes back to zero.
func TestClusterReroutesAfterPeerDies(t *testing.T) {
	sk := startSink(t)
	nodes := startCluster(t, 3, sk.addr)
	ring := nodes[0].Cluster().Router().Ring()
	dead := ring.Index("node-2")
	nodes[2].Abort()

	// Error traces (kept by the example policies) that node-2 owns, sent
	// to node-0 before anyone has noticed the crash.
	rng := rand.New(rand.NewPCG(5, 5))
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{{}}}}}
	var ids []trace.TraceID
	for len(ids) < 20 {
		var id [16]byte
		copy(id[:], otlptest.TraceID(rng))
		if ring.Owner(&id) != dead {
			continue
		}
		ids = append(ids, id)
		now := uint64(time.Now().UnixNano())
		req.ResourceSpans[0].ScopeSpans[0].Spans = append(req.ResourceSpans[0].ScopeSpans[0].Spans, &tracepb.Span{
			TraceId: id[:], SpanId: otlptest.SpanID(rng), Name: "GET /fail",
			StartTimeUnixNano: now - 1e6, EndTimeUnixNano: now,
			Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR},
		})
	}
	conn, err := grpc.NewClient(nodes[0].GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		for _, id := range ids {
			if len(sk.received(id)) != 1 {
				return false
			}
		}
		return true
	}, "the traces at the sink after the crash")
	for _, id := range ids {
		for _, n := range sk.received(id) {
			if n != 1 {
				t.Fatalf("trace %s: span received %d times", id, n)
			}
		}
	}
	cs := nodes[0].Cluster().Stats()
	if cs.Rerouted == 0 || cs.Lost != 0 {
		t.Fatalf("node-0: %+v, want the batch rerouted and nothing lost", cs)
	}
	waitFor(t, func() bool {
		return metricstest.Value(t, nodes[0].Registry(), "tailsift_cluster_forward_queue_bytes", nil) == 0
	}, "the forward budget to come back to zero")
	if s := nodes[0].Stats(); s.Accepted != s.Out() {
		t.Fatalf("node-0 accounting: %+v", s)
	}
}

// With --cluster-key-file gossip is encrypted: nodes with the same key
// form a cluster; a node with another key cannot join. The join address is
// a host name, resolved as --join does for a DNS service.
func TestClusterGossipKey(t *testing.T) {
	dir := t.TempDir()
	writeKey := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	key := writeKey("key", []byte(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))+"\n"))
	otherKey := writeKey("other", []byte(base64.StdEncoding.EncodeToString([]byte("fedcba9876543210"))))
	start := func(name, keyFile string, join []string) *node.Node {
		cfg := node.DefaultConfig()
		cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "", "", "127.0.0.1:0"
		cfg.PeerListen = "127.0.0.1:0"
		cfg.NodeName, cfg.Forward, cfg.ClusterKeyFile, cfg.Join = name, "stdout", keyFile, join
		nd, err := node.New(cfg, node.Options{Cluster: fastFailure})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Shutdown(context.Background()) })
		return nd
	}
	first := start("first", key, nil)
	_, port, _ := net.SplitHostPort(first.Cluster().GossipAddr())
	second := start("second", key, []string{net.JoinHostPort("localhost", port)})
	waitFor(t, func() bool { return len(first.Cluster().Members()) == 2 && second.Cluster().Ready() },
		"nodes with the same key to join")

	stranger := start("stranger", otherKey, []string{first.Cluster().GossipAddr()})
	keyless := start("keyless", "", []string{first.Cluster().GossipAddr()})
	time.Sleep(time.Second) // several join rounds
	for _, n := range []*node.Node{stranger, keyless} {
		if n.Cluster().Ready() || len(n.Cluster().Members()) != 1 || len(first.Cluster().Members()) != 2 {
			t.Fatalf("node %s (another key, or none) joined: it sees %d members, first sees %d",
				n.Cluster().Name(), len(n.Cluster().Members()), len(first.Cluster().Members()))
		}
	}

	bad := node.DefaultConfig()
	bad.OTLPGRPC, bad.OTLPHTTP, bad.Admin, bad.ClusterBind = "127.0.0.1:0", "", "", "127.0.0.1:0"
	bad.PeerListen = "127.0.0.1:0"
	for file, want := range map[string]string{
		writeKey("short", []byte(base64.StdEncoding.EncodeToString([]byte("too short")))): "16, 24 or 32 bytes, got 9",
		writeKey("raw", []byte("0123456789abcdef0123456789abcde!")):                       "not base64",
	} {
		bad.ClusterKeyFile = file
		if _, err := node.New(bad, node.Options{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", filepath.Base(file), err, want)
		}
	}
}

// threeTraces is a two-node cluster (errors-only policies, an hour's
// decision wait) that node-0 was sent three traces node-1 owns: kept (an
// error), dropped, and pending (no root). node-1 has decided the first two.
type threeTraces struct {
	sink                   *sink
	nodes                  []*node.Node
	kept, dropped, pending [16]byte
	sent                   time.Time // just before the first span was sent
}

// startThreeTraces builds a threeTraces with trace IDs that begin with
// idPrefix.
func startThreeTraces(t *testing.T, idPrefix byte) threeTraces {
	t.Helper()
	sk := startSink(t)
	policies := errorsOnlyConfig(t, sk).Policies
	tt := threeTraces{sink: sk, nodes: startCluster(t, 2, sk.addr, func(c *node.Config) {
		c.Policies, c.RootWait, c.DecisionWait = policies, 200*time.Millisecond, time.Hour
	})}
	ring := tt.nodes[0].Cluster().Router().Ring()
	var ids [][16]byte // owned by node-1
	for x := 0; len(ids) < 3; x++ {
		id := [16]byte{idPrefix, byte(x >> 8), byte(x)}
		if ring.Members()[ring.Owner(&id)].Name == "node-1" {
			ids = append(ids, id)
		}
	}
	tt.kept, tt.dropped, tt.pending = ids[0], ids[1], ids[2]
	tt.sent = time.Now()
	exportSpans(t, tt.nodes[0], span(tt.kept, 1, true, false), span(tt.kept, 2, false, true), span(tt.dropped, 1, true, false),
		span(tt.pending, 2, false, false)) // no root: waits an hour
	waitFor(t, func() bool { s := tt.nodes[1].Stats(); return s.TracesKept == 1 && s.TracesDropped == 1 }, "two traces decided")
	return tt
}
