package export

import (
	"context"
	"fmt"

	"github.com/tailsift/tailsift/internal/otlpclient"
)

// sender delivers built requests to the destination. send is called by
// several workers at once and must be safe for concurrent use; it must not
// retain req after returning. It returns the destination's partial-success
// result on success; on failure an error that otlpclient.Classify calls
// retryable if the attempt is worth repeating, any other error if the
// destination rejected the request for good. close is called once, after
// the last send.
type sender interface {
	send(ctx context.Context, req []byte) (otlpclient.Result, error)
	close() error
}

// otlpSender exports over OTLP/gRPC or OTLP/HTTP: one client, shared by
// the workers.
type otlpSender struct {
	c *otlpclient.Client
}

// newOTLPSender makes the client for cfg; it connects on first use.
func newOTLPSender(cfg otlpclient.Config) (*otlpSender, error) {
	c, err := otlpclient.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return &otlpSender{c: c}, nil
}

func (s *otlpSender) send(ctx context.Context, req []byte) (otlpclient.Result, error) {
	return s.c.Export(ctx, req)
}

func (s *otlpSender) close() error { return s.c.Close() }
