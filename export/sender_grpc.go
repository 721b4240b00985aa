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

// newGRPCSender dials target; opts are added to the sender's own (tests
// pass an in-memory dialer).
func newGRPCSender(target string, opts ...grpc.DialOption) (*grpcSender, error) {
	conn, err := grpc.NewClient(target, append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})),
	}, opts...)...)
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
// the server's RetryInfo delay if given. RESOURCE_EXHAUSTED is retryable
// only with RetryInfo, the server's sign that it can recover: without it
// (a request over the server's size limit, say) every attempt would fail
// the same way while the requests behind it wait. Any other code rejects
// the request.
func classifyGRPC(err error) error {
	st := status.Convert(err)
	var info *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			info = ri
			break
		}
	}
	switch st.Code() {
	case codes.Canceled, codes.Unavailable, codes.Aborted,
		codes.DeadlineExceeded, codes.DataLoss, codes.OutOfRange:
	case codes.ResourceExhausted:
		if info == nil {
			return err
		}
	default:
		return err
	}
	if info.GetRetryDelay() != nil {
		return retryableAfter(err, info.GetRetryDelay().AsDuration())
	}
	return retryable(err)
}
