package otlpwire

import (
	"fmt"
	"iter"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field is one field of a protobuf message, as MessageFields reads it.
type Field struct {
	Num  protowire.Number
	Type protowire.Type
	// Bytes is the value of a length-delimited field (BytesType), aliasing
	// the message; nil for other types.
	Bytes []byte
	// Uint is the value of a varint, fixed64 or fixed32 field (zigzag and
	// sign are the caller's to interpret); 0 for other types.
	Uint uint64
}

// MessageFields yields the fields of a protobuf message in wire order, for
// small messages read field by field (responses, control messages); the
// span scanner has its own faster loops. A group is yielded with its
// number and StartGroupType but no value; its contents are skipped. A
// malformed field ends the sequence with one (Field{}, error) pair, whose
// error names the field and wraps protowire's; the fields before it have
// been yielded. The sequence may be ranged over more than once.
func MessageFields(msg []byte) iter.Seq2[Field, error] {
	return func(yield func(Field, error) bool) {
		b := msg
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				yield(Field{}, fmt.Errorf("field tag: %w", protowire.ParseError(n)))
				return
			}
			b = b[n:]
			f := Field{Num: num, Type: typ}
			switch typ {
			case protowire.BytesType:
				f.Bytes, n = protowire.ConsumeBytes(b)
			case protowire.VarintType:
				f.Uint, n = protowire.ConsumeVarint(b)
			case protowire.Fixed64Type:
				f.Uint, n = protowire.ConsumeFixed64(b)
			case protowire.Fixed32Type:
				var v uint32
				v, n = protowire.ConsumeFixed32(b)
				f.Uint = uint64(v)
			default:
				n = protowire.ConsumeFieldValue(num, typ, b)
			}
			if n < 0 {
				yield(Field{}, fmt.Errorf("field %d: %w", num, protowire.ParseError(n)))
				return
			}
			b = b[n:]
			if !yield(f, nil) {
				return
			}
		}
	}
}
