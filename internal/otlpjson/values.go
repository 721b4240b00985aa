package otlpjson

import (
	"bytes"
	"encoding/base64"
	"math"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// value decodes one value of field f (an element, if f is a list) and
// appends it; keepZero writes it even if it is a default value.
func (d *decoder) value(f *field, keepZero bool) error {
	d.skipSpace()
	off := d.pos // errors point at the value, not the space before it
	switch k := f.fd.Kind(); k {
	case protoreflect.MessageKind:
		return d.embedded(f)

	case protoreflect.BoolKind:
		switch {
		case d.literal("true"):
			d.emitVarint(f, keepZero, 1)
		case d.literal("false"):
			d.emitVarint(f, keepZero, 0)
		default:
			return d.errorf(off, "want boolean, got %s", d.what())
		}
		return nil

	case protoreflect.StringKind:
		s, err := d.str() // valid UTF-8, as protobuf requires
		if err != nil {
			return err
		}
		d.emitBytes(f, keepZero, s)
		return nil

	case protoreflect.BytesKind:
		s, err := d.str()
		if err != nil {
			return err
		}
		var b []byte
		if f.idSize > 0 {
			b, err = d.hexID(s, f, off)
		} else {
			b, err = d.base64(s, off)
		}
		if err != nil {
			return err
		}
		d.emitBytes(f, keepZero, b)
		return nil

	case protoreflect.EnumKind:
		n, err := d.enum(f, off)
		if err != nil {
			return err
		}
		d.emitVarint(f, keepZero, uint64(n)) // sign-extended, as protobuf encodes enums
		return nil

	case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind,
		protoreflect.Sfixed32Kind, protoreflect.Sfixed64Kind:
		bits := 64
		if k == protoreflect.Int32Kind || k == protoreflect.Sint32Kind || k == protoreflect.Sfixed32Kind {
			bits = 32
		}
		n, err := d.numeric(off, bits, true)
		if err != nil {
			return err
		}
		switch k {
		case protoreflect.Sint32Kind, protoreflect.Sint64Kind:
			d.emitVarint(f, keepZero, protowire.EncodeZigZag(n))
		case protoreflect.Sfixed32Kind:
			d.emitFixed32(f, keepZero, uint32(n))
		case protoreflect.Sfixed64Kind:
			d.emitFixed64(f, keepZero, uint64(n))
		default:
			d.emitVarint(f, keepZero, uint64(n)) // int32 too: negative values are sign-extended
		}
		return nil

	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := d.numeric(off, 32, false)
		if err != nil {
			return err
		}
		if k == protoreflect.Fixed32Kind {
			d.emitFixed32(f, keepZero, uint32(n))
		} else {
			d.emitVarint(f, keepZero, uint64(n))
		}
		return nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := d.numeric(off, 64, false)
		if err != nil {
			return err
		}
		if k == protoreflect.Fixed64Kind {
			d.emitFixed64(f, keepZero, uint64(n))
		} else {
			d.emitVarint(f, keepZero, uint64(n))
		}
		return nil

	case protoreflect.FloatKind:
		x, err := d.float(off, 32)
		if err != nil {
			return err
		}
		d.emitFixed32(f, keepZero, math.Float32bits(float32(x))) // -0 is not a default: its bits are not 0
		return nil
	case protoreflect.DoubleKind:
		x, err := d.float(off, 64)
		if err != nil {
			return err
		}
		d.emitFixed64(f, keepZero, math.Float64bits(x))
		return nil
	}
	panic("BUG: otlpjson: unhandled kind " + f.fd.Kind().String())
}

// enum reads an enum value: the OTLP spec writes integers, and the proto3
// JSON mapping's names are accepted too. Unknown numbers are kept (proto3
// enums are open); unknown names are errors, having no number.
func (d *decoder) enum(f *field, off int) (int64, error) {
	if d.peek() != '"' {
		num, err := d.number()
		if err != nil {
			return 0, err
		}
		return d.integer(num, off, 32, true)
	}
	s, err := d.str()
	if err != nil {
		return 0, err
	}
	if ev := f.fd.Enum().Values().ByName(protoreflect.Name(s)); ev != nil {
		return int64(ev.Number()), nil
	}
	return 0, d.errorf(off, "unknown %s name %q", f.fd.Enum().Name(), truncate(s))
}

// hexID decodes a trace or span ID: OTLP/JSON's one departure from the
// proto3 mapping of bytes, for readability and to match W3C traceparent.
// The result is in scratch space, valid until the next call.
func (d *decoder) hexID(s []byte, f *field, off int) ([]byte, error) {
	switch {
	case len(s)%2 != 0:
		return nil, d.errorf(off, "odd number of hex digits (%d)", len(s))
	case len(s) == 0 && f.emptyOK:
		return nil, nil
	case len(s) != 2*f.idSize:
		hint := ""
		if b, err := base64.StdEncoding.DecodeString(string(s)); err == nil && len(b) == f.idSize {
			hint = "; IDs are hex in OTLP/JSON, not base64" // protojson's form: a common mistake
		}
		return nil, d.errorf(off, "want %d bytes (%d hex digits), got %d%s", f.idSize, 2*f.idSize, len(s)/2, hint)
	}
	id := d.tmp[:0]
	for i := 0; i < len(s); i += 2 {
		hi, ok1 := unhex(s[i])
		lo, ok2 := unhex(s[i+1])
		if !ok1 || !ok2 {
			return nil, d.errorf(off, "invalid hex digit in %q", truncate(s))
		}
		id = append(id, hi<<4|lo)
	}
	d.tmp = id
	return id, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// The base64 alphabets and paddings protojson accepts for bytes.
var (
	stdRaw = base64.StdEncoding.WithPadding(base64.NoPadding)
	urlRaw = base64.URLEncoding.WithPadding(base64.NoPadding)
)

// base64 decodes a bytes value. The result is in scratch space, valid
// until the next call.
func (d *decoder) base64(s []byte, off int) ([]byte, error) {
	enc := base64.StdEncoding
	url := bytes.ContainsAny(s, "-_")
	switch {
	case url && len(s)%4 != 0:
		enc = urlRaw
	case url:
		enc = base64.URLEncoding
	case len(s)%4 != 0:
		enc = stdRaw
	}
	b := slices.Grow(d.tmp[:0], enc.DecodedLen(len(s)))[:enc.DecodedLen(len(s))]
	n, err := enc.Decode(b, s)
	if err != nil {
		return nil, d.errorf(off, "invalid base64: %v", err)
	}
	d.tmp = b
	return b[:n], nil
}

// truncate shortens a quoted input fragment for an error message.
func truncate(s []byte) string {
	const limit = 40
	if len(s) > limit {
		return string(s[:limit]) + "..."
	}
	return string(s)
}
