package otlpclient

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailsift/tailsift/internal/otlpwire"
)

// Field numbers of ExportTraceServiceResponse and ExportTracePartialSuccess.
const (
	fieldResponsePartialSuccess = 1
	fieldPartialRejectedSpans   = 1
	fieldPartialErrorMessage    = 2
)

// readResponse reads the partial success of an ExportTraceServiceResponse
// that came with an OK status. A response it cannot read is reported in
// Message, not counted: the status said the spans were accepted.
func readResponse(b []byte) Result {
	res, err := parseResponse(b)
	if err != nil {
		return Result{Message: err.Error()}
	}
	return res
}

func parseResponse(b []byte) (Result, error) {
	var res Result
	for f, err := range otlpwire.MessageFields(b) {
		if err != nil {
			return Result{}, fmt.Errorf("malformed ExportTraceServiceResponse: %w", err)
		}
		if f.Num != fieldResponsePartialSuccess || f.Type != protowire.BytesType {
			continue
		}
		// A message field that occurs twice is merged, as protobuf
		// parsers do: within it, the last value of a scalar wins.
		for g, err := range otlpwire.MessageFields(f.Bytes) {
			if err != nil {
				return Result{}, fmt.Errorf("malformed ExportTraceServiceResponse: partial_success: %w", err)
			}
			switch {
			case g.Num == fieldPartialRejectedSpans && g.Type == protowire.VarintType:
				res.RejectedSpans = int64(g.Uint)
			case g.Num == fieldPartialErrorMessage && g.Type == protowire.BytesType:
				res.Message = string(g.Bytes)
			}
		}
	}
	return res, nil
}
