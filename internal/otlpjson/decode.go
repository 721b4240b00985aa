package otlpjson

import (
	"errors"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrMalformed is wrapped by every Decode error caused by bad input, and by
// Encode errors for malformed protobuf.
var ErrMalformed = errors.New("otlpjson: malformed input")

// Decode converts an OTLP/JSON ExportTraceServiceRequest to protobuf bytes
// appended to dst. On error it returns dst with its length and contents
// unchanged (bytes past its length may have been written).
//
// Keys may be lowerCamelCase or the proto field names; unknown keys are
// skipped; null means "not set". A key given twice, two members of a oneof,
// or an ID of the wrong size is an error. An absent ID is not checked: as in
// protobuf, absent and empty cannot be told apart, and whether a span needs
// its IDs is for the receiver to decide.
//
// The protobuf is written directly, without generated structs, in the
// order of the JSON keys; proto3 default values are left out as
// proto.Marshal leaves them out.
func Decode(dst, data []byte) ([]byte, error) {
	d := decoder{data: data, out: dst}
	if err := d.message(requestSchema); err != nil {
		return dst, err
	}
	if d.skipSpace(); d.pos != len(d.data) {
		return dst, d.errorf(d.pos, "unexpected data after the request object")
	}
	if len(d.out)-len(dst) > math.MaxInt32 {
		return dst, d.errorf(0, "request larger than protobuf's 2 GiB limit")
	}
	return d.out, nil
}

// message decodes a JSON object of type mi and appends its fields.
func (d *decoder) message(mi *message) error {
	if d.peek() != '{' {
		return d.errorf(d.pos, "want object, got %s", d.what())
	}
	if err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	d.pos++
	if d.consume('}') {
		return nil
	}
	var seen, set uint64 // keys read; fields with a non-null value
	for {
		d.skipSpace()
		keyOff := d.pos
		key, err := d.str()
		if err != nil {
			return err
		}
		f := mi.byKey[string(key)] // does not allocate
		if err := d.expect(':'); err != nil {
			return err
		}
		if f == nil {
			if err := d.skip(); err != nil {
				return err
			}
		} else {
			d.path = append(d.path, pathSeg{key: f.key, index: -1})
			switch {
			case seen&f.bit != 0:
				return d.errorf(keyOff, "field given twice")
			case d.literal("null"):
				// The proto3 JSON mapping: null is the default value.
			case set&f.oneof != 0:
				return d.errorf(keyOff, "oneof %s already set by %s", f.fd.ContainingOneof().Name(), mi.byBit(set&f.oneof).key)
			default:
				if err := d.field(f); err != nil {
					return err
				}
				set |= f.bit
			}
			seen |= f.bit
			d.path = d.path[:len(d.path)-1]
		}
		if d.consume(',') {
			continue
		}
		return d.expect('}')
	}
}

// byBit returns the field of the lowest set bit in bits.
func (m *message) byBit(bits uint64) *field {
	for _, f := range m.fields {
		if bits&f.bit != 0 {
			return f
		}
	}
	panic("BUG: otlpjson: no field for bits")
}

// field decodes the (non-null) value of field f and appends it.
func (d *decoder) field(f *field) error {
	if !f.fd.IsList() {
		return d.value(f, f.presence)
	}
	if d.peek() != '[' {
		return d.errorf(d.pos, "want array, got %s", d.what())
	}
	if err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	d.pos++
	if d.consume(']') {
		return nil
	}
	top := len(d.path) - 1 // an index: nested fields may grow d.path
	for i := 0; ; i++ {
		d.path[top].index = i
		if d.literal("null") {
			return d.errorf(d.pos-len("null"), "null list element")
		}
		// Every element is written, zero or not. Numeric lists would be
		// written unpacked, which parsers must accept; OTLP traces have none.
		if err := d.value(f, true); err != nil {
			return err
		}
		if d.consume(',') {
			continue
		}
		if err := d.expect(']'); err != nil {
			return err
		}
		d.path[top].index = -1
		return nil
	}
}

// embedded decodes a message value of field f and appends it, tag and
// length first.
func (d *decoder) embedded(f *field) error {
	d.out = protowire.AppendTag(d.out, f.num, protowire.BytesType)
	// The length is known only after the body: reserve one byte, enough
	// for most attributes and values, and move the body if it needs more.
	at := len(d.out)
	d.out = append(d.out, 0)
	if err := d.message(f.msg); err != nil {
		return err
	}
	n := len(d.out) - at - 1
	if k := protowire.SizeVarint(uint64(n)); k > 1 {
		d.out = append(d.out, make([]byte, k-1)...) // no allocation: k <= 10
		copy(d.out[at+k:], d.out[at+1:at+1+n])
	}
	protowire.AppendVarint(d.out[:at], uint64(n))
	return nil
}

// emitVarint, emitFixed32, emitFixed64 and emitBytes append a field unless
// it is a proto3 default (zero) value that need not be written.
func (d *decoder) emitVarint(f *field, keepZero bool, x uint64) {
	if x != 0 || keepZero {
		d.out = protowire.AppendTag(d.out, f.num, protowire.VarintType)
		d.out = protowire.AppendVarint(d.out, x)
	}
}

func (d *decoder) emitFixed32(f *field, keepZero bool, x uint32) {
	if x != 0 || keepZero {
		d.out = protowire.AppendTag(d.out, f.num, protowire.Fixed32Type)
		d.out = protowire.AppendFixed32(d.out, x)
	}
}

func (d *decoder) emitFixed64(f *field, keepZero bool, x uint64) {
	if x != 0 || keepZero {
		d.out = protowire.AppendTag(d.out, f.num, protowire.Fixed64Type)
		d.out = protowire.AppendFixed64(d.out, x)
	}
}

func (d *decoder) emitBytes(f *field, keepZero bool, b []byte) {
	if len(b) != 0 || keepZero {
		d.out = protowire.AppendTag(d.out, f.num, protowire.BytesType)
		d.out = protowire.AppendBytes(d.out, b)
	}
}
