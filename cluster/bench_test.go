package cluster

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
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

// BenchmarkRouteForward is the sending side of forwarding: a scanned
// request of realistic spans, every trace owned by one of two peers, is
// grouped by owner, copied into the peers' batches, built into OTLP
// requests and sent over loopback gRPC to real servers that accept them.
// The timer includes waiting until everything is acknowledged.
func BenchmarkRouteForward(b *testing.B) {
	var peers []Member
	for _, name := range []string{"peer-a", "peer-b"} {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := grpc.NewServer(grpc.ForceServerCodecV2(rawcodec.Codec{}))
		otlpserver.RegisterTraceService(srv, func(context.Context, []byte) error { return nil }, nil, otlpserver.NewBuffers(64<<10, 4<<20))
		go srv.Serve(lis)
		defer srv.Stop()
		peers = append(peers, Member{Name: name, Addr: lis.Addr().String()})
	}
	cfg := DefaultConfig()
	cfg.NodeName, cfg.ForwardQueueBytes = "self", 1<<30
	m := newMetrics(prometheus.NewRegistry(), func() float64 { return 0 })
	r := &Router{self: cfg.NodeName, fwd: newForwarder(cfg, slog.New(slog.DiscardHandler), m), log: slog.New(slog.DiscardHandler), metrics: m}
	r.scratch.New = func() any { return &routeScratch{peers: map[int][]int32{}} }
	r.state.Store(&ringState{ring: NewRing(peers, cfg.VirtualNodes), self: -1}) // this node owns nothing
	r.fwd.reinject = func([]byte, int, int, bool) { b.Error("a forward failed") }

	body, err := proto.Marshal(otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(1, 2))))
	if err != nil {
		b.Fatal(err)
	}
	var req otlpwire.Request
	if err := req.Scan(body); err != nil {
		b.Fatal(err)
	}
	spans := len(req.Spans)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := r.route(context.Background(), &req, 0, false); err != nil {
			b.Fatal(err)
		}
	}
	r.fwd.flushOlder(time.Now().Add(time.Hour))
	for r.fwd.pendingBytes() > 0 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*spans), "ns/span")
	r.fwd.closing.Store(true)
	r.fwd.close(context.Background())
}
