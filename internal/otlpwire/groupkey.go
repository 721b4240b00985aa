package otlpwire

import "google.golang.org/protobuf/encoding/protowire"

// A Group's parts are what Builder needs to write a span back under the
// resource and scope it came with: R, the fields of the ResourceSpans other
// than scope_spans (the resource, schema_url, unknown fields), and S, the
// fields of the ScopeSpans other than spans, each verbatim with its tags.
// Equal parts mean equal resources and scopes, so consumers can intern them
// as bytes. They are kept apart, never concatenated: a request of N bytes
// may hold one large resource under N/2 ScopeSpans, and a key per scope that
// repeated the resource would cost N²/4 bytes.

// GroupResource returns the encoded Resource message of a resource part,
// or nil if it has none.
func GroupResource(resourcePart []byte) []byte {
	v, _ := lastBytesField(resourcePart, fieldResourceSpansResource)
	return v
}

// lastBytesField returns the payload of the last length-delimited field num
// in msg (protobuf's rule for a repeated singular field is "last one wins").
func lastBytesField(msg []byte, num protowire.Number) ([]byte, bool) {
	var out []byte
	found := false
	for len(msg) > 0 {
		n, typ, m := protowire.ConsumeTag(msg)
		if m < 0 {
			return nil, false
		}
		msg = msg[m:]
		if n == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return nil, false
			}
			out, found = v, true
			msg = msg[m:]
			continue
		}
		m = protowire.ConsumeFieldValue(n, typ, msg)
		if m < 0 {
			return nil, false
		}
		msg = msg[m:]
	}
	return out, found
}
