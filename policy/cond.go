package policy

import "math"

// Conditions: a tree of all/any/not, quantifiers over spans and leaves
// (a field and a matcher), compiled once at parse and evaluated without
// allocating. The tree is plain values with a kind switch rather than
// interfaces, so evaluation neither allocates nor makes the *Trace escape.
//
// Evaluation is three-valued at trace scope: a condition that needs spans
// (root.*, services, any_span, every_span) is unknown on a Trace without a
// SpanSource, and composes with Kleene's logic (false and unknown = false,
// true or unknown = true, not unknown = unknown). A rule decides a trace only
// if its condition is true, so a rule never matches because of spans it
// could not see, whether or not the condition is negated. At span scope
// (inside a quantifier) the spans are there, and logic is two-valued.

// tri is a truth value of three-valued logic; not x is 2-x, and is min, or
// is max.
type tri uint8

const (
	triFalse   tri = 0
	triUnknown tri = 1
	triTrue    tri = 2
)

func toTri(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

// fieldKind names what a field reads.
type fieldKind uint8

const (
	// Trace fields: from the Trace summary (services from the SpanSource).
	fieldDuration fieldKind = iota
	fieldSpanCount
	fieldErrorCount
	fieldHasRoot
	fieldServices
	// Span fields: of each span inside a quantifier, of the root span as
	// root.<field> at trace scope.
	fieldName
	fieldKind_
	fieldStatus
	fieldSpanDuration
	fieldIsRoot
	fieldAttr
	fieldResource
	fieldEvent
)

// field is a compiled field path such as root.attr.http.route.
type field struct {
	kind fieldKind
	root bool   // a span field of the root span, at trace scope
	key  string // attribute key (fieldAttr, fieldResource)
	typ  fieldType
	path string // as written
}

// traceValue reads a trace-scope field. known is false when the field
// needs spans and t has none; present is false when the field is absent
// (an attribute not set, no root span).
func (f *field) traceValue(t *Trace) (v Value, present, known bool) {
	switch f.kind {
	case fieldDuration:
		return Value{Kind: ValueInt, Int: int64(t.Duration())}, true, true
	case fieldSpanCount:
		return Value{Kind: ValueInt, Int: int64(t.SpanCount)}, true, true
	case fieldErrorCount:
		return Value{Kind: ValueInt, Int: int64(t.ErrorCount)}, true, true
	case fieldHasRoot:
		return Value{Kind: ValueBool, Bool: t.HasRoot}, true, true
	}
	if t.Spans == nil {
		return Value{}, false, false
	}
	if f.kind == fieldServices {
		return Value{Kind: ValueInt, Int: int64(t.Spans.Services())}, true, true
	}
	r := t.Spans.Root()
	if r < 0 {
		return Value{}, false, true
	}
	v, present = f.spanValue(t.Spans, r)
	return v, present, true
}

// spanValue reads a span field of span i. Not for fieldEvent.
func (f *field) spanValue(src SpanSource, i int) (Value, bool) {
	switch f.kind {
	case fieldAttr:
		return src.SpanAttr(i, f.key)
	case fieldResource:
		return src.ResourceAttr(i, f.key)
	}
	sp := src.Span(i)
	switch f.kind {
	case fieldName:
		return Value{Kind: ValueString, Str: sp.Name}, true
	case fieldKind_:
		return Value{Kind: ValueInt, Int: int64(sp.Kind)}, true
	case fieldStatus:
		return Value{Kind: ValueInt, Int: int64(sp.StatusCode)}, true
	case fieldSpanDuration:
		return Value{Kind: ValueInt, Int: int64(spanDuration(sp.StartUnixNano, sp.EndUnixNano))}, true
	case fieldIsRoot:
		return Value{Kind: ValueBool, Bool: sp.IsRoot}, true
	}
	panic("BUG: policy: spanValue of a trace field")
}

// spanDuration is end - start, 0 if end < start, saturated.
func spanDuration(start, end uint64) uint64 {
	if end < start {
		return 0
	}
	return min(end-start, math.MaxInt64)
}

// condOp is the kind of a condition node.
type condOp uint8

const (
	condTrue      condOp = iota // always true: a rule without a condition
	condAll                     // every kid
	condAny                     // some kid
	condNot                     // not kids[0]
	condAnySpan                 // kids[0] holds for some span
	condEverySpan               // kids[0] holds for every span (true without spans)
	condLeaf                    // field passes tests
)

// cond is a compiled condition.
type cond struct {
	op    condOp
	kids  []cond
	field field
	tests []test // condLeaf; for fieldEvent, one testIn of event names
	// text renders the condition for explanations: `root.name = "GET /"`,
	// `any_span(...)`.
	text string
}

var trueCond = cond{op: condTrue, text: "true"}

// eval evaluates c at trace scope.
func (c *cond) eval(t *Trace) tri {
	switch c.op {
	case condTrue:
		return triTrue
	case condAll:
		r := triTrue
		for i := range c.kids {
			k := c.kids[i].eval(t)
			if k == triFalse {
				return triFalse
			}
			r = min(r, k)
		}
		return r
	case condAny:
		r := triFalse
		for i := range c.kids {
			k := c.kids[i].eval(t)
			if k == triTrue {
				return triTrue
			}
			r = max(r, k)
		}
		return r
	case condNot:
		return triTrue - c.kids[0].eval(t)
	case condAnySpan:
		src := t.Spans
		if src == nil {
			return triUnknown
		}
		for i, n := 0, src.Len(); i < n; i++ {
			if c.kids[0].evalSpan(src, i) {
				return triTrue
			}
		}
		return triFalse
	case condEverySpan:
		src := t.Spans
		if src == nil {
			return triUnknown
		}
		for i, n := 0, src.Len(); i < n; i++ {
			if !c.kids[0].evalSpan(src, i) {
				return triFalse
			}
		}
		return triTrue
	case condLeaf:
		if c.field.kind == fieldEvent { // root.event
			if t.Spans == nil {
				return triUnknown
			}
			r := t.Spans.Root()
			return toTri(r >= 0 && c.hasEvent(t.Spans, r))
		}
		v, present, known := c.field.traceValue(t)
		if !known {
			return triUnknown
		}
		return toTri(matches(c.tests, &v, present))
	}
	panic("BUG: policy: unknown condition")
}

// evalSpan evaluates c at span scope, for span i.
func (c *cond) evalSpan(src SpanSource, i int) bool {
	switch c.op {
	case condTrue:
		return true
	case condAll:
		for j := range c.kids {
			if !c.kids[j].evalSpan(src, i) {
				return false
			}
		}
		return true
	case condAny:
		for j := range c.kids {
			if c.kids[j].evalSpan(src, i) {
				return true
			}
		}
		return false
	case condNot:
		return !c.kids[0].evalSpan(src, i)
	case condLeaf:
		if c.field.kind == fieldEvent {
			return c.hasEvent(src, i)
		}
		v, present := c.field.spanValue(src, i)
		return matches(c.tests, &v, present)
	}
	panic("BUG: policy: quantifier at span scope")
}

// hasEvent reports whether span i has an event named by the leaf's names.
func (c *cond) hasEvent(src SpanSource, i int) bool {
	lits := c.tests[0].lits
	for j := range lits {
		if src.HasEvent(i, lits[j].s) {
			return true
		}
	}
	return false
}

// unconditional reports whether c is the constant true.
func (c *cond) unconditional() bool { return c.op == condTrue }

// and returns the conjunction of a and b, leaving out constant true.
func and(a, b cond) cond {
	switch {
	case a.unconditional():
		return b
	case b.unconditional():
		return a
	}
	return cond{op: condAll, kids: []cond{a, b}, text: "all(" + a.text + ", " + b.text + ")"}
}
