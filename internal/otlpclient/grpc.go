package otlpclient

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip" // registers the gzip compressor
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tailsift/tailsift/internal/rawcodec"
)

// traceExportMethod is OTLP's TraceService.Export.
const traceExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

func newGRPC(cfg Config) (*Client, error) {
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS) // copies the config
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawcodec.Codec{})),
	}
	if cfg.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(cfg.Dialer))
	}
	conn, err := grpc.NewClient(cfg.Endpoint, opts...)
	if err != nil {
		return nil, fmt.Errorf("otlpclient: Endpoint %q: %w", cfg.Endpoint, err)
	}
	c := &Client{conn: conn}
	if cfg.Compression == CompressionGzip {
		c.callOpts = []grpc.CallOption{grpc.UseCompressor(gzip.Name)}
	}
	for k, v := range cfg.Headers {
		c.metadata = append(c.metadata, strings.ToLower(k), v)
	}
	return c, nil
}

func (c *Client) exportGRPC(ctx context.Context, req []byte) (Result, error) {
	var resp []byte
	if err := c.invoke(ctx, traceExportMethod, req, &resp); err != nil {
		return Result{}, err
	}
	return readResponse(resp), nil
}

func (c *Client) invoke(ctx context.Context, method string, req []byte, resp *[]byte) error {
	if len(c.metadata) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, c.metadata...)
	}
	if err := c.conn.Invoke(ctx, method, &req, resp, c.callOpts...); err != nil {
		return classifyGRPC(err)
	}
	return nil
}

// classifyGRPC classifies a failed call by the table of OTLP/gRPC
// failures: the transient codes are retryable, with the server's RetryInfo
// delay as the hint if it gave one. RESOURCE_EXHAUSTED is retryable only
// with RetryInfo, the server's sign that it can recover: without it (a
// request over the server's size limit, say) every attempt would fail the
// same way while the requests behind it wait. Every other code is
// permanent, RetryInfo or not.
func classifyGRPC(err error) *Error {
	st := status.Convert(err)
	var info *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			info = ri
			break
		}
	}
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted,
		codes.OutOfRange, codes.Unavailable, codes.DataLoss:
	case codes.ResourceExhausted:
		if info == nil {
			return &Error{Err: err}
		}
	default:
		return &Error{Err: err}
	}
	e := &Error{Err: err, Retryable: true}
	if d := info.GetRetryDelay(); d != nil {
		e.Hint = max(d.AsDuration(), 0)
	}
	return e
}
