package otlpjson

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxDepth bounds the nesting of JSON objects and arrays, so deeply nested
// input cannot exhaust the stack, and Decode's output always stays within
// proto.Unmarshal's recursion limit (10000 messages). A span attribute's
// value is 10 levels deep; each array or kvlist value inside it adds 3.
const maxDepth = 512

// decoder holds the JSON input, the position in it and the protobuf output.
// Its token methods (this file) skip leading whitespace themselves; the
// schema-directed walk is in decode.go, values in values.go.
type decoder struct {
	data  []byte
	pos   int
	depth int
	out   []byte    // the protobuf written so far
	path  []pathSeg // field keys and list indexes from the root, for errors
	buf   []byte    // scratch for strings with escapes
	tmp   []byte    // scratch for decoded bytes values
}

type pathSeg struct {
	key   string
	index int // list index, -1 if not in a list
}

// errorf returns an error wrapping ErrMalformed that names the current path
// and the byte offset off.
func (d *decoder) errorf(off int, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if len(d.path) == 0 {
		return fmt.Errorf("%w: %s (byte offset %d)", ErrMalformed, msg, off)
	}
	var p strings.Builder
	for i, s := range d.path {
		if i > 0 {
			p.WriteByte('.')
		}
		p.WriteString(s.key)
		if s.index >= 0 {
			fmt.Fprintf(&p, "[%d]", s.index)
		}
	}
	return fmt.Errorf("%w: %s: %s (byte offset %d)", ErrMalformed, p.String(), msg, off)
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it, 0 at the end.
func (d *decoder) peek() byte {
	d.skipSpace()
	if d.pos >= len(d.data) {
		return 0
	}
	return d.data[d.pos]
}

// consume consumes c if it is the next non-space byte.
func (d *decoder) consume(c byte) bool {
	if d.peek() == c {
		d.pos++
		return true
	}
	return false
}

func (d *decoder) expect(c byte) error {
	if d.consume(c) {
		return nil
	}
	return d.errorf(d.pos, "want %q, got %s", c, d.what())
}

// what describes the next token for error messages.
func (d *decoder) what() string {
	c := d.peek()
	switch {
	case d.pos >= len(d.data):
		return "end of input"
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '"':
		return "string"
	case c == '-' || '0' <= c && c <= '9':
		return "number"
	case bytes.HasPrefix(d.data[d.pos:], []byte("true")), bytes.HasPrefix(d.data[d.pos:], []byte("false")):
		return "boolean"
	case bytes.HasPrefix(d.data[d.pos:], []byte("null")):
		return "null"
	}
	return fmt.Sprintf("unexpected character %q", c)
}

// literal consumes the literal lit (true, false, null) if it comes next.
func (d *decoder) literal(lit string) bool {
	d.skipSpace()
	if !bytes.HasPrefix(d.data[d.pos:], []byte(lit)) {
		return false
	}
	// "truex" needs no check here: what follows a value must be ',', '}',
	// ']' or the end, and the caller checks that.
	d.pos += len(lit)
	return true
}

// enter and leave bracket every object and array.
func (d *decoder) enter() error {
	if d.depth++; d.depth > maxDepth {
		return d.errorf(d.pos, "nesting deeper than %d", maxDepth)
	}
	return nil
}

func (d *decoder) leave() { d.depth-- }

// str reads a string and returns its contents, unescaped. The result
// aliases the input or the scratch buffer: it is valid until the next call.
// Invalid UTF-8 is an error (RFC 8259 requires UTF-8 and protobuf strings
// must be valid); an escaped lone surrogate becomes U+FFFD, because
// JavaScript's JSON.stringify emits those for truncated strings and one such
// attribute should not cost the client the whole batch.
func (d *decoder) str() ([]byte, error) {
	if d.peek() != '"' {
		return nil, d.errorf(d.pos, "want string, got %s", d.what())
	}
	start := d.pos + 1
	for i := start; i < len(d.data); {
		switch c := d.data[i]; {
		case c == '"':
			d.pos = i + 1
			return d.data[start:i], nil
		case c == '\\':
			return d.strEscaped(start, i)
		case c < 0x20:
			return nil, d.errorf(i, "control character %#02x in string", c)
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(d.data[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, d.errorf(i, "invalid UTF-8 in string")
			}
			i += n
		}
	}
	return nil, d.errorf(len(d.data), "unterminated string")
}

// strEscaped continues str from the first backslash at i.
func (d *decoder) strEscaped(start, i int) ([]byte, error) {
	b := append(d.buf[:0], d.data[start:i]...)
	for i < len(d.data) {
		c := d.data[i]
		switch {
		case c == '"':
			d.pos = i + 1
			d.buf = b
			return b, nil
		case c == '\\':
			if i+1 >= len(d.data) {
				return nil, d.errorf(len(d.data), "unterminated string")
			}
			i++
			switch e := d.data[i]; e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := hex4(d.data[i+1:])
				if !ok {
					return nil, d.errorf(i-1, "invalid \\u escape in string")
				}
				i += 4
				if 0xD800 <= r && r < 0xDC00 && i+2 < len(d.data) && d.data[i+1] == '\\' && d.data[i+2] == 'u' {
					if lo, ok := hex4(d.data[i+3:]); ok && 0xDC00 <= lo && lo < 0xE000 {
						r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
						i += 6
					}
				}
				b = utf8.AppendRune(b, r) // a lone surrogate is written as U+FFFD
			default:
				return nil, d.errorf(i-1, "invalid escape %q in string", e)
			}
			i++
		case c < 0x20:
			return nil, d.errorf(i, "control character %#02x in string", c)
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, n := utf8.DecodeRune(d.data[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, d.errorf(i, "invalid UTF-8 in string")
			}
			b = append(b, d.data[i:i+n]...)
			i += n
		}
	}
	return nil, d.errorf(len(d.data), "unterminated string")
}

// hex4 decodes the 4 hex digits of a \u escape.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number reads a JSON number token and returns its text.
func (d *decoder) number() ([]byte, error) {
	d.skipSpace()
	n := numberLen(d.data[d.pos:])
	if n == 0 {
		return nil, d.errorf(d.pos, "want number, got %s", d.what())
	}
	b := d.data[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

// numberLen returns the length of the JSON number at the start of b, 0 if
// there is none: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func numberLen(b []byte) int {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digitsEnd(b, i)
	default:
		return 0
	}
	if i < len(b) && b[i] == '.' {
		j := digitsEnd(b, i+1)
		if j == i+1 {
			return 0
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		j := i + 1
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		k := digitsEnd(b, j)
		if k == j {
			return 0
		}
		i = k
	}
	return i
}

func digitsEnd(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// skip reads and discards one value of any type: the value of an unknown
// field, which receivers must ignore but which still has to be valid JSON.
func (d *decoder) skip() error {
	switch d.peek() {
	case '{':
		return d.skipContainer('}', true)
	case '[':
		return d.skipContainer(']', false)
	case '"':
		_, err := d.str()
		return err
	case 't':
		if d.literal("true") {
			return nil
		}
	case 'f':
		if d.literal("false") {
			return nil
		}
	case 'n':
		if d.literal("null") {
			return nil
		}
	default:
		_, err := d.number()
		return err
	}
	return d.errorf(d.pos, "invalid literal")
}

func (d *decoder) skipContainer(close byte, keyed bool) error {
	if err := d.enter(); err != nil {
		return err
	}
	defer d.leave()
	d.pos++ // '{' or '['
	if d.consume(close) {
		return nil
	}
	for {
		if keyed {
			if _, err := d.str(); err != nil {
				return err
			}
			if err := d.expect(':'); err != nil {
				return err
			}
		}
		if err := d.skip(); err != nil {
			return err
		}
		if d.consume(',') {
			continue
		}
		return d.expect(close)
	}
}
