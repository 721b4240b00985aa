package export

import (
	"context"
	"errors"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailsift/tailsift/internal/otlpwire"
)

// sender delivers built requests to the destination. send is called by
// several workers at once and must be safe for concurrent use; it must not
// retain req after returning. It returns the destination's partial-success
// result on success; on failure a *retryableError if the attempt is worth
// repeating, any other error if the destination rejected the request for
// good. close is called once, after the last send.
type sender interface {
	send(ctx context.Context, req []byte) (result, error)
	close() error
}

// result is what a successful export reported back.
type result struct {
	rejected int64  // ExportTracePartialSuccess.rejected_spans
	message  string // ExportTracePartialSuccess.error_message
}

var errBadResponse = errors.New("malformed ExportTraceServiceResponse")

// Field numbers of ExportTraceServiceResponse and ExportTracePartialSuccess.
const (
	fieldResponsePartialSuccess = 1
	fieldPartialRejectedSpans   = 1
	fieldPartialErrorMessage    = 2
)

// parseResponse reads the partial success of an ExportTraceServiceResponse.
func parseResponse(b []byte) (result, error) {
	var res result
	for f, err := range otlpwire.MessageFields(b) {
		if err != nil {
			return res, errBadResponse
		}
		if f.Num != fieldResponsePartialSuccess || f.Type != protowire.BytesType {
			continue
		}
		var ps result // last one wins, as for any singular message field
		for g, err := range otlpwire.MessageFields(f.Bytes) {
			if err != nil {
				return res, errBadResponse
			}
			switch {
			case g.Num == fieldPartialRejectedSpans && g.Type == protowire.VarintType:
				ps.rejected = int64(g.Uint)
			case g.Num == fieldPartialErrorMessage && g.Type == protowire.BytesType:
				ps.message = string(g.Bytes)
			}
		}
		res = ps
	}
	return res, nil
}
