package otlpwire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// ErrMalformed is wrapped by every error Scan returns for bad input.
var ErrMalformed = errors.New("malformed OTLP trace request")

// Span status codes and kinds as defined by OTLP.
const (
	StatusCodeUnset = 0
	StatusCodeOK    = 1
	StatusCodeError = 2
)

// Field numbers of the OTLP trace messages this package reads.
const (
	fieldRequestResourceSpans = 1 // ExportTraceServiceRequest.resource_spans

	fieldResourceSpansResource   = 1 // ResourceSpans.resource
	fieldResourceSpansScopeSpans = 2 // ResourceSpans.scope_spans

	fieldScopeSpansSpans = 2 // ScopeSpans.spans

	fieldSpanTraceID      = 1
	fieldSpanSpanID       = 2
	fieldSpanTraceState   = 3
	fieldSpanParentSpanID = 4
	fieldSpanName         = 5
	fieldSpanKind         = 6
	fieldSpanStart        = 7
	fieldSpanEnd          = 8
	fieldSpanAttributes   = 9
	fieldSpanEvents       = 11
	fieldSpanLinks        = 13
	fieldSpanStatus       = 15

	fieldStatusCode = 3

	fieldResourceAttributes = 1
)

// Span is the index entry of one span: the fields a sampler reads, and the
// span's encoded bytes. Name and Raw alias the scanned request.
type Span struct {
	TraceID       [16]byte
	SpanID        [8]byte
	ParentSpanID  [8]byte // zero for a root span
	StartUnixNano uint64
	EndUnixNano   uint64
	Name          []byte
	Raw           []byte // the encoded Span message, without its tag and length
	Kind          int32
	StatusCode    int32
	Group         int32 // index into Request.Groups
}

// IsRoot reports whether the span has no parent.
func (s *Span) IsRoot() bool { return s.ParentSpanID == [8]byte{} }

// IsError reports whether the span's status is ERROR.
func (s *Span) IsError() bool { return s.StatusCode == StatusCodeError }

// Group is one ResourceSpans/ScopeSpans pair of a request.
type Group struct {
	// Key holds the group's resource and scope fields (see GroupKey). It
	// aliases the Request's arena.
	Key []byte
}

// TraceRun lists the spans of one trace within a request: Request.Order[Start:End]
// are indexes into Request.Spans, in arrival order.
type TraceRun struct {
	ID         [16]byte
	Start, End int32
}

// Request is the scanned form of one ExportTraceServiceRequest. The zero value
// is ready to use; reuse it across requests to avoid allocation.
type Request struct {
	Spans  []Span
	Groups []Group

	// Traces and Order are filled by GroupByTrace.
	Traces []TraceRun
	Order  []int32

	arena      []byte     // group keys, built once per group
	groupSpans [][2]int32 // start and end of each group key in arena
	spanTrace  []int32    // trace ordinal per span, scratch for GroupByTrace
	traceIndex map[[16]byte]int32
}

// Reset empties the request and drops its references to scanned bytes,
// keeping capacity.
func (r *Request) Reset() {
	clear(r.Spans) // drop references into the old request bytes
	r.Spans = r.Spans[:0]
	r.Groups = r.Groups[:0]
	r.Traces = r.Traces[:0]
	r.Order = r.Order[:0]
	r.arena = r.arena[:0]
	r.groupSpans = r.groupSpans[:0]
}

// SpanBytes returns the total size of the raw spans in the request.
func (r *Request) SpanBytes() int {
	n := 0
	for i := range r.Spans {
		n += len(r.Spans[i].Raw)
	}
	return n
}

// Scan indexes the ExportTraceServiceRequest in b. The Request keeps
// references into b: b must not change while the Request is in use. On error
// the Request is left empty.
func (r *Request) Scan(b []byte) error {
	r.Reset()
	if err := r.scan(b); err != nil {
		r.Reset()
		return err
	}
	// The arena is complete: only now can keys alias it.
	for _, g := range r.groupSpans {
		r.Groups = append(r.Groups, Group{Key: r.arena[g[0]:g[1]:g[1]]})
	}
	return nil
}

func (r *Request) scan(b []byte) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("request", protowire.ParseError(n))
		}
		b = b[n:]
		if num != fieldRequestResourceSpans {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return malformed("request", protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n, err := consumeBytes(typ, b, "resource_spans")
		if err != nil {
			return err
		}
		b = b[n:]
		if err := r.scanResourceSpans(v); err != nil {
			return err
		}
	}
	return nil
}

