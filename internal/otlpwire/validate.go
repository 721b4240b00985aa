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

var (
	errTooDeep      = fmt.Errorf("%w: attributes nested more than %d levels", ErrMalformed, maxDepth)
	errBadAttribute = fmt.Errorf("%w: attribute: truncated or invalid field", ErrMalformed)
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
		return errTooDeep
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
			switch c := child(k, num); c {
			case kindNone:
			case kindKeyValue:
				if !validKeyValue(b[i:i+l], depth+1) {
					return errBadAttribute
				}
			default:
				if err := validate(b[i:i+l], c, depth+1); err != nil {
					return err
				}
			}
			i += l
		case protowire.VarintType:
			if n := varintLen(b[i:]); n < 0 {
				return malformed("nested message", errTruncated)
			} else {
				i += n
			}
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

// validKeyValue checks a KeyValue, the bulk of all nested bytes in OTLP: a
// key and an AnyValue whose scalar cases are checked inline. Only arrays and
// kvlists (and unknown fields, via validate) recurse. It returns a bool so
// its frame stays small: it runs for every attribute of every span.
func validKeyValue(b []byte, depth int) bool {
	for i := 0; i < len(b); {
		t := b[i]
		if t != 0x0a && t != 0x12 { // not key (1) or value (2), length-delimited
			return validate(b[i:], kindKeyValue, depth) == nil
		}
		i++
		if i >= len(b) {
			return false
		}
		l := int(b[i])
		if l < 0x80 {
			i++
		} else {
			v, n := protowire.ConsumeVarint(b[i:])
			if n < 0 || v > uint64(len(b)) {
				return false
			}
			l, i = int(v), i+n
		}
		if l > len(b)-i {
			return false
		}
		if t == 0x12 && !validAnyValue(b[i:i+l], depth+1) {
			return false
		}
		i += l
	}
	return true
}

// validAnyValue checks an AnyValue (see validKeyValue).
func validAnyValue(b []byte, depth int) bool {
	if depth > maxDepth {
		return false
	}
	for i := 0; i < len(b); {
		switch t := b[i]; t {
		case 0x0a, 0x3a, 0x2a, 0x32: // string, bytes; array, kvlist
			i++
			if i >= len(b) {
				return false
			}
			l := int(b[i])
			if l < 0x80 {
				i++
			} else {
				v, n := protowire.ConsumeVarint(b[i:])
				if n < 0 || v > uint64(len(b)) {
					return false
				}
				l, i = int(v), i+n
			}
			if l > len(b)-i {
				return false
			}
			switch t {
			case 0x2a:
				if validate(b[i:i+l], kindArrayValue, depth+1) != nil {
					return false
				}
			case 0x32:
				if validate(b[i:i+l], kindKeyValueList, depth+1) != nil {
					return false
				}
			}
			i += l
		case 0x10, 0x18, 0x40: // bool, int, string_value_strindex
			n := varintLen(b[i+1:])
			if n < 0 {
				return false
			}
			i += 1 + n
		case 0x21: // double
			if i += 9; i > len(b) {
				return false
			}
		default:
			return validate(b[i:], kindAnyValue, depth) == nil
		}
	}
	return true
}
