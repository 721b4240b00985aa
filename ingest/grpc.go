package ingest

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tailsift/tailsift/internal/otlpserver"
)

const exportMethod = otlpserver.ExportMethod

// exportGRPC handles one TraceService/Export request's bytes.
func (r *Receiver) exportGRPC(ctx context.Context, body []byte) error {
	t, ok := ctx.Value(ticketKey{}).(*ticket)
	if !ok {
		panic("BUG: an OTLP/gRPC stream without the tap handle's ticket")
	}
	if !t.stop() {
		// The stream ended after its message arrived (the client left, or
		// it was cancelled as stalled), and its ticket is given back.
		return status.FromContextError(ctx.Err()).Err()
	}
	defer r.limits.leave(&t.hold)
	if !t.u.remove(&t.upload) {
		// Cancelled as stalled just as its message arrived.
		return status.Error(codes.Canceled, "upload took too long while others waited for room (max_inflight_bytes)")
	}
	t.arrived()
	// The message is in: hold its size rather than the most it could have
	// been.
	t.resize(int64(len(body)) + StreamOverhead)
	if !r.limits.process() {
		r.metrics.refuse("grpc", reasonConcurrentRequests, true)
		return r.grpcRefusals[reasonConcurrentRequests]
	}
	defer r.limits.done()
	spans, err := r.consume(ctx, body, &t.hold)
	if err == nil {
		r.metrics.observe("grpc", outcomeOK, spans)
		t.conn.prove()
		return nil
	}
	var big tooLargeError
	if errors.As(err, &big) {
		r.metrics.observe("grpc", outcomeTooLarge, 0)
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	var bad malformedError
	if errors.As(err, &bad) {
		r.metrics.observe("grpc", outcomeMalformed, 0)
		r.log.Debug("malformed OTLP/gRPC request", "err", err)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if delay, ok := retryAfter(err); ok {
		if errors.Is(err, errInflightFull) {
			r.metrics.refused.WithLabelValues("grpc", reasonInflightBytes).Inc()
		}
		r.metrics.observe("grpc", outcomeOverloaded, spans)
		st, _ := status.New(codes.ResourceExhausted, err.Error()).
			WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
		return st.Err()
	}
	r.metrics.observe("grpc", outcomeUnavailable, spans)
	return status.Error(codes.Unavailable, err.Error())
}
