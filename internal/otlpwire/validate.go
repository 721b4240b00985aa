package otlpwire

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The scanner reads only a few fields of each span, but it forwards all of
// them. One malformed attribute forwarded in a batch would make the backend
// reject the whole export request, with other clients' kept traces in it, so
// nested messages are checked for wire structure here. Strings are not
// checked for UTF-8 (OTLP backends differ on it and it would double the cost).

// msgKind names the nested OTLP messages the validator knows.
type msgKind uint8

const (
	kindNone msgKind = iota
	kindKeyValue
	kindAnyValue
	kindArrayValue
	kindKeyValueList
	kindEvent
	kindLink
	kindResource
	kindScope
	kindEntityRef
)

// maxDepth bounds AnyValue nesting, so hostile input cannot run the
// validator's recursion deep. Real attributes nest a few levels.
const maxDepth = 64

// children[k][num] is the message kind of field num in a message of kind k
// (kindNone for scalars and unknown fields). A table, not a switch: this is
// looked up for every nested field of every span.
var children = [...][8]msgKind{
	kindKeyValue:     {2: kindAnyValue},
	kindAnyValue:     {5: kindArrayValue, 6: kindKeyValueList},
	kindArrayValue:   {1: kindAnyValue},
	kindKeyValueList: {1: kindKeyValue},
	kindEvent:        {3: kindKeyValue},
	kindLink:         {4: kindKeyValue},
	kindResource:     {1: kindKeyValue, 3: kindEntityRef},
	kindScope:        {3: kindKeyValue},
	kindEntityRef:    {},
}

func child(k msgKind, num protowire.Number) msgKind {
	if num >= 8 {
		return kindNone
	}
	return children[k][num]
}

// validate checks that b is a well-formed message of kind k at the wire
// level, recursing into known nested messages. It is the scanner's inner
// loop, so one-byte tags and lengths (nearly all of them) are decoded inline.
func validate(b []byte, k msgKind, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: attributes nested more than %d levels", ErrMalformed, maxDepth)
	}
	for i := 0; i < len(b); {
		var num protowire.Number
		var typ protowire.Type
		if t := b[i]; t >= 8 && t < 0x80 {
			num, typ = protowire.Number(t>>3), protowire.Type(t&7)
			i++
		} else {
			var n int
			if num, typ, n = protowire.ConsumeTag(b[i:]); n < 0 {
				return malformed("nested message", errTruncated)
			}
			i += n
		}
		switch typ {
		case protowire.BytesType:
			if i >= len(b) {
				return malformed("nested message", errTruncated)
			}
			l := int(b[i])
			if l < 0x80 {
				i++
			} else {
				v, n := protowire.ConsumeVarint(b[i:])
				if n < 0 || v > uint64(len(b)) {
					return malformed("nested message", errTruncated)
				}
				l, i = int(v), i+n
			}
			if l > len(b)-i {
				return malformed("nested message", errTruncated)
			}
			if c := child(k, num); c != kindNone {
				if err := validate(b[i:i+l], c, depth+1); err != nil {
					return err
				}
			}
			i += l
		case protowire.VarintType:
			end := min(i+10, len(b)) // a varint has at most 10 bytes
			for i < end && b[i] >= 0x80 {
				i++
			}
			if i == end {
				return malformed("nested message", errTruncated)
			}
			i++
		case protowire.Fixed64Type:
			if i += 8; i > len(b) {
				return malformed("nested message", errTruncated)
			}
		case protowire.Fixed32Type:
			if i += 4; i > len(b) {
				return malformed("nested message", errTruncated)
			}
		default: // groups (deprecated, valid) and invalid types
			n := protowire.ConsumeFieldValue(num, typ, b[i:])
			if n < 0 {
				return malformed("nested message", protowire.ParseError(n))
			}
			i += n
		}
	}
	return nil
}
