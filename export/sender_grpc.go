package export

import (
	"context"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tailsift/tailsift/internal/rawcodec"
)

// traceExportMethod is OTLP's TraceService.Export.
const traceExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// grpcSender exports over one plaintext gRPC connection, shared by the
// workers (HTTP/2 multiplexes their calls). Requests and responses pass
// through rawcodec as bytes.
type grpcSender struct {
	conn *grpc.ClientConn
}

func newGRPCSender(target string) (*grpcSender, error) {
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})),
	)
	if err != nil {
		return nil, fmt.Errorf("export: Endpoint %q: %w", target, err)
	}
	return &grpcSender{conn: conn}, nil
}

func (s *grpcSender) send(ctx context.Context, req []byte) (result, error) {
	var resp []byte
	if err := s.conn.Invoke(ctx, traceExportMethod, &req, &resp); err != nil {
		return result{}, classifyGRPC(err)
	}
	res, err := parseResponse(resp)
	if err != nil {
		// The status said OK: the spans were accepted. A partial success
		// we cannot read is reported, not counted.
		return result{message: err.Error()}, nil
	}
	return res, nil
}

func (s *grpcSender) close() error { return s.conn.Close() }

// classifyGRPC marks the codes OTLP says are transient as retryable, with
// the server's RetryInfo delay if given. Any other code rejects the request.
func classifyGRPC(err error) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted,
		codes.DeadlineExceeded, codes.DataLoss, codes.OutOfRange:
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
				return retryableAfter(err, ri.GetRetryDelay().AsDuration())
			}
		}
		return retryable(err)
	}
	return err
}