// scanResourceSpans walks one ResourceSpans twice: first to copy the fields
// that make up the resource part of its group keys (they may follow the
// scope_spans), then for each ScopeSpans.
func (r *Request) scanResourceSpans(b []byte) error {
	resStart := len(r.arena)
	if err := r.copyFieldsExcept(b, fieldResourceSpansScopeSpans, kindResource, "resource_spans"); err != nil {
		return err
	}
	resEnd := len(r.arena)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:] // the first pass validated every tag and value
		if num != fieldResourceSpansScopeSpans {
			b = b[protowire.ConsumeFieldValue(num, typ, b):]
			continue
		}
		v, n, err := consumeBytes(typ, b, "scope_spans")
		if err != nil {
			return err
		}
		b = b[n:]
		if err := r.scanScopeSpans(v, resStart, resEnd); err != nil {
			return err
		}
	}
	return nil
}

func (r *Request) scanScopeSpans(b []byte, resStart, resEnd int) error {
	// Group key: uvarint(len(resource part)) resource part, scope part.
	start := int32(len(r.arena))
	r.arena = protowire.AppendVarint(r.arena, uint64(resEnd-resStart))
	r.arena = append(r.arena, r.arena[resStart:resEnd]...)
	if err := r.copyFieldsExcept(b, fieldScopeSpansSpans, kindScope, "scope_spans"); err != nil {
		return err
	}
	group := int32(len(r.groupSpans))
	r.groupSpans = append(r.groupSpans, [2]int32{start, int32(len(r.arena))})
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if num != fieldScopeSpansSpans {
			b = b[protowire.ConsumeFieldValue(num, typ, b):]
			continue
		}
		v, n, err := consumeBytes(typ, b, "span")
		if err != nil {
			return err
		}
		b = b[n:]
		if err := r.scanSpan(v, group); err != nil {
			return err
		}
	}
	return nil
}

// copyFieldsExcept appends every field of msg except those numbered skip to
// the arena, verbatim, validating tags and values on the way; field 1 (the
// resource or scope) must be a well-formed message of kind first.
func (r *Request) copyFieldsExcept(msg []byte, skip protowire.Number, first msgKind, what string) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return malformed(what, protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, msg[n:])
		if m < 0 {
			return malformed(what, protowire.ParseError(m))
		}
		if num == 1 {
			if typ != protowire.BytesType {
				return wrongType(what, typ)
			}
			v, _ := protowire.ConsumeBytes(msg[n:])
			if err := validate(v, first, 0); err != nil {
				return err
			}
		}
		if num != skip {
			r.arena = append(r.arena, msg[:n+m]...)
		}
		msg = msg[n+m:]
	}
	return nil
}

func (r *Request) scanSpan(b []byte, group int32) error {
	r.Spans = append(r.Spans, Span{Raw: b, Group: group})
	s := &r.Spans[len(r.Spans)-1]
	var haveTraceID, haveSpanID bool
	// Tags and lengths are decoded inline: this loop runs for every field
	// of every span.
	for i := 0; i < len(b); {
		var num protowire.Number
		var typ protowire.Type
		if t := b[i]; t >= 8 && t < 0x80 {
			num, typ = protowire.Number(t>>3), protowire.Type(t&7)
			i++
		} else {
			var n int
			if num, typ, n = protowire.ConsumeTag(b[i:]); n < 0 {
				return malformed("span", errTruncated)
			}
			i += n
		}
		switch {
		case typ == protowire.BytesType:
			if i >= len(b) {
				return malformed("span", errTruncated)
			}
			l := int(b[i])
			if l < 0x80 {
				i++
			} else {
				v, n := protowire.ConsumeVarint(b[i:])
				if n < 0 || v > uint64(len(b)) {
					return malformed("span", errTruncated)
				}
				l, i = int(v), i+n
			}
			if l > len(b)-i {
				return malformed("span", errTruncated)
			}
			v := b[i : i+l]
			i += l
			if num == fieldSpanAttributes { // the most frequent field by far
				if !validKeyValue(v, 0) {
					return errBadAttribute
				}
				continue
			}
			if err := r.spanBytesField(s, num, v); err != nil {
				return err
			}
			switch num {
			case fieldSpanTraceID:
				haveTraceID = true
			case fieldSpanSpanID:
				haveSpanID = true
			}
		case typ == protowire.VarintType && num == fieldSpanKind:
			v, n := varint(b[i:])
			if n < 0 {
				return malformed("span.kind", errTruncated)
			}
			i += n
			s.Kind = int32(v)
		case typ == protowire.Fixed64Type && (num == fieldSpanStart || num == fieldSpanEnd):
			if len(b)-i < 8 {
				return malformed("span time", errTruncated)
			}
			v := binary.LittleEndian.Uint64(b[i:])
			i += 8
			if num == fieldSpanStart {
				s.StartUnixNano = v
			} else {
				s.EndUnixNano = v
			}
		default:
			switch num {
			case fieldSpanTraceID, fieldSpanSpanID, fieldSpanParentSpanID, fieldSpanName, fieldSpanStatus,
				fieldSpanAttributes, fieldSpanEvents, fieldSpanLinks, fieldSpanKind, fieldSpanStart, fieldSpanEnd:
				return wrongType("span field "+fieldName(num), typ)
			}
			n := skipValue(num, typ, b[i:])
			if n < 0 {
				return malformed("span", errTruncated)
			}
			i += n
		}
	}
	if !haveTraceID {
		return fmt.Errorf("%w: span %d: trace_id missing", ErrMalformed, len(r.Spans)-1)
	}
	if !haveSpanID {
		return fmt.Errorf("%w: span %d: span_id missing", ErrMalformed, len(r.Spans)-1)
	}
	return nil
}

