package otlpwire

import "google.golang.org/protobuf/encoding/protowire"

// Editing raw spans without re-encoding them. Protobuf lets a writer change
// an encoded Span by appending fields: a singular field that occurs again
// replaces the earlier value (the last one wins), and a repeated field's
// entries add up. So a span with a new trace_state is its bytes plus one
// trace_state field, and a span with one more attribute is its bytes plus
// one attributes field. The functions here read the few fields an editor
// needs and append those fields; they do not allocate when dst has room.

// SpanEditFields are the fields of an encoded Span an editor reads, found in one
// pass by [ReadSpanEditFields]. The slices alias the span.
type SpanEditFields struct {
	// TraceState is the value of the span's last trace_state field (the one
	// a decoder keeps); nil if it has none.
	TraceState []byte
	// ParentSpanID is the value of the last parent_span_id field; nil if none.
	ParentSpanID []byte
	// span[TraceStateStart:TraceStateEnd] is the last trace_state field,
	// tag and length included; both 0 if there is none. A span without it,
	// followed by a new trace_state field, is the span with its trace state
	// replaced (earlier occurrences, if any, are overridden by the new one).
	TraceStateStart, TraceStateEnd int
}

// IsRoot reports whether the span has no parent: parent_span_id absent,
// empty or all zero.
func (f *SpanEditFields) IsRoot() bool {
	for _, b := range f.ParentSpanID {
		if b != 0 {
			return false
		}
	}
	return true
}

// ReadSpanEditFields reads the trace_state and parent_span_id fields of an
// encoded Span (without its tag and length). ok is false if the span's
// top-level fields are malformed; the fields found before the error are
// returned.
func ReadSpanEditFields(span []byte) (f SpanEditFields, ok bool) {
	// Tags and lengths are decoded inline (as in scanSpan): this runs for
	// every field of every edited span.
	for i := 0; i < len(span); {
		start := i
		var num protowire.Number
		var typ protowire.Type
		if t := span[i]; t >= 8 && t < 0x80 {
			num, typ = protowire.Number(t>>3), protowire.Type(t&7)
			i++
		} else {
			var n int
			if num, typ, n = protowire.ConsumeTag(span[i:]); n < 0 {
				return f, false
			}
			i += n
		}
		if typ != protowire.BytesType {
			n := skipValue(num, typ, span[i:])
			if n < 0 {
				return f, false
			}
			i += n
			continue
		}
		if i >= len(span) {
			return f, false
		}
		l := int(span[i])
		if l < 0x80 {
			i++
		} else {
			v, n := protowire.ConsumeVarint(span[i:])
			if n < 0 || v > uint64(len(span)) {
				return f, false
			}
			l, i = int(v), i+n
		}
		if l > len(span)-i {
			return f, false
		}
		switch num {
		case fieldSpanTraceState:
			f.TraceState = span[i : i+l]
			f.TraceStateStart, f.TraceStateEnd = start, i+l
		case fieldSpanParentSpanID:
			f.ParentSpanID = span[i : i+l]
		}
		i += l
	}
	return f, true
}

// SpanTraceState returns the span's trace_state (see [SpanEditFields]); nil if
// it has none or the span is malformed.
func SpanTraceState(span []byte) []byte {
	f, ok := ReadSpanEditFields(span)
	if !ok {
		return nil
	}
	return f.TraceState
}

// SpanIsRoot reports whether the encoded span has no parent (see
// [SpanEditFields.IsRoot]); a malformed span is not a root.
func SpanIsRoot(span []byte) bool {
	f, ok := ReadSpanEditFields(span)
	return ok && f.IsRoot()
}

// AppendSpanTraceState appends a Span trace_state field holding ts to dst.
// Appended to an encoded span, it replaces the span's trace state.
func AppendSpanTraceState(dst, ts []byte) []byte {
	dst = protowire.AppendTag(dst, fieldSpanTraceState, protowire.BytesType)
	return protowire.AppendBytes(dst, ts)
}

// AppendSpanStringAttribute appends a Span attributes field holding the
// KeyValue {key, string_value: value} to dst. Appended to an encoded span,
// it adds the attribute (see [AppendSpanWithoutAttributes] to replace one).
// key and value must be valid UTF-8, as protobuf strings.
func AppendSpanStringAttribute(dst []byte, key, value string) []byte {
	anyLen := 1 + protowire.SizeVarint(uint64(len(value))) + len(value)
	kvLen := 1 + protowire.SizeVarint(uint64(len(key))) + len(key) +
		1 + protowire.SizeVarint(uint64(anyLen)) + anyLen
	dst = protowire.AppendTag(dst, fieldSpanAttributes, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(kvLen))
	dst = protowire.AppendTag(dst, fieldKeyValueKey, protowire.BytesType)
	dst = protowire.AppendString(dst, key)
	dst = protowire.AppendTag(dst, fieldKeyValueValue, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(anyLen))
	dst = protowire.AppendTag(dst, fieldAnyString, protowire.BytesType)
	return protowire.AppendString(dst, value)
}

// AppendSpanWithoutAttributes appends the encoded span to dst without the
// attributes whose key drop reports (OTLP requires unique keys, so an
// attribute is replaced by dropping it, then appending the new one). Fields
// are copied verbatim, in order; if the span is malformed, the rest from the
// malformed field on is copied as it is.
func AppendSpanWithoutAttributes(dst, span []byte, drop func(key []byte) bool) []byte {
	run := 0 // start of the fields not yet copied
	for i := 0; i < len(span); {
		num, typ, n := tag(span[i:])
		if n < 0 {
			break
		}
		start := i
		i += n
		if typ != protowire.BytesType {
			if n = skipValue(num, typ, span[i:]); n < 0 {
				break
			}
			i += n
			continue
		}
		v, n := lengthDelimited(span[i:])
		if n < 0 {
			break
		}
		i += n
		if num != fieldSpanAttributes {
			continue
		}
		if key, ok := keyValueKey(v); ok && drop(key) {
			dst = append(dst, span[run:start]...)
			run = i
		}
	}
	return append(dst, span[run:]...)
}

// keyValueKey returns the key of an encoded KeyValue: its last key field, or
// empty if it has none (the proto3 default). ok is false if kv is malformed.
func keyValueKey(kv []byte) (key []byte, ok bool) {
	for len(kv) > 0 {
		num, typ, n := tag(kv)
		if n < 0 {
			return nil, false
		}
		kv = kv[n:]
		if typ == protowire.BytesType {
			v, n := lengthDelimited(kv)
			if n < 0 {
				return nil, false
			}
			if num == fieldKeyValueKey {
				key = v
			}
			kv = kv[n:]
			continue
		}
		if n = skipValue(num, typ, kv); n < 0 {
			return nil, false
		}
		kv = kv[n:]
	}
	return key, true
}
