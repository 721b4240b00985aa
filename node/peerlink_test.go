package node_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tailsift/tailsift/cluster"
	"github.com/tailsift/tailsift/internal/rawcodec"
	"github.com/tailsift/tailsift/internal/testpki"
	"github.com/tailsift/tailsift/node"
)

// TestPublicPortIsNotThePeerLink: what peers send each other, sent by a
// client to the public OTLP/gRPC port, is refused or ignored and changes
// nothing. A hand-off (with it, forged decisions) and an explain call are
// Unimplemented there; the hops mark is ignored, so spans of a trace
// another node owns still go to their owner, counted as client spans.
// The same calls on the peer link reach the peer service.
func TestPublicPortIsNotThePeerLink(t *testing.T) {
	tt := startThreeTraces(t, 6)
	nodes := tt.nodes
	before := [2]node.Stats{nodes[0].Stats(), nodes[1].Stats()}
	beforeClu := [2]cluster.Stats{nodes[0].Cluster().Stats(), nodes[1].Cluster().Stats()}

	call := func(addr, method string, body []byte) error {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var resp []byte
		return conn.Invoke(ctx, method, &body, &resp, grpc.ForceCodecV2(rawcodec.Codec{}))
	}
	for _, n := range nodes {
		for _, m := range []string{"/tailsift.cluster.v1.Peer/Handoff", "/tailsift.cluster.v1.Peer/Explain"} {
			if err := call(n.GRPCAddr().String(), m, []byte{1, 2, 3}); status.Code(err) != codes.Unimplemented {
				t.Errorf("%s on the public OTLP port: %v, want Unimplemented", m, err)
			}
		}
	}
	// On the peer link the service answers (here: the body is not a
	// hand-off, and not a trace ID).
	if err := call(nodes[1].Cluster().PeerAddr().String(), "/tailsift.cluster.v1.Peer/Handoff", []byte{1, 2, 3}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a malformed hand-off on the peer link: %v, want InvalidArgument", err)
	}

	// Spans of the pending trace (node-1 owns it) sent to node-0 with the
	// largest hop count: a client claiming they were routed already.
	conn, err := grpc.NewClient(nodes[0].GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), cluster.HopsKey, "2")
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "checkout"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span(tt.pending, 3, false, false)}}},
	}}}
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return nodes[1].Cluster().Stats().ReceivedPeer > beforeClu[1].ReceivedPeer }, "the marked span forwarded to its owner")
	if x := explainAt(t, nodes[1], tt.pending); x.Status != "pending" || x.Spans != 2 {
		t.Errorf("the owner holds %d spans of the pending trace (%s), want 2: the marked span kept on the wrong node?", x.Spans, x.Status)
	}
	c0 := nodes[0].Cluster().Stats()
	if c0.ReceivedClient != beforeClu[0].ReceivedClient+1 || c0.ReceivedPeer != beforeClu[0].ReceivedPeer {
		t.Errorf("node-0 counted the marked span as client %d→%d, peer %d→%d; want one more client span, no peer span",
			beforeClu[0].ReceivedClient, c0.ReceivedClient, beforeClu[0].ReceivedPeer, c0.ReceivedPeer)
	}
	// Nothing the refused calls carried was taken: no hand-off arrived,
	// and the decided traces stay decided as before.
	for i, n := range nodes {
		if got := n.Cluster().Stats().HandoffIn; got != beforeClu[i].HandoffIn {
			t.Errorf("node-%d took %d hand-off spans", i, got-beforeClu[i].HandoffIn)
		}
		if s := n.Stats(); s.TracesKept != before[i].TracesKept || s.TracesDropped != before[i].TracesDropped {
			t.Errorf("node-%d's decisions changed: kept %d→%d, dropped %d→%d", i, before[i].TracesKept, s.TracesKept, before[i].TracesDropped, s.TracesDropped)
		}
	}
}

// TestPeerLinkAuthentication: with a gossip key and peer certificates,
// nodes forward to each other over mutual TLS with the key's token; a
// caller with a certificate of another CA, or none, is refused in the
// handshake, and one with the right certificate but without the token (or
// another key's) is refused Unauthenticated. Nothing of theirs is taken.
func TestPeerLinkAuthentication(t *testing.T) {
	peers, other := testpki.NewCA(t, "peers"), testpki.NewCA(t, "other")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "gossip.key")
	testpki.WriteFile(t, keyFile, []byte(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))), 0o600)
	files := testpki.WriteFiles(t, dir, "peer", peers.Peer(t, "tailsift-peer"), peers)
	sk := startSink(t)
	nodes := startCluster(t, 2, sk.addr, func(c *node.Config) {
		c.Policies = keepAllPolicies(t)
		c.ClusterKeyFile = keyFile
		c.PeerTLSCertFile, c.PeerTLSKeyFile, c.PeerTLSCAFile = files.Cert, files.Key, files.CA
		c.PeerTLSServerName = "tailsift-peer"
	})
	waitFor(t, func() bool { return len(nodes[0].Cluster().Members()) == 2 && len(nodes[1].Cluster().Members()) == 2 }, "two members")

	// Real peers forward over the authenticated link: traces sent to one
	// node arrive whole, from whichever owns them.
	ids := sendRepetitiveTraces(t, nodes[0], 40)
	waitReceived(t, sk, ids, 5)
	if fw := nodes[1].Cluster().Stats().ReceivedPeer; fw == 0 {
		t.Fatal("node-1 received no forwarded spans: the test did not test the peer link")
	}

	target := nodes[1].Cluster().PeerAddr().String()
	before := nodes[1].Cluster().Stats()
	export := func(tc *tls.Config, token string) error {
		creds := insecure.NewCredentials()
		if tc != nil {
			creds = credentials.NewTLS(tc)
		}
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		_, err = coltracepb.NewTraceServiceClient(conn).Export(ctx, &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
			ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span([16]byte{9, 9, 9}, 1, true, true)}}},
		}}})
		return err
	}
	withCert := func(ca *testpki.CA) *tls.Config {
		return &tls.Config{RootCAs: peers.Pool(), ServerName: "tailsift-peer", Certificates: []tls.Certificate{ca.Peer(t, "intruder").TLS(t)}}
	}
	key, err := cluster.ReadKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	token := cluster.PeerToken(key)
	for name, err := range map[string]error{
		"plaintext":                   export(nil, ""),
		"no client certificate":       export(&tls.Config{RootCAs: peers.Pool(), ServerName: "tailsift-peer"}, ""),
		"a certificate of another CA": export(withCert(other), ""),
	} {
		if err == nil || status.Code(err) == codes.Unauthenticated {
			t.Errorf("%s: %v, want the handshake refused", name, err)
		}
	}
	if err := export(withCert(peers), ""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the right certificate without the token: %v, want Unauthenticated", err)
	}
	if err := export(withCert(peers), strings.Repeat("0", len(token))); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the right certificate with a wrong token: %v, want Unauthenticated", err)
	}
	after := nodes[1].Cluster().Stats()
	if after.ReceivedPeer != before.ReceivedPeer || after.HandoffIn != before.HandoffIn {
		t.Errorf("refused callers changed node-1's peer spans: %d→%d", before.ReceivedPeer, after.ReceivedPeer)
	}
	if err := export(withCert(peers), token); err != nil {
		t.Errorf("the right certificate and token: %v (the checks above would pass for a link that takes nothing)", err)
	}
}
