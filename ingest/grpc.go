package ingest

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// exportGRPC handles one TraceService/Export request's bytes.
func (r *Receiver) exportGRPC(ctx context.Context, body []byte) error {
	spans, err := r.consume(ctx, body)
	if err == nil {
		r.metrics.observe("grpc", outcomeOK, spans)
		return nil
	}
	var bad malformedError
	if errors.As(err, &bad) {
		r.metrics.observe("grpc", outcomeMalformed, 0)
		r.log.Debug("malformed OTLP/gRPC request", "err", err)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if delay, ok := retryAfter(err); ok {
		r.metrics.observe("grpc", outcomeOverloaded, spans)
		st, _ := status.New(codes.ResourceExhausted, err.Error()).
			WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
		return st.Err()
	}
	r.metrics.observe("grpc", outcomeUnavailable, spans)
	return status.Error(codes.Unavailable, err.Error())
}
