package export

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/tracestate"
)

// Keep says how a trace was kept, for what the exporter writes into its spans.
type Keep struct {
	// Threshold is the consistent-sampling rejection threshold (56-bit, as
	// policy.Threshold) the trace was kept at. Every span is written with
	// it in its tracestate ("ot=th:..."; a more restrictive incoming
	// threshold is kept, and so are "rv" and the other list members).
	// 0 means kept with probability 1 (by a condition): the spans'
	// tracestate is left as it came. Values of 2^56 (probability 0) and
	// above have no encoding and are treated as 0.
	Threshold uint64
	// RootAttributes are added to the root span (no parent) of the trace,
	// if it has one: the deciding rule's name (optional feature), or the
	// shadow-mode decision marks. An attribute the span already has with
	// the same key is replaced (OTLP attribute keys are unique). Every span
	// without a parent gets them. Keys and values must be UTF-8 (invalid
	// bytes are written as U+FFFD). The exporter does not retain the slice.
	RootAttributes []Attribute
}

// Attribute is a string attribute.
type Attribute struct{ Key, Value string }

// threshold returns the threshold to write, 0 for none.
func (k *Keep) threshold() uint64 {
	if k.Threshold >= tracestate.MaxThreshold {
		return 0
	}
	return k.Threshold
}

// edits reports whether k changes any span.
func (k *Keep) edits() bool { return k.threshold() != 0 || len(k.RootAttributes) > 0 }

// spanRef is one span of an Export call. An edited span is written as
// span + tail + traceState + attrs: span and tail are the original bytes
// before and after its last trace_state field (all of it in span if that
// field stays), traceState a new trace_state field and attrs the root
// attributes, both encoded in the collector's buffer. An unedited span has
// only key and span.
type spanRef struct {
	group                         otlpwire.Group
	span, tail, traceState, attrs []byte
	edited                        bool
}

func (r *spanRef) spanLen() int { return len(r.span) + len(r.tail) + len(r.traceState) + len(r.attrs) }

// edit rewrites c.refs as k says, encoding what it adds into c.buf. It runs
// before the batch mutex is taken. Spans it cannot read (malformed) are
// left as they are.
func (c *collector) edit(k *Keep) {
	th := k.threshold()
	c.buf = c.buf[:0]
	var attrs []byte
	if len(k.RootAttributes) > 0 {
		for _, a := range k.RootAttributes {
			c.buf = otlpwire.AppendSpanStringAttribute(c.buf, validUTF8(a.Key), validUTF8(a.Value))
		}
		attrs = c.buf[:len(c.buf):len(c.buf)]
	}
	// Spans of a trace mostly share their incoming tracestate: the new
	// trace_state field of the previous span is reused when it matches.
	var lastOld, lastField []byte
	haveLast := false
	for i := range c.refs {
		r := &c.refs[i]
		f, ok := otlpwire.ReadSpanEditFields(r.span)
		if !ok {
			continue
		}
		var tsField []byte
		if th != 0 {
			if !haveLast || !bytes.Equal(f.TraceState, lastOld) {
				c.ts = tracestate.AppendWithThreshold(c.ts[:0], f.TraceState, th)
				lastField = nil
				if !bytes.Equal(c.ts, f.TraceState) {
					start := len(c.buf)
					c.buf = otlpwire.AppendSpanTraceState(c.buf, c.ts)
					lastField = c.buf[start:len(c.buf):len(c.buf)]
				}
				lastOld, haveLast = f.TraceState, true
			}
			tsField = lastField
		}
		root := attrs != nil && f.IsRoot()
		if tsField == nil && !root {
			continue
		}
		span := r.span
		if root && hasAnyAttr(span, k.RootAttributes) {
			start := len(c.buf)
			c.buf = otlpwire.AppendSpanWithoutAttributes(c.buf, span, func(key []byte) bool {
				for _, a := range k.RootAttributes {
					if string(key) == a.Key {
						return true
					}
				}
				return false
			})
			span = c.buf[start:len(c.buf):len(c.buf)]
			f, _ = otlpwire.ReadSpanEditFields(span) // well formed: it was
		}
		r.span, r.edited = span, true
		if tsField != nil && f.TraceStateEnd > 0 {
			r.span, r.tail = span[:f.TraceStateStart], span[f.TraceStateEnd:]
		}
		r.traceState = tsField
		if root {
			r.attrs = attrs
		}
	}
}

func hasAnyAttr(span []byte, attrs []Attribute) bool {
	for _, a := range attrs {
		if _, ok := otlpwire.SpanAttr(span, a.Key); ok {
			return true
		}
	}
	return false
}

func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
