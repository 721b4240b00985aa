package cluster

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tailsift/tailsift/internal/otlpserver"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/rawcodec"
)

// The peer link is the listener (PeerListen) where peers forward spans
// (OTLP Export, with the HopsKey mark), hand off traces and ask for
// explanations. None of it is served on the client-facing OTLP
// listeners, where the mark is ignored: a client cannot pass its spans off
// as routed, nor send a hand-off or call explain.
type peerLink struct {
	lis    net.Listener
	srv    *grpc.Server
	slots  chan struct{} // one per request in progress
	reqs   sync.Pool     // *otlpwire.Request
	done   chan struct{} // closed when Serve returns
	served bool

	key     []byte // the gossip key: callers must show its token (none without a key)
	metrics *metrics
	notify  func(event string, args ...any) // Config.SecurityEvent, or nil
}

// listenPeer binds the peer link; serving starts with Start.
func (c *Cluster) listenPeer() error {
	lis, err := net.Listen("tcp", c.cfg.PeerListen)
	if err != nil {
		return fmt.Errorf("peer_listen (--peer-listen): %w (each node on a host needs its own port)", err)
	}
	p := &peerLink{lis: lis, slots: make(chan struct{}, c.cfg.PeerConcurrentRequests), done: make(chan struct{}),
		key: c.cfg.SecretKey, notify: c.cfg.SecurityEvent}
	p.reqs.New = func() any { return new(otlpwire.Request) }
	creds := insecure.NewCredentials()
	if c.cfg.PeerServerTLS != nil {
		creds = credentials.NewTLS(c.cfg.PeerServerTLS)
	}
	p.srv = grpc.NewServer(
		grpc.Creds(creds),
		grpc.ForceServerCodecV2(rawcodec.Codec{}),
		grpc.MaxRecvMsgSize(c.cfg.PeerMaxRequestBytes),
		grpc.MaxConcurrentStreams(uint32(c.cfg.PeerConcurrentRequests)),
		grpc.InTapHandle(p.admit),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	)
	otlpserver.RegisterTraceService(p.srv, func(ctx context.Context, body []byte) error {
		return c.receiveForward(ctx, p, body)
	}, nil, otlpserver.NewBuffers(64<<10, c.cfg.PeerMaxRequestBytes))
	registerPeer(p.srv, c.receiveHandoff, c.explainHere)
	c.peer = p
	return nil
}

// peerBusy is the answer past PeerConcurrentRequests: retry shortly.
var peerBusy = func() error {
	st, _ := status.New(codes.ResourceExhausted, "peer link busy: too many requests in progress").
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(100 * time.Millisecond)})
	return st.Err()
}()

// peerUnauthenticated answers a caller without the gossip key's token.
var peerUnauthenticated = status.Error(codes.Unauthenticated, "the peer link takes calls from nodes of this cluster only (their gossip key's token)")

// admit checks the caller's token and takes a slot for a new stream,
// before its message is read. ctx is the stream's, which gRPC cancels when
// the stream ends, whatever becomes of it: that gives the slot back.
func (p *peerLink) admit(ctx context.Context, info *tap.Info) (context.Context, error) {
	if !authorized(info.Header.Get("authorization"), p.key) {
		p.metrics.peerAuthFailures.Add(1)
		if p.notify != nil {
			remote := ""
			if pr, ok := grpcpeer.FromContext(ctx); ok {
				remote = pr.Addr.String()
			}
			p.notify("peer_auth_failure", "remote", remote, "method", info.FullMethodName)
		}
		return nil, peerUnauthenticated
	}
	select {
	case p.slots <- struct{}{}:
		context.AfterFunc(ctx, p.release)
		return ctx, nil
	default:
		return ctx, peerBusy
	}
}

func (p *peerLink) release() { <-p.slots }

func (p *peerLink) serve(c *Cluster) {
	p.served = true
	go func() {
		defer close(p.done)
		if err := p.srv.Serve(p.lis); err != nil {
			c.log.Error("peer link stopped", "err", err)
		}
	}()
}

// stop ends the peer link: requests in progress finish until ctx is done.
func (p *peerLink) stop(ctx context.Context) {
	if !p.served {
		p.lis.Close()
		return
	}
	defer func() { <-p.done }()
	stopped := make(chan struct{})
	go func() { p.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		p.srv.Stop()
		<-stopped
	}
}

// receiveForward routes spans a peer forwarded, with the hop count it
// marked them with.
func (c *Cluster) receiveForward(ctx context.Context, p *peerLink, body []byte) error {
	req := p.reqs.Get().(*otlpwire.Request)
	defer func() { req.Reset(); p.reqs.Put(req) }()
	if err := req.Scan(body); err != nil {
		return status.Error(codes.InvalidArgument, "forwarded request: "+err.Error())
	}
	return c.router.consumeForwarded(ctx, req, hopsOf(ctx))
}

// PeerAddr is the peer link's address, or nil with clustering off.
func (c *Cluster) PeerAddr() net.Addr {
	if c.peer == nil {
		return nil
	}
	return c.peer.lis.Addr()
}
