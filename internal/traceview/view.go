package traceview

import (
	"bytes"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/policy"
)

// View is a policy.SpanSource over one buffered trace at a time.
type View struct {
	trace    *buffer.Trace
	indexed  bool
	spans    []indexedSpan
	services int                 // -1 until counted
	names    [][]byte            // distinct service names, while few
	nameSet  map[string]struct{} // distinct service names, once many
}

type indexedSpan struct {
	res    []byte // the interned resource part of its group
	raw    []byte
	parsed bool // span holds the fixed fields
	span   policy.Span
}

var _ policy.SpanSource = (*View)(nil)

// Reset points the view at t, forgetting the previous trace.
func (v *View) Reset(t *buffer.Trace) {
	v.trace, v.indexed, v.services = t, false, -1
}

// index finds where each span's bytes are, once per trace: a walk over the
// trace's log that reads lengths, not fields. A span's fields are read when
// a rule first asks for them (rules on the root read one span, not all).
func (v *View) index() {
	if v.indexed {
		return
	}
	v.indexed = true
	clear(v.spans) // drop references to the previous trace's bytes
	v.spans = v.spans[:0]
	if v.trace == nil {
		return
	}
	for group, raw := range v.trace.Spans() {
		v.spans = append(v.spans, indexedSpan{res: group.Resource, raw: raw})
	}
}

// Len implements policy.SpanSource.
func (v *View) Len() int {
	if v.trace == nil {
		return 0
	}
	return int(v.trace.SpanCount)
}

// Root implements policy.SpanSource. The buffer recorded which span was the
// root when it arrived, so this reads nothing.
func (v *View) Root() int {
	if v.trace == nil || !v.trace.HasRoot() {
		return -1
	}
	return int(v.trace.RootIndex)
}

// Span implements policy.SpanSource.
func (v *View) Span(i int) policy.Span {
	v.index()
	s := &v.spans[i]
	if !s.parsed {
		f, _ := otlpwire.SpanFields(s.raw) // buffered spans were validated at ingest
		s.span = policy.Span{Name: f.Name, Kind: f.Kind, StatusCode: f.StatusCode,
			StartUnixNano: f.StartUnixNano, EndUnixNano: f.EndUnixNano, IsRoot: f.IsRoot()}
		s.parsed = true
	}
	return s.span
}

// SpanAttr implements policy.SpanSource.
func (v *View) SpanAttr(i int, key string) (policy.Value, bool) {
	v.index()
	val, ok := otlpwire.SpanAttr(v.spans[i].raw, key)
	return convert(val), ok
}

// ResourceAttr implements policy.SpanSource.
func (v *View) ResourceAttr(i int, key string) (policy.Value, bool) {
	v.index()
	val, ok := otlpwire.ResourceAttr(v.spans[i].res, key)
	return convert(val), ok
}

// HasEvent implements policy.SpanSource.
func (v *View) HasEvent(i int, name string) bool {
	v.index()
	return otlpwire.SpanHasEvent(v.spans[i].raw, name)
}

// Services implements policy.SpanSource: distinct service.name values over
// the resources of the trace's spans. Spans of one trace share few
// resources, so this reads each run of one resource once; a trace under
// thousands of services is counted with a set, not a list.
func (v *View) Services() int {
	v.index()
	if v.services >= 0 {
		return v.services
	}
	v.names = v.names[:0]
	clear(v.nameSet)
	var last []byte
	for i := range v.spans {
		res := v.spans[i].res
		if last != nil && bytes.Equal(res, last) {
			continue
		}
		last = res
		val, _ := otlpwire.ResourceAttr(res, "service.name")
		v.addName(val.Str()) // nil for no (string) service.name: counts as ""
	}
	v.services = len(v.names) + len(v.nameSet)
	return v.services
}

// namesListMax is the most distinct names Services compares one by one.
const namesListMax = 16

func (v *View) addName(name []byte) {
	if len(v.nameSet) > 0 {
		v.nameSet[string(name)] = struct{}{}
		return
	}
	for _, n := range v.names {
		if bytes.Equal(n, name) {
			return
		}
	}
	if len(v.names) < namesListMax {
		v.names = append(v.names, name)
		return
	}
	if v.nameSet == nil {
		v.nameSet = make(map[string]struct{})
	}
	for _, n := range v.names {
		v.nameSet[string(n)] = struct{}{}
	}
	v.names = v.names[:0]
	v.nameSet[string(name)] = struct{}{}
}

func convert(x otlpwire.Value) policy.Value {
	switch x.Type {
	case otlpwire.ValueString:
		return policy.Value{Kind: policy.ValueString, Str: x.Str()}
	case otlpwire.ValueInt:
		return policy.Value{Kind: policy.ValueInt, Int: x.Int()}
	case otlpwire.ValueDouble:
		return policy.Value{Kind: policy.ValueDouble, Double: x.Double()}
	case otlpwire.ValueBool:
		return policy.Value{Kind: policy.ValueBool, Bool: x.Bool()}
	case otlpwire.ValueEmpty:
		return policy.Value{}
	}
	return policy.Value{Kind: policy.ValueOther}
}

// Trace resets the view to t and returns what a policy sees of it: the
// buffer's summary, with this view as its span source.
func (v *View) Trace(t *buffer.Trace) policy.Trace {
	v.Reset(t)
	return policy.Trace{ID: t.ID, SpanCount: int(t.SpanCount), ErrorCount: int(t.ErrorCount),
		HasRoot: t.HasRoot(), StartUnixNano: t.MinStart, EndUnixNano: t.MaxEnd, Spans: v}
}
