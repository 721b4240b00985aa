package otlpwire

import (
	"errors"

	"google.golang.org/protobuf/encoding/protowire"
)

// Fast paths for the scanner's inner loops. protowire's Consume* functions
// are correct but too large to inline; almost every tag and length in OTLP
// fits one byte, so these take that case inline and fall back to protowire.

var errTruncated = errors.New("truncated or invalid field")

// tag reads a field tag. n < 0 on error.
func tag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0]-8 < 0x80-8 { // one byte, field number >= 1
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1
	}
	return slowTag(b)
}

//go:noinline
func slowTag(b []byte) (protowire.Number, protowire.Type, int) { return protowire.ConsumeTag(b) }

// lengthDelimited reads a length-prefixed value. n < 0 on error.
func lengthDelimited(b []byte) ([]byte, int) {
	if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
		return b[1 : 1+b[0]], 1 + int(b[0])
	}
	return slowLengthDelimited(b)
}

//go:noinline
func slowLengthDelimited(b []byte) ([]byte, int) { return protowire.ConsumeBytes(b) }

// varint reads a varint. n < 0 on error.
func varint(b []byte) (uint64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), 1
	}
	return slowVarint(b)
}

//go:noinline
func slowVarint(b []byte) (uint64, int) { return protowire.ConsumeVarint(b) }

// skipValue returns the size of a field value of type typ. n < 0 on error.
func skipValue(num protowire.Number, typ protowire.Type, b []byte) int {
	switch typ {
	case protowire.VarintType:
		for i := 0; i < len(b) && i < 10; i++ {
			if b[i] < 0x80 {
				return i + 1
			}
		}
		return -1
	case protowire.Fixed64Type:
		if len(b) < 8 {
			return -1
		}
		return 8
	case protowire.Fixed32Type:
		if len(b) < 4 {
			return -1
		}
		return 4
	case protowire.BytesType:
		_, n := lengthDelimited(b)
		return n
	}
	return protowire.ConsumeFieldValue(num, typ, b) // groups, and errors
}

// varintLen returns the length of the varint at the start of b, or -1 if it
// is truncated or overflows 64 bits (as protowire decides).
func varintLen(b []byte) int {
	if len(b) > 0 && b[0] < 0x80 {
		return 1
	}
	_, n := protowire.ConsumeVarint(b)
	return n
}