// spanBytesField handles one length-delimited field of a span.
func (r *Request) spanBytesField(s *Span, num protowire.Number, v []byte) error {
	switch num {
	case fieldSpanTraceID:
		if len(v) != 16 {
			return fmt.Errorf("%w: span %d: trace_id has %d bytes, want 16", ErrMalformed, len(r.Spans)-1, len(v))
		}
		s.TraceID = [16]byte(v)
		if s.TraceID == [16]byte{} {
			return fmt.Errorf("%w: span %d: trace_id is all zero", ErrMalformed, len(r.Spans)-1)
		}
	case fieldSpanSpanID:
		if len(v) != 8 {
			return fmt.Errorf("%w: span %d: span_id has %d bytes, want 8", ErrMalformed, len(r.Spans)-1, len(v))
		}
		s.SpanID = [8]byte(v)
	case fieldSpanParentSpanID:
		switch len(v) {
		case 0:
			s.ParentSpanID = [8]byte{}
		case 8:
			s.ParentSpanID = [8]byte(v)
		default:
			return fmt.Errorf("%w: span %d: parent_span_id has %d bytes, want 0 or 8", ErrMalformed, len(r.Spans)-1, len(v))
		}
	case fieldSpanName:
		s.Name = v
	case fieldSpanStatus:
		code, err := statusCode(v)
		if err != nil {
			return err
		}
		s.StatusCode = code
	case fieldSpanEvents:
		return validate(v, kindEvent, 0)
	case fieldSpanLinks:
		return validate(v, kindLink, 0)
	case fieldSpanKind, fieldSpanStart, fieldSpanEnd:
		return wrongType("span field "+fieldName(num), protowire.BytesType)
	}
	return nil
}

func fieldName(num protowire.Number) string {
	switch num {
	case fieldSpanTraceID:
		return "trace_id"
	case fieldSpanSpanID:
		return "span_id"
	case fieldSpanParentSpanID:
		return "parent_span_id"
	case fieldSpanName:
		return "name"
	case fieldSpanKind:
		return "kind"
	case fieldSpanStart:
		return "start_time_unix_nano"
	case fieldSpanEnd:
		return "end_time_unix_nano"
	case fieldSpanAttributes:
		return "attributes"
	case fieldSpanEvents:
		return "events"
	case fieldSpanLinks:
		return "links"
	case fieldSpanStatus:
		return "status"
	}
	return "unknown"
}

func statusCode(b []byte) (int32, error) {
	var code int32
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, malformed("span.status", protowire.ParseError(n))
		}
		b = b[n:]
		if num == fieldStatusCode {
			if typ != protowire.VarintType {
				return 0, wrongType("span.status.code", typ)
			}
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, malformed("span.status.code", protowire.ParseError(n))
			}
			b = b[n:]
			code = int32(v)
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, malformed("span.status", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return code, nil
}

// consumeBytes reads a length-delimited value whose tag was already consumed.
func consumeBytes(typ protowire.Type, b []byte, what string) ([]byte, int, error) {
	if typ != protowire.BytesType {
		return nil, 0, wrongType(what, typ)
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, 0, malformed(what, protowire.ParseError(n))
	}
	return v, n, nil
}

func malformed(what string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
}

func wrongType(what string, typ protowire.Type) error {
	return fmt.Errorf("%w: %s: unexpected wire type %d", ErrMalformed, what, typ)
}
