package ingest

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP clients may compress with gzip
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// traceServiceDesc serves opentelemetry.proto.collector.trace.v1.TraceService
// with a handler that receives the request as bytes (see rawcodec).
var traceServiceDesc = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.trace.v1.TraceService",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: grpcExport}},
	Metadata:    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
}

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

func grpcExport(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	r := srv.(*Receiver)
	handle := func(ctx context.Context, in any) (any, error) { return r.exportGRPC(ctx, in.(*[]byte)) }
	buf := r.getBuf()
	defer r.putBuf(buf)
	if err := dec(buf); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return handle(ctx, buf)
	}
	return interceptor(ctx, buf, &grpc.UnaryServerInfo{Server: srv, FullMethod: exportMethod}, handle)
}

// emptyResponse is an ExportTraceServiceResponse with no partial success.
var emptyResponse = []byte{}

func (r *Receiver) exportGRPC(ctx context.Context, body *[]byte) (any, error) {
	spans, err := r.consume(ctx, *body)
	if err == nil {
		r.metrics.observe("grpc", outcomeOK, spans)
		return &emptyResponse, nil
	}
	var bad malformedError
	if errors.As(err, &bad) {
		r.metrics.observe("grpc", outcomeMalformed, 0)
		r.log.Debug("malformed OTLP/gRPC request", "err", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if delay, ok := retryAfter(err); ok {
		r.metrics.observe("grpc", outcomeOverloaded, spans)
		st, _ := status.New(codes.ResourceExhausted, err.Error()).
			WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
		return nil, st.Err()
	}
	r.metrics.observe("grpc", outcomeUnavailable, spans)
	return nil, status.Error(codes.Unavailable, err.Error())
}
