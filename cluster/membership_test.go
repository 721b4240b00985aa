package cluster

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// idleEngine holds no traces: the membership tests route no spans.
type idleEngine struct{}

func (idleEngine) Consume(context.Context, *otlpwire.Request, Input) error { return nil }
func (idleEngine) TakeMoved(_ func(*[16]byte) bool, dst []MovedTrace) []MovedTrace {
	return dst
}
func (idleEngine) Decisions(_ func(*[16]byte) bool, dst []Decision) []Decision { return dst }
func (idleEngine) AdoptDecisions([][]byte) error                               { return nil }
func (idleEngine) SetShare(float64)                                            {}
func (idleEngine) Explain([16]byte, string) []byte                             { return []byte("{}") }

type testNode struct {
	*Cluster
	t    *testing.T
	reg  *prometheus.Registry
	logs *otlptest.SyncBuffer
}

func (n *testNode) counter(name string) float64 {
	return metricstest.Value(n.t, n.reg, name, nil)
}

// startNode starts a real gossip node on loopback (port chosen by the
// kernel) that joins join. adjust may change its config first.
func startNode(t *testing.T, name, bind string, join []string, adjust ...func(*Config)) *testNode {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeName, cfg.Bind, cfg.Join, cfg.PeerListen = name, bind, join, "127.0.0.1:0"
	cfg.ProbeInterval, cfg.SuspicionMult = 200*time.Millisecond, 2
	cfg.RejoinInterval, cfg.NameConflictHold = 500*time.Millisecond, 2*time.Second
	for _, f := range adjust {
		f(&cfg)
	}
	n := &testNode{t: t, reg: prometheus.NewRegistry(), logs: &otlptest.SyncBuffer{}}
	c, err := New(cfg, idleEngine{}, n.reg, slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	n.Cluster = c
	t.Cleanup(func() {
		c.Close(context.Background())
		if t.Failed() {
			t.Logf("log of %s:\n%s", c.Name(), n.logs.String())
		}
	})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkLeaks fails t if goroutines it started outlive its cleanups
// (registered first, so it runs after the nodes' Close).
func checkLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// waitUntil polls cond for up to 30s, long enough for a busy machine.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 30s waiting for %s", what)
		}
	}
}

// Without node_name every node is named after its host and gossip port,
// resolved after binding (port 0 here), so nodes on one host differ and
// form one cluster. With clustering off the name is the host name.
func TestDefaultNodeName(t *testing.T) {
	checkLeaks(t)
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no host name:", err)
	}
	first := startNode(t, "", "127.0.0.1:0", nil)
	second := startNode(t, "", "127.0.0.1:0", []string{first.GossipAddr()})
	for _, n := range []*testNode{first, second} {
		_, port, _ := net.SplitHostPort(n.GossipAddr())
		if want := host + "-" + port; n.Name() != want || port == "0" {
			t.Errorf("node gossiping on %s is named %q, want %q", n.GossipAddr(), n.Name(), want)
		}
	}
	waitUntil(t, "two nodes with default names in one ring", func() bool {
		return first.Ready() && second.Ready() && len(first.Members()) == 2 && len(second.Members()) == 2
	})

	alone, err := New(Config{}, idleEngine{}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer alone.Close(context.Background())
	if alone.Name() != host {
		t.Errorf("with clustering off the node is named %q, want the host name %q", alone.Name(), host)
	}
}

