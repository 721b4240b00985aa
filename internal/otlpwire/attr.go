package otlpwire

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// ValueType is the kind of an attribute value (the AnyValue oneof).
type ValueType uint8

// Attribute value types.
const (
	ValueEmpty ValueType = iota
	ValueString
	ValueBool
	ValueInt
	ValueDouble
	ValueArray
	ValueKVList
	ValueBytes
)

// Field numbers of common.v1.KeyValue and AnyValue.
const (
	fieldKeyValueKey   = 1
	fieldKeyValueValue = 2

	fieldAnyString = 1
	fieldAnyBool   = 2
	fieldAnyInt    = 3
	fieldAnyDouble = 4
	fieldAnyArray  = 5
	fieldAnyKVList = 6
	fieldAnyBytes  = 7
)

// Value is an attribute value read from raw bytes. Byte payloads alias the
// message they were read from.
type Value struct {
	Type ValueType
	raw  []byte // string, bytes, or the encoded array/kvlist
	num  uint64 // bool, int, or double bits
}

// Str returns the string payload as bytes (no copy), or nil for other types.
func (v Value) Str() []byte {
	if v.Type != ValueString {
		return nil
	}
	return v.raw
}

// Int returns the integer payload; 0 for other types.
func (v Value) Int() int64 {
	if v.Type != ValueInt {
		return 0
	}
	return int64(v.num)
}

// Double returns the double payload; 0 for other types.
func (v Value) Double() float64 {
	if v.Type != ValueDouble {
		return 0
	}
	return math.Float64frombits(v.num)
}

// Bool returns the bool payload; false for other types.
func (v Value) Bool() bool { return v.Type == ValueBool && v.num != 0 }

// Bytes returns the bytes payload, or the encoded ArrayValue/KeyValueList for
// those types.
func (v Value) Bytes() []byte {
	switch v.Type {
	case ValueBytes, ValueArray, ValueKVList:
		return v.raw
	}
	return nil
}

// SpanAttr looks up the span attribute key in an encoded Span. It does not
// allocate. Malformed bytes read as "not found".
func SpanAttr(span []byte, key string) (Value, bool) {
	return lookupAttr(span, fieldSpanAttributes, key)
}

// ResourceAttr looks up the resource attribute key in a group's resource
// part (Group.Resource).
func ResourceAttr(resourcePart []byte, key string) (Value, bool) {
	return lookupAttr(GroupResource(resourcePart), fieldResourceAttributes, key)
}

// lookupAttr scans the repeated KeyValue field num of msg for key. With
// duplicate keys the first wins, as in the OpenTelemetry SDKs' views.
func lookupAttr(msg []byte, num protowire.Number, key string) (Value, bool) {
	for len(msg) > 0 {
		n, typ, m := protowire.ConsumeTag(msg)
		if m < 0 {
			return Value{}, false
		}
		msg = msg[m:]
		if n == num && typ == protowire.BytesType {
			kv, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return Value{}, false
			}
			msg = msg[m:]
			if v, ok := matchKeyValue(kv, key); ok {
				return v, true
			}
			continue
		}
		m = protowire.ConsumeFieldValue(n, typ, msg)
		if m < 0 {
			return Value{}, false
		}
		msg = msg[m:]
	}
	return Value{}, false
}

func matchKeyValue(kv []byte, key string) (Value, bool) {
	k, ok := lastBytesField(kv, fieldKeyValueKey)
	if !ok || string(k) != key {
		return Value{}, false
	}
	any, ok := lastBytesField(kv, fieldKeyValueValue)
	if !ok {
		return Value{}, true // key present, value unset
	}
	return decodeAnyValue(any), true
}

func decodeAnyValue(b []byte) Value {
	var v Value
	for len(b) > 0 {
		n, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return Value{}
		}
		b = b[m:]
		switch {
		case typ == protowire.BytesType && (n == fieldAnyString || n == fieldAnyArray || n == fieldAnyKVList || n == fieldAnyBytes):
			p, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return Value{}
			}
			b = b[m:]
			v = Value{raw: p}
			switch n {
			case fieldAnyString:
				v.Type = ValueString
			case fieldAnyArray:
				v.Type = ValueArray
			case fieldAnyKVList:
				v.Type = ValueKVList
			default:
				v.Type = ValueBytes
			}
		case typ == protowire.VarintType && (n == fieldAnyBool || n == fieldAnyInt):
			x, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return Value{}
			}
			b = b[m:]
			v = Value{Type: ValueInt, num: x}
			if n == fieldAnyBool {
				v = Value{Type: ValueBool, num: min(x, 1)}
			}
		case typ == protowire.Fixed64Type && n == fieldAnyDouble:
			x, m := protowire.ConsumeFixed64(b)
			if m < 0 {
				return Value{}
			}
			b = b[m:]
			v = Value{Type: ValueDouble, num: x}
		default:
			m = protowire.ConsumeFieldValue(n, typ, b)
			if m < 0 {
				return Value{}
			}
			b = b[m:]
		}
	}
	return v
}
