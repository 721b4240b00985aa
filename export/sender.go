package export

import (
	"context"
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
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
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) bool {
		if num != fieldResponsePartialSuccess || typ != protowire.BytesType {
			return true
		}
		var ps result // last one wins, as for any singular message field
		ok := eachField(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) bool {
			switch {
			case num == fieldPartialRejectedSpans && typ == protowire.VarintType:
				ps.rejected = int64(x)
			case num == fieldPartialErrorMessage && typ == protowire.BytesType:
				ps.message = string(v)
			}
			return true
		}) == nil
		if !ok {
			return false
		}
		res = ps
		return true
	})
	return res, err
}

// eachField calls f for each field of msg with its bytes (BytesType) or its
// integer value (varint and fixed types); f returns false to stop with an
// error.
func eachField(msg []byte, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64) bool) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return errBadResponse
		}
		msg = msg[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(msg)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(msg)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(msg)
		case protowire.Fixed32Type:
			var x32 uint32
			x32, n = protowire.ConsumeFixed32(msg)
			x = uint64(x32)
		default:
			n = protowire.ConsumeFieldValue(num, typ, msg)
		}
		if n < 0 {
			return errBadResponse
		}
		msg = msg[n:]
		if !f(num, typ, v, x) {
			return errBadResponse
		}
	}
	return nil
}
