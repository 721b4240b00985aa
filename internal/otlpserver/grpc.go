package otlpserver

import (
	"context"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP clients may compress with gzip
)

// ExportFunc handles the bytes of one ExportTraceServiceRequest. body is
// valid only during the call. A nil error answers an empty
// ExportTraceServiceResponse; an error goes to the client as it is (use
// status errors to choose the code).
type ExportFunc func(ctx context.Context, body []byte) error

// ExportMethod is TraceService/Export's full name, as gRPC's tap handle
// and interceptors see it.
const ExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

type traceService struct {
	export        ExportFunc
	onDecodeError func(error)
	bufs          *Buffers
}

// RegisterTraceService serves opentelemetry.proto.collector.trace.v1.
// TraceService on s with export. The server must use rawcodec (so the
// request arrives as bytes): grpc.ForceServerCodecV2(rawcodec.Codec{}).
// onDecodeError, if not nil, is told about requests that could not be read
// (too large, bad compression); gRPC answers those itself.
func RegisterTraceService(s *grpc.Server, export ExportFunc, onDecodeError func(error), bufs *Buffers) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: handleExport}},
		Metadata:    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
	}, &traceService{export: export, onDecodeError: onDecodeError, bufs: bufs})
}

// emptyResponse is an ExportTraceServiceResponse with no partial success.
// It is only ever read.
var emptyResponse = []byte{}

func handleExport(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	ts := srv.(*traceService)
	buf := ts.bufs.Get()
	defer ts.bufs.Put(buf)
	if err := dec(buf); err != nil {
		if ts.onDecodeError != nil {
			ts.onDecodeError(err)
		}
		return nil, err
	}
	handle := func(ctx context.Context, in any) (any, error) {
		if err := ts.export(ctx, *in.(*[]byte)); err != nil {
			return nil, err
		}
		return &emptyResponse, nil
	}
	if interceptor == nil {
		return handle(ctx, buf)
	}
	return interceptor(ctx, buf, &grpc.UnaryServerInfo{Server: srv, FullMethod: ExportMethod}, handle)
}
