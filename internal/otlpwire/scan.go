package otlpwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

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

// Span is the index entry of one span: the fields the ingest path reads,
// and the span's encoded bytes (SpanFields reads the others, such as the
// name, when a policy asks). Raw aliases the scanned request. The entry is
// kept small: a request of minimal spans (about 30 bytes each) costs its
// size a few times over in entries.
type Span struct {
	TraceID       [16]byte
	SpanID        [8]byte
	ParentSpanID  [8]byte // zero for a root span
	StartUnixNano uint64
	EndUnixNano   uint64
	Raw           []byte // the encoded Span message, without its tag and length
	Kind          int32
	StatusCode    int32
	Group         int32 // index into Request.Groups
}

// IsRoot reports whether the span has no parent.
func (s *Span) IsRoot() bool { return s.ParentSpanID == [8]byte{} }

// IsError reports whether the span's status is ERROR.
func (s *Span) IsError() bool { return s.StatusCode == StatusCodeError }

// Group is the resource and instrumentation scope that spans were sent
// under (see the package documentation on groups). Both parts are field
// bytes, verbatim with their tags; in a Request they alias its arena, and
// the groups of one ResourceSpans share one Resource slice.
type Group struct {
	// Resource holds the fields of the ResourceSpans other than
	// scope_spans: the resource, schema_url and unknown fields.
	Resource []byte
	// Scope holds the fields of the ScopeSpans other than spans: the
	// scope, schema_url and unknown fields.
	Scope []byte
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

	// arena holds each ResourceSpans' resource part once and each
	// ScopeSpans' scope part once, so it is never larger than the request.
	arena      []byte
	scanning   []byte       // the request being scanned, to estimate the span count
	parts      []groupParts // per group: where its parts are in arena
	resources  int32        // ResourceSpans with at least one span
	spanTrace  []int32      // trace ordinal per span, scratch for GroupByTrace
	traceIndex map[[16]byte]int32
}

// groupParts locates a group's resource and scope parts in the arena.
type groupParts struct {
	resStart, resEnd, scopeStart, scopeEnd int32
	resource                               int32 // ordinal of its ResourceSpans
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
	r.parts = r.parts[:0]
	r.resources = 0
}

// Resources returns the number of distinct resource parts in the request:
// ResourceIndex of each group is below it.
func (r *Request) Resources() int { return int(r.resources) }

// ResourceIndex returns the ordinal of group g's ResourceSpans: groups with
// equal indexes share their Resource bytes, so a consumer that interns
// resources can look each up once per request.
func (r *Request) ResourceIndex(g int32) int32 { return r.parts[g].resource }

// IndexBytes is the memory this request's index needs: span entries,
// groups and their parts (each resource part counted once), and what
// GroupByTrace adds. Budgets of requests in flight count it.
func (r *Request) IndexBytes() int64 {
	n := int64(len(r.Spans))*int64(unsafe.Sizeof(Span{})) +
		int64(len(r.Groups))*int64(unsafe.Sizeof(Group{})) +
		int64(len(r.parts))*int64(unsafe.Sizeof(groupParts{})) + int64(len(r.arena))
	// GroupByTrace: per span its place and trace ordinal; per trace a run
	// and an index entry (key, value, map slack).
	return n + int64(len(r.Spans))*8 + int64(len(r.Spans))*(int64(unsafe.Sizeof(TraceRun{}))+32)
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
	r.scanning = b
	err := r.scan(b)
	r.scanning = nil
	if err != nil {
		r.Reset()
		return err
	}
	// The arena is complete: only now can groups alias it.
	if cap(r.Groups) < len(r.parts) {
		r.Groups = make([]Group, 0, len(r.parts))
	}
	for _, p := range r.parts {
		r.Groups = append(r.Groups, Group{
			Resource: r.arena[p.resStart:p.resEnd:p.resEnd],
			Scope:    r.arena[p.scopeStart:p.scopeEnd:p.scopeEnd],
		})
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
// that make up its resource part (they may follow the scope_spans), then
// for each ScopeSpans. The resource part is copied once, however many
// ScopeSpans share it, so the arena stays within the request's size.
func (r *Request) scanResourceSpans(b []byte) error {
	resStart := int32(len(r.arena))
	if err := r.copyFieldsExcept(b, fieldResourceSpansScopeSpans, kindResource, "resource_spans"); err != nil {
		return err
	}
	resEnd := int32(len(r.arena))
	groups := len(r.parts)
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
	if len(r.parts) == groups {
		r.arena = r.arena[:resStart] // no spans: the resource is not needed
	} else {
		r.resources++
	}
	return nil
}

func (r *Request) scanScopeSpans(b []byte, resStart, resEnd int32) error {
	scopeStart := int32(len(r.arena))
	if err := r.copyFieldsExcept(b, fieldScopeSpansSpans, kindScope, "scope_spans"); err != nil {
		return err
	}
	// The group exists once its first span does: empty ScopeSpans cost
	// nothing (they are 2 bytes on the wire; a group is 48 in memory).
	group := int32(-1)
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
		if group < 0 {
			group = int32(len(r.parts))
			r.parts = append(r.parts, groupParts{resStart: resStart, resEnd: resEnd,
				scopeStart: scopeStart, scopeEnd: int32(len(r.arena)), resource: r.resources})
		}
		if err := r.scanSpan(v, group); err != nil {
			return err
		}
	}
	if group < 0 {
		r.arena = r.arena[:scopeStart]
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
	if len(r.Spans) == cap(r.Spans) {
		r.growSpans(b)
	}
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

// minSpanSize is the least a span takes on the wire: a trace_id and a
// span_id field (18 + 10 bytes) and its own tag and length.
const minSpanSize = 30

// growSpans makes room for more spans, span being the one about to be
// added. append would grow by a quarter at a time (allocating five times
// the final size in all, for a large request of small spans); this sizes
// the index for the spans the rest of the request likely holds, at the
// density seen so far, and never past what its bytes can hold.
func (r *Request) growSpans(span []byte) {
	n := len(r.Spans)
	scanned := int(uintptr(unsafe.Pointer(unsafe.SliceData(span))) - uintptr(unsafe.Pointer(unsafe.SliceData(r.scanning))))
	want := 2*n + 8
	if scanned > 0 && n >= 8 {
		want = max(n+8, int(int64(n)*int64(len(r.scanning))/int64(scanned))*9/8)
	}
	want = min(want, n+len(r.scanning[scanned:])/minSpanSize+1)
	grown := make([]Span, n, want)
	copy(grown, r.Spans)
	clear(r.Spans) // drop references into the request bytes
	r.Spans = grown
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
