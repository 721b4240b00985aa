package otlpwire

import (
	"encoding/binary"

	"google.golang.org/protobuf/encoding/protowire"
)

// Fields are the fields a policy reads of one span: those Scan indexes,
// and the name. Name aliases the span's bytes.
type Fields struct {
	Span
	Name []byte
}

// SpanFields reads the fields of one encoded span, as Scan does, but
// without validating nested messages: it is for spans that Scan already
// accepted (buffered spans read again for a policy). ok is false if the
// span is not well formed at the top level.
func SpanFields(raw []byte) (s Fields, ok bool) {
	s.Raw = raw
	for i := 0; i < len(raw); {
		num, typ, n := tag(raw[i:])
		if n < 0 {
			return s, false
		}
		i += n
		switch typ {
		case protowire.BytesType:
			v, n := lengthDelimited(raw[i:])
			if n < 0 {
				return s, false
			}
			i += n
			switch num {
			case fieldSpanTraceID:
				if len(v) == 16 {
					s.TraceID = [16]byte(v)
				}
			case fieldSpanSpanID:
				if len(v) == 8 {
					s.SpanID = [8]byte(v)
				}
			case fieldSpanParentSpanID:
				s.ParentSpanID = [8]byte{}
				if len(v) == 8 {
					s.ParentSpanID = [8]byte(v)
				}
			case fieldSpanName:
				s.Name = v
			case fieldSpanStatus:
				code, err := statusCode(v)
				if err != nil {
					return s, false
				}
				s.StatusCode = code
			}
		case protowire.VarintType:
			v, n := varint(raw[i:])
			if n < 0 {
				return s, false
			}
			i += n
			if num == fieldSpanKind {
				s.Kind = int32(v)
			}
		case protowire.Fixed64Type:
			if len(raw)-i < 8 {
				return s, false
			}
			v := binary.LittleEndian.Uint64(raw[i:])
			i += 8
			switch num {
			case fieldSpanStart:
				s.StartUnixNano = v
			case fieldSpanEnd:
				s.EndUnixNano = v
			}
		default:
			n := skipValue(num, typ, raw[i:])
			if n < 0 {
				return s, false
			}
			i += n
		}
	}
	return s, true
}

// Field numbers of Span.Event.
const fieldEventName = 2

// SpanHasEvent reports whether the encoded span has an event named name
// (for example "exception"). It does not allocate.
func SpanHasEvent(raw []byte, name string) bool {
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return false
		}
		raw = raw[n:]
		if num == fieldSpanEvents && typ == protowire.BytesType {
			ev, n := protowire.ConsumeBytes(raw)
			if n < 0 {
				return false
			}
			raw = raw[n:]
			if got, ok := lastBytesField(ev, fieldEventName); ok && string(got) == name {
				return true
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, raw)
		if n < 0 {
			return false
		}
		raw = raw[n:]
	}
	return false
}
