package otlpjson

import (
	"cmp"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

// Encode converts a protobuf ExportTraceServiceRequest to OTLP/JSON (one
// line, no trailing newline) appended to dst. On error it returns dst
// unchanged.
//
// The output follows protojson's conventions (default values omitted, keys
// in lowerCamelCase and in field order, 64-bit integers as decimal strings)
// with OTLP's: lowercase hex IDs and enums as integers. IDs are written
// whatever their length; checking them is Decode's job. Unknown protobuf
// fields have no JSON form and are dropped.
func Encode(dst, pb []byte) ([]byte, error) {
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(pb, req); err != nil {
		return dst, fmt.Errorf("%w: protobuf: %w", ErrMalformed, err)
	}
	e := &encoder{}
	e.collect = func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		e.set = append(e.set, setField{e.ranging.fields[fd.Index()], v})
		return true
	}
	return e.message(dst, req.ProtoReflect(), requestSchema), nil
}

// encoder lists the set fields of the messages being written. Listing them
// with Range is several times faster than asking Has of every field, but
// protobuf-go varies Range's order on purpose, so they are sorted.
type encoder struct {
	set     []setField // set fields of each message on the stack, innermost last
	collect func(protoreflect.FieldDescriptor, protoreflect.Value) bool
	ranging *message // type of the message collect is called for
}

type setField struct {
	f *field
	v protoreflect.Value
}

// message writes m, whose type is mi, as a JSON object: set fields only
// (Range skips proto3 defaults, as protojson does), in declaration order.
func (e *encoder) message(b []byte, m protoreflect.Message, mi *message) []byte {
	start := len(e.set)
	e.ranging = mi
	m.Range(e.collect)
	fields := e.set[start:]
	slices.SortFunc(fields, func(x, y setField) int { return cmp.Compare(x.f.fd.Index(), y.f.fd.Index()) })
	end := len(e.set)
	b = append(b, '{')
	for i := start; i < end; i++ {
		sf := e.set[i] // by index: nested messages grow e.set
		if i > start {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, sf.f.key...) // JSON names are plain ASCII identifiers
		b = append(b, '"', ':')
		if !sf.f.fd.IsList() {
			b = e.value(b, sf.v, sf.f)
			continue
		}
		l := sf.v.List()
		b = append(b, '[')
		for j := range l.Len() {
			if j > 0 {
				b = append(b, ',')
			}
			b = e.value(b, l.Get(j), sf.f)
		}
		b = append(b, ']')
	}
	e.set = e.set[:start]
	return append(b, '}')
}

// value writes a single (non-list) value of field f.
func (e *encoder) value(b []byte, v protoreflect.Value, f *field) []byte {
	switch k := f.fd.Kind(); k {
	case protoreflect.MessageKind:
		return e.message(b, v.Message(), f.msg)
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return strconv.AppendInt(b, v.Int(), 10)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return strconv.AppendUint(b, v.Uint(), 10)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		b = append(b, '"')
		b = strconv.AppendInt(b, v.Int(), 10)
		return append(b, '"')
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		b = append(b, '"')
		b = strconv.AppendUint(b, v.Uint(), 10)
		return append(b, '"')
	case protoreflect.EnumKind:
		return strconv.AppendInt(b, int64(v.Enum()), 10)
	case protoreflect.FloatKind:
		return appendFloat(b, v.Float(), 32)
	case protoreflect.DoubleKind:
		return appendFloat(b, v.Float(), 64)
	case protoreflect.StringKind:
		return appendString(b, v.String())
	case protoreflect.BytesKind:
		b = append(b, '"')
		if f.idSize > 0 {
			b = hex.AppendEncode(b, v.Bytes())
		} else {
			b = base64.StdEncoding.AppendEncode(b, v.Bytes())
		}
		return append(b, '"')
	default:
		panic("BUG: otlpjson: unhandled kind " + k.String())
	}
}

// appendFloat writes x as protojson and encoding/json do: the shortest
// representation that parses back to x, in exponent form only for very
// large or small magnitudes; non-finite values as the mapping's strings.
func appendFloat(b []byte, x float64, bits int) []byte {
	switch {
	case math.IsNaN(x):
		return append(b, `"NaN"`...)
	case math.IsInf(x, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(x, -1):
		return append(b, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(x); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, x, format, -1, bits)
	if format == 'e' { // 1e-07 -> 1e-7
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendString writes s as a JSON string. s is valid UTF-8: proto.Unmarshal
// checked it. Only what JSON requires is escaped, so non-ASCII text stays
// readable.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			const digits = "0123456789abcdef"
			b = append(b, '\\', 'u', '0', '0', digits[c>>4], digits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