// Two nodes with one name (as when several nodes on one host all took the
// host name) cannot form a cluster: memberlist keeps the member it knew.
// Both must say so, not run as two single-node clusters: not ready with a
// reason naming the other's address, a counter, an error log line. Once
// the other node is gone the survivor is ready again.
func TestNameConflictNotReady(t *testing.T) {
	checkLeaks(t)
	first := startNode(t, "dup", "127.0.0.1:0", nil)
	second := startNode(t, "dup", "127.0.0.1:0", []string{first.GossipAddr()})
	for _, c := range []struct{ n, other *testNode }{{first, second}, {second, first}} {
		want := `node name "dup" is also used by the node at ` + c.other.GossipAddr()
		waitUntil(t, "the conflict to show at "+c.n.GossipAddr(), func() bool {
			return strings.Contains(c.n.NotReady(), want)
		})
		if reason := c.n.NotReady(); !strings.Contains(reason, "node_name (--node-name)") {
			t.Errorf("%s: not ready because %q; want the fix (node_name) named", c.n.GossipAddr(), reason)
		}
		if v := c.n.counter("tailsift_cluster_name_conflicts_total"); v < 1 {
			t.Errorf("%s: tailsift_cluster_name_conflicts_total = %v, want >= 1", c.n.GossipAddr(), v)
		}
		lines := c.n.logs.Lines(`level=ERROR msg="another node uses this node's name`)
		if len(lines) == 0 || !strings.Contains(lines[0], "other_node="+c.other.GossipAddr()) ||
			!strings.Contains(lines[0], "node_name (--node-name)") {
			t.Errorf("%s: error lines %q; want one naming the other node and node_name", c.n.GossipAddr(), lines)
		}
		if m := len(c.n.Members()); m != 1 {
			t.Errorf("%s: %d members in the ring, want only itself", c.n.GossipAddr(), m)
		}
	}
	// A node with another name joins the first; the second, leaving, sends
	// no leave message in the name, which would make peers drop the first.
	third := startNode(t, "third", "127.0.0.1:0", []string{first.GossipAddr()})
	waitUntil(t, "the third node in the first's ring", func() bool { return len(first.Members()) == 2 && third.Ready() })
	if err := second.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	second.Close(context.Background())
	if len(second.logs.Lines("leaving without a leave message")) != 1 {
		t.Errorf("the second node left without saying it sent no leave message")
	}
	if len(third.Members()) != 2 || len(first.Members()) != 2 {
		t.Errorf("after the duplicate left: the first sees %d members, the third %d; want 2", len(first.Members()), len(third.Members()))
	}
	// The second node's rejoins kept the first not ready; now that it is
	// gone the first is ready again after NameConflictHold.
	waitUntil(t, "the first node to be ready once the other is gone", first.Ready)
}

// A node that cannot reach its --join peer is not ready and says why, with
// a counter and a rate-limited log line; it joins once the peer is up.
func TestJoinUnreachableNotReady(t *testing.T) {
	checkLeaks(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peerAddr := lis.Addr().String() // reserved, then freed: nobody listens there yet
	lis.Close()

	start := time.Now()
	n := startNode(t, "waiting", "127.0.0.1:0", []string{peerAddr})
	waitUntil(t, "three failed join rounds", func() bool { return n.counter("tailsift_cluster_join_failures_total") >= 3 })
	if reason := n.NotReady(); n.Ready() || !strings.HasPrefix(reason, "not joined to the cluster yet: failed to join "+peerAddr) ||
		strings.Contains(reason, "\n") {
		t.Fatalf("after failed joins: ready %v, reason %q; want not ready, naming %s on one line", n.Ready(), reason, peerAddr)
	}
	// One line per 10s, however often the node retries.
	lines := n.logs.Lines("cannot join the cluster yet")
	if limit := 1 + int(time.Since(start)/(10*time.Second)); len(lines) == 0 || len(lines) > limit {
		t.Fatalf("%d 'cannot join' lines in %v, want 1 to %d:\n%s", len(lines), time.Since(start), limit, strings.Join(lines, ""))
	}

	peer := startNode(t, "peer", peerAddr, nil)
	waitUntil(t, "the node to join the peer", func() bool { return n.Ready() && len(n.Members()) == 2 && len(peer.Members()) == 2 })
	if len(n.logs.Lines(`msg="joined the cluster"`)) != 1 {
		t.Errorf("no 'joined the cluster' line after the failures")
	}
}

// A --join name that does not resolve used to count as "no address to
// join": the node was ready as a cluster of one. It is not ready now.
func TestJoinUnresolvableNotReady(t *testing.T) {
	checkLeaks(t)
	const name = "tailsift-peers.invalid" // RFC 6761: never resolves
	if _, err := net.LookupHost(name); err == nil {
		t.Skip("this resolver answers for .invalid")
	}
	n := startNode(t, "lonely", "127.0.0.1:0", []string{name + ":7946"})
	waitUntil(t, "two failed join rounds", func() bool { return n.counter("tailsift_cluster_join_failures_total") >= 2 })
	if n.Ready() || !strings.Contains(n.NotReady(), name) {
		t.Fatalf("ready %v, reason %q; want not ready, naming %s", n.Ready(), n.NotReady(), name)
	}
}

// New binds the gossip port (the default name needs it); Close releases
// it even if Start never ran, and even if a peer has already sent to it.
func TestCloseWithoutStart(t *testing.T) {
	checkLeaks(t)
	cfg := DefaultConfig()
	cfg.Bind, cfg.PeerListen = "127.0.0.1:0", "127.0.0.1:0"
	c, err := New(cfg, idleEngine{}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	port := c.transport.GetAutoBindPort()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conn, err := net.Dial("tcp", addr) // accepted, then waits for a memberlist that never reads
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if u, err := net.Dial("udp", addr); err == nil {
		u.Write([]byte("ping"))
		u.Close()
	}
	done := make(chan error, 1)
	go func() { done <- c.Close(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close hung on the unused gossip listeners")
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("gossip port still taken after Close: %v", err)
	}
	lis.Close()
}
