package policy_test

import (
	"time"

	"github.com/tailsift/tailsift/policy"
)

// memSpans is an in-memory policy.SpanSource, built by the helpers below.
// Lookups scan small slices and do not allocate.
type memSpans struct {
	spans []memSpan
}

type memAttr struct {
	key string
	val policy.Value
}

type memSpan struct {
	span   policy.Span
	attrs  []memAttr
	res    []memAttr
	events []string
}

func (m *memSpans) Len() int { return len(m.spans) }

func (m *memSpans) Root() int {
	for i := range m.spans {
		if m.spans[i].span.IsRoot {
			return i
		}
	}
	return -1
}

func (m *memSpans) Span(i int) policy.Span { return m.spans[i].span }

func (m *memSpans) SpanAttr(i int, key string) (policy.Value, bool) {
	return lookupAttr(m.spans[i].attrs, key)
}

func (m *memSpans) ResourceAttr(i int, key string) (policy.Value, bool) {
	return lookupAttr(m.spans[i].res, key)
}

func lookupAttr(attrs []memAttr, key string) (policy.Value, bool) {
	for i := range attrs {
		if attrs[i].key == key {
			return attrs[i].val, true
		}
	}
	return policy.Value{}, false
}

func (m *memSpans) HasEvent(i int, name string) bool {
	for _, e := range m.spans[i].events {
		if e == name {
			return true
		}
	}
	return false
}

func (m *memSpans) Services() int {
	n := 0
outer:
	for i := range m.spans {
		v, _ := lookupAttr(m.spans[i].res, "service.name")
		for j := range i {
			if w, _ := lookupAttr(m.spans[j].res, "service.name"); string(w.Str) == string(v.Str) {
				continue outer
			}
		}
		n++
	}
	return n
}

const t0 = uint64(1_700_000_000_000_000_000) // a start time in unix nanoseconds

// sp returns a span named name: kind internal, status unset, lasting 1ms
// from t0.
func sp(name string) memSpan {
	return memSpan{span: policy.Span{Name: []byte(name), Kind: 1, StartUnixNano: t0, EndUnixNano: t0 + uint64(time.Millisecond)}}
}

func (s memSpan) root() memSpan          { s.span.IsRoot = true; return s }
func (s memSpan) kind(k int32) memSpan   { s.span.Kind = k; return s }
func (s memSpan) status(c int32) memSpan { s.span.StatusCode = c; return s }
func (s memSpan) err() memSpan           { return s.status(2) }
func (s memSpan) event(n string) memSpan {
	s.events = append(s.events[:len(s.events):len(s.events)], n)
	return s
}

// at sets the span's start offset from t0 and duration.
func (s memSpan) at(off, d time.Duration) memSpan {
	s.span.StartUnixNano = t0 + uint64(off)
	s.span.EndUnixNano = s.span.StartUnixNano + uint64(d)
	return s
}

func (s memSpan) attr(k string, v any) memSpan {
	s.attrs = append(s.attrs[:len(s.attrs):len(s.attrs)], memAttr{k, value(v)})
	return s
}

func (s memSpan) rattr(k string, v any) memSpan {
	s.res = append(s.res[:len(s.res):len(s.res)], memAttr{k, value(v)})
	return s
}

func (s memSpan) svc(name string) memSpan { return s.rattr("service.name", name) }

// value converts a Go value to a policy.Value: string, []byte (a string
// value), int, int64, float64, bool, nil (present without a value), or
// anything else (an array or map).
func value(v any) policy.Value {
	switch v := v.(type) {
	case string:
		return policy.Value{Kind: policy.ValueString, Str: []byte(v)}
	case []byte:
		return policy.Value{Kind: policy.ValueString, Str: v}
	case int:
		return policy.Value{Kind: policy.ValueInt, Int: int64(v)}
	case int64:
		return policy.Value{Kind: policy.ValueInt, Int: v}
	case float64:
		return policy.Value{Kind: policy.ValueDouble, Double: v}
	case bool:
		return policy.Value{Kind: policy.ValueBool, Bool: v}
	case nil:
		return policy.Value{Kind: policy.ValueNone}
	}
	return policy.Value{Kind: policy.ValueOther}
}

// mkTrace builds a trace of spans, with the summary a sampler would keep.
func mkTrace(spans ...memSpan) *policy.Trace {
	t := &policy.Trace{ID: idWithRandomness(42), Spans: &memSpans{spans: spans}, SpanCount: len(spans)}
	for i, s := range spans {
		if s.span.StatusCode == 2 {
			t.ErrorCount++
		}
		t.HasRoot = t.HasRoot || s.span.IsRoot
		if i == 0 || s.span.StartUnixNano < t.StartUnixNano {
			t.StartUnixNano = s.span.StartUnixNano
		}
		t.EndUnixNano = max(t.EndUnixNano, s.span.EndUnixNano)
	}
	return t
}

// summaryOnly returns t without its spans.
func summaryOnly(t *policy.Trace) *policy.Trace {
	c := *t
	c.Spans = nil
	return &c
}

// idWithRandomness returns a trace ID whose low 56 bits are r and whose
// other bytes are junk that must not matter.
func idWithRandomness(r uint64) [16]byte {
	id := [16]byte{0: 0xde, 1: 0xad, 7: 0xbe, 8: 0xff}
	for i := 15; i >= 9; i-- {
		id[i] = byte(r)
		r >>= 8
	}
	return id
}
