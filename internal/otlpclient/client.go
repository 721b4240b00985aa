package otlpclient

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc"
)

// Client sends OTLP export requests to one endpoint. Its methods are safe
// for concurrent use.
type Client struct {
	// OTLP/gRPC: one connection, shared by every call.
	conn     *grpc.ClientConn
	callOpts []grpc.CallOption // compression
	metadata []string          // Config.Headers as key, value pairs

	// OTLP/HTTP.
	url       string
	http      *http.Client
	transport *http.Transport
	headers   http.Header // Config.Headers, canonical
	gzip      bool
}

// Result is what the destination said of a request it accepted: its
// partial success, if any.
type Result struct {
	// RejectedSpans is how many spans of the request the destination
	// refused (ExportTracePartialSuccess.rejected_spans); it accepted the
	// rest. OTLP forbids sending the request again.
	RejectedSpans int64
	// Message is the destination's error_message: why it rejected spans,
	// or, with none rejected, a warning. If the response could not be
	// read, Message says so: the status said the request was accepted.
	Message string
}

// New validates cfg and prepares a client. It does not connect: gRPC
// connects on the first call (and again after a failure), HTTP per
// request.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if isHTTP(cfg.Endpoint) {
		return newHTTP(cfg), nil
	}
	return newGRPC(cfg)
}

// Export sends one ExportTraceServiceRequest, req (its encoded bytes, not
// retained after the call), as one attempt bounded by ctx. It returns the
// destination's partial success, or an *Error saying whether the attempt
// may be repeated (see Classify).
func (c *Client) Export(ctx context.Context, req []byte) (Result, error) {
	if c.conn == nil {
		return c.exportHTTP(ctx, req)
	}
	return c.exportGRPC(ctx, req)
}

// errNotGRPC answers Invoke on an OTLP/HTTP client: a caller's bug.
var errNotGRPC = errors.New("otlpclient: Invoke needs an OTLP/gRPC endpoint")

// Invoke makes a unary gRPC call of method (a full name,
// "/package.Service/Method") over the client's connection, with the same
// headers and compression as Export: req and *resp are encoded messages
// (*resp's capacity is reused). A failure is an *Error classified as for
// Export. On an OTLP/HTTP client it fails, not retryable.
func (c *Client) Invoke(ctx context.Context, method string, req []byte, resp *[]byte) error {
	if c.conn == nil {
		return &Error{Err: errNotGRPC}
	}
	return c.invoke(ctx, method, req, resp)
}

// Close releases the connection; calls in flight fail (gRPC) or finish
// (HTTP). Call it once, after the last call.
func (c *Client) Close() error {
	if c.conn == nil {
		c.transport.CloseIdleConnections()
		return nil
	}
	return c.conn.Close()
}
