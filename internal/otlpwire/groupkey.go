package otlpwire

import "google.golang.org/protobuf/encoding/protowire"

// A group key identifies the resource and instrumentation scope that a span
// was sent under. It is built once per ScopeSpans by Request.Scan:
//
//	uvarint(len(R)) R S
//
// R holds the fields of the ResourceSpans other than scope_spans (the
// resource, schema_url, unknown fields) and S the fields of the ScopeSpans
// other than spans (the scope, schema_url, unknown fields), each verbatim
// with its tags. Equal resource/scope pairs give equal keys, so keys can be
// interned and compared as bytes; Builder writes them back as they came.

// splitGroupKey returns the resource part and scope part of a group key.
func splitGroupKey(key []byte) (resource, scope []byte, ok bool) {
	n, m := protowire.ConsumeVarint(key)
	if m < 0 || n > uint64(len(key)-m) {
		return nil, nil, false
	}
	key = key[m:]
	return key[:n], key[n:], true
}

// GroupResource returns the encoded Resource message of a group key, or nil
// if the group has no resource.
func GroupResource(key []byte) []byte {
	res, _, ok := splitGroupKey(key)
	if !ok {
		return nil
	}
	v, _ := lastBytesField(res, fieldResourceSpansResource)
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
