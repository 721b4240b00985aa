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
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

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

	body, err := proto.Marshal(otlptest.RandomRequest(rand.New(rand.NewPCG(1, 1))))
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
	if !f.reserve(tracesBytes(&req, all)) {
		t.Fatal("budget")
	}
	peer := Member{Name: "peer", Addr: lis.Addr().String()}
	f.enqueue(peer, &req, all, 1)
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
