package cluster

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tailsift/tailsift/internal/otlpserver"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/rawcodec"
)

// A peer that leaves the ring while a forward to it is in flight must
// still get that forward's answer: the batch is delivered once and not
// routed again. (Closing the connection under the call failed it after
// the peer had taken the spans, and the reroute duplicated them.)
func TestRetiredPeerFinishesCallInFlight(t *testing.T) {
	var received, inFlight atomic.Int32
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawcodec.Codec{}))
	otlpserver.RegisterTraceService(srv, func(ctx context.Context, body []byte) error {
		inFlight.Add(1)
		time.Sleep(300 * time.Millisecond) // a slow peer: the call is still open when it is retired
		received.Add(1)
		return nil
	}, nil, otlpserver.NewBuffers(1<<10, 1<<20))
	go srv.Serve(lis)
	defer srv.Stop()

	cfg := DefaultConfig()
	cfg.ForwardBatchTimeout = 5 * time.Millisecond
	f := newForwarder(cfg, slog.New(slog.DiscardHandler), newMetrics(prometheus.NewRegistry(), func() float64 { return 0 }))
	var rerouted atomic.Int32
	f.reinject = func(_ []byte, _, _ int, _ bool) { rerouted.Add(1) }

	req, all := randomGroupedRequest(t, 1)
	if !f.reserve(tracesBytes(req, all)) {
		t.Fatal("budget")
	}
	peer := Member{Name: "peer", Addr: lis.Addr().String()}
	f.enqueue(peer, req, all, 1)
	for inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	f.setMembers(NewRing([]Member{{Name: "self"}}, 8)) // the peer left
	for f.pendingBytes() != 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if received.Load() != 1 || rerouted.Load() != 0 {
		t.Fatalf("peer received the batch %d times, %d reroutes: want 1 and 0", received.Load(), rerouted.Load())
	}
	f.closing.Store(true)
	if err := f.close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// peerAnswer is how a test peer answers the calls it gets: fail the first
// n with err, then accept.
type peerAnswer struct {
	err   error
	n     int32
	calls atomic.Int32
}

func (a *peerAnswer) answer() error {
	if a.calls.Add(1) <= a.n {
		return a.err
	}
	return nil
}

// randomGroupedRequest is a scanned, grouped random request, and the
// indexes of all its traces.
func randomGroupedRequest(t *testing.T, seed uint64) (*otlpwire.Request, []int32) {
	t.Helper()
	body, err := proto.Marshal(otlptest.RandomRequest(rand.New(rand.NewPCG(seed, seed))))
	if err != nil {
		t.Fatal(err)
	}
	var req otlpwire.Request
	if err := req.Scan(body); err != nil {
		t.Fatal(err)
	}
	req.GroupByTrace()
	all := make([]int32, len(req.Traces))
	for i := range all {
		all[i] = int32(i)
	}
	return &req, all
}

// startPeer serves the OTLP trace service and the peer service on
// loopback, both answering with a.
func startPeer(t *testing.T, a *peerAnswer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawcodec.Codec{}))
	otlpserver.RegisterTraceService(srv, func(context.Context, []byte) error { return a.answer() }, nil, otlpserver.NewBuffers(1<<10, 1<<20))
	registerPeer(srv, func(context.Context, []byte) error { return a.answer() }, func([]byte) ([]byte, error) { return nil, nil })
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// TestPeerRefusalsFollowOTLP: forwards and hand-offs retry what the OTLP
// specification calls transient and nothing else. A peer that refuses a
// request for good (INVALID_ARGUMENT for a malformed forward, INTERNAL,
// RESOURCE_EXHAUSTED without RetryInfo: a request over its size limit)
// would refuse it again: the spans are kept here after one attempt
// instead of after ForwardRetryMaxElapsed of retries.
func TestPeerRefusalsFollowOTLP(t *testing.T) {
	checkLeaks(t)
	retryInfo := func(code codes.Code) error {
		st, err := status.New(code, "busy").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(0)})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	req, all := randomGroupedRequest(t, 2)
	cfg := DefaultConfig()
	cfg.ForwardBatchTimeout = 5 * time.Millisecond
	cfg.ForwardRetryInitial, cfg.ForwardRetryMax = time.Millisecond, 5*time.Millisecond
	cfg.ForwardRetryMaxElapsed, cfg.HandoffRetryMaxElapsed = time.Minute, time.Minute // only a refusal ends the test early

	for _, tc := range []struct {
		name     string
		err      error
		failures int32 // answers err this many times, then OK
		calls    int32 // calls the peer gets
		kept     bool  // the spans are kept here (forward) / the hand-off fails
	}{
		{"INVALID_ARGUMENT", status.Error(codes.InvalidArgument, "malformed"), 100, 1, true},
		{"INTERNAL", status.Error(codes.Internal, "bug"), 100, 1, true},
		{"UNKNOWN", status.Error(codes.Unknown, "?"), 100, 1, true},
		{"RESOURCE_EXHAUSTED without RetryInfo", status.Error(codes.ResourceExhausted, "message larger than max"), 100, 1, true},
		{"UNAVAILABLE twice", status.Error(codes.Unavailable, "restarting"), 2, 3, false},
		{"RESOURCE_EXHAUSTED with RetryInfo twice", retryInfo(codes.ResourceExhausted), 2, 3, false},
	} {
		t.Run("forward "+tc.name, func(t *testing.T) {
			a := &peerAnswer{err: tc.err, n: tc.failures}
			addr := startPeer(t, a)
			f := newForwarder(cfg, slog.New(slog.DiscardHandler), newMetrics(prometheus.NewRegistry(), func() float64 { return 0 }))
			var keptLocal atomic.Int32
			f.reinject = func(_ []byte, _, _ int, keep bool) {
				if keep {
					keptLocal.Add(1)
				}
			}
			if !f.reserve(tracesBytes(req, all)) {
				t.Fatal("budget")
			}
			f.enqueue(Member{Name: "peer", Addr: addr}, req, all, 1)
			for f.pendingBytes() != 0 {
				time.Sleep(time.Millisecond)
			}
			f.closing.Store(true)
			if err := f.close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := a.calls.Load(); got != tc.calls || (keptLocal.Load() == 1) != tc.kept {
				t.Errorf("peer called %d times, batch kept here %d times; want %d calls, kept %v", got, keptLocal.Load(), tc.calls, tc.kept)
			}
		})
		t.Run("hand-off "+tc.name, func(t *testing.T) {
			a := &peerAnswer{err: tc.err, n: tc.failures}
			addr := startPeer(t, a)
			h := newHandoffClient(&Cluster{cfg: cfg})
			defer h.close()
			err := h.deliver(Member{Name: "peer", Addr: addr}, []byte{})
			if got := a.calls.Load(); got != tc.calls || (err != nil) != tc.kept {
				t.Errorf("peer called %d times, deliver = %v; want %d calls, failed %v", got, err, tc.calls, tc.kept)
			}
		})
	}
}
