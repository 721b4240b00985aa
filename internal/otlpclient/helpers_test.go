package otlpclient

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/rawcodec"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoMethod is a method of a second service on the test server, for
// Invoke: it answers the request bytes.
const echoMethod = "/otlpclient.test.Echo/Echo"

// grpcServer is a real gRPC server that moves messages as bytes, as the
// sampler's receivers do: export answers TraceService/Export (a nil
// response is an empty ExportTraceServiceResponse), and the Echo method
// echoes. read counts the bytes read off its connections.
type grpcServer struct {
	addr string
	read atomic.Int64
}

type exportFunc func(ctx context.Context, req []byte) (resp []byte, err error)

func startGRPC(t *testing.T, export exportFunc, opts ...grpc.ServerOption) *grpcServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveGRPC(t, lis, export, opts...)
}

// serveGRPC serves on lis until the test ends.
func serveGRPC(t *testing.T, lis net.Listener, export exportFunc, opts ...grpc.ServerOption) *grpcServer {
	t.Helper()
	s := &grpcServer{addr: lis.Addr().String()}
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.ForceServerCodecV2(rawcodec.Codec{})}, opts...)...)
	for _, sd := range []struct {
		service, method string
		f               exportFunc
	}{
		{"opentelemetry.proto.collector.trace.v1.TraceService", "Export", export},
		{"otlpclient.test.Echo", "Echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil }},
	} {
		srv.RegisterService(&grpc.ServiceDesc{
			ServiceName: sd.service,
			HandlerType: (*any)(nil),
			Methods:     []grpc.MethodDesc{{MethodName: sd.method, Handler: rawcodec.Unary(sd.f)}},
		}, struct{}{})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(otlptest.CountingListener{Listener: lis, N: &s.read})
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return s
}

// newClient makes a client for cfg, closed when the test ends.
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
