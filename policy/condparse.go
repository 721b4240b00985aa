package policy

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parsing conditions. A condition is a mapping; each key is a combinator
// (all, any, not), a quantifier (any_span, every_span) or a field path with
// a matcher; several keys in one mapping must all hold. See docs/policies.md.

// scope is where a condition is evaluated: on the trace (trace fields,
// root.<span field>, quantifiers) or on each span inside a quantifier (span
// fields only).
type scope uint8

const (
	scopeTrace scope = iota
	scopeSpan
)

type fieldDef struct {
	kind fieldKind
	typ  fieldType
}

var (
	traceFieldDefs = map[string]fieldDef{
		"duration":    {fieldDuration, typeDuration},
		"span_count":  {fieldSpanCount, typeInt},
		"error_count": {fieldErrorCount, typeInt},
		"has_root":    {fieldHasRoot, typeBool},
		"services":    {fieldServices, typeInt},
	}
	spanFieldDefs = map[string]fieldDef{
		"name":     {fieldName, typeText},
		"kind":     {fieldKind_, typeKind},
		"status":   {fieldStatus, typeStatus},
		"duration": {fieldSpanDuration, typeDuration},
		"is_root":  {fieldIsRoot, typeBool},
		"event":    {fieldEvent, typeEvent},
	}
	traceFieldNames = []string{"duration", "span_count", "error_count", "has_root", "services"}
	spanFieldNames  = []string{"name", "kind", "status", "duration", "is_root", "event", "attr.<key>", "resource.<key>"}
	rootFieldNames  = []string{"name", "kind", "status", "duration", "event", "attr.<key>", "resource.<key>"}
	combinators     = []string{"all", "any", "not", "any_span", "every_span"}
)

// spanField parses a span field path (no root. prefix); ok is false if it
// is not one.
func spanField(path string) (field, bool) {
	for _, pre := range [...]struct {
		prefix string
		kind   fieldKind
	}{{"attr.", fieldAttr}, {"resource.", fieldResource}} {
		if key, ok := strings.CutPrefix(path, pre.prefix); ok && key != "" {
			return field{kind: pre.kind, key: key, typ: typeAny, path: path}, true
		}
	}
	if d, ok := spanFieldDefs[path]; ok {
		return field{kind: d.kind, typ: d.typ, path: path}, true
	}
	return field{}, false
}

// parseField resolves a condition key at scope sc, reporting what is wrong
// with it.
func (p *parser) parseField(k *yaml.Node, sc scope, ctx, quant string) (field, bool) {
	path := k.Value
	if sc == scopeTrace {
		if d, ok := traceFieldDefs[path]; ok {
			return field{kind: d.kind, typ: d.typ, path: path}, true
		}
		if sub, ok := strings.CutPrefix(path, "root."); ok {
			if f, ok := spanField(sub); ok && f.kind != fieldIsRoot {
				f.root, f.path = true, path
				return f, true
			}
			e := p.errorf(k, "%s: unknown root span field %q", ctx, sub)
			e.Hint = "root span fields: root." + strings.Join(rootFieldNames, ", root.")
			if sub == "is_root" {
				e.Hint = "the root span is the root: to ask whether the trace has one, write has_root: true"
			} else if sub == "attr." || sub == "resource." || sub == "attr" || sub == "resource" {
				e.Hint = "name the attribute: root.attr.<key> (span attribute) or root.resource.<key> (resource attribute)"
			} else if s := closest(sub, []string{"name", "kind", "status", "duration", "event", "attr", "resource"}); s != "" {
				e.Hint = fmt.Sprintf("did you mean root.%s? %s", s, e.Hint)
			}
			return field{}, false
		}
		if _, ok := spanField(path); ok {
			p.errorf(k, "%s: %q is a span field: say which span", ctx, path).Hint =
				fmt.Sprintf("root.%s for the root span, or any_span: {%s: ...} / every_span: {%s: ...}", path, path, path)
			return field{}, false
		}
		e := p.errorf(k, "%s: unknown field %q", ctx, path)
		e.Hint = "trace fields: " + strings.Join(traceFieldNames, ", ") + "; the root span: root.<field>; spans: any_span, every_span; and all, any, not"
		if s := closest(path, append(append(append([]string{}, traceFieldNames...), combinators...), "root.name", "root.kind", "root.status")); s != "" {
			e.Hint = fmt.Sprintf("did you mean %q? %s", s, e.Hint)
		} else if strings.Contains(path, ".") {
			e.Hint = fmt.Sprintf("attributes are root.attr.%s (root span) or root.resource.%s (its resource), or attr.%s inside any_span/every_span", path, path, path)
		}
		return field{}, false
	}
	if f, ok := spanField(path); ok {
		return f, true
	}
	if _, ok := traceFieldDefs[path]; ok {
		p.errorf(k, "%s: %q is a trace field, not a span field", ctx, path).Hint = "move it out of " + quant
		return field{}, false
	}
	if sub, ok := strings.CutPrefix(path, "root."); ok {
		p.errorf(k, "%s: %q is a field of the root span, inside %s", ctx, path, quant).Hint =
			fmt.Sprintf("write %s to test each span, or move %s out of %s", sub, path, quant)
		return field{}, false
	}
	e := p.errorf(k, "%s: unknown span field %q", ctx, path)
	e.Hint = "span fields: " + strings.Join(spanFieldNames, ", ") + "; and all, any, not"
	if s := closest(path, append([]string{"name", "kind", "status", "duration", "is_root", "event", "all", "any", "not"}, "attr."+path, "resource."+path)); s != "" && !strings.HasSuffix(s, "."+path) {
		e.Hint = fmt.Sprintf("did you mean %q? %s", s, e.Hint)
	} else if strings.Contains(path, ".") {
		e.Hint = fmt.Sprintf("attributes are attr.%s (span attribute) or resource.%s (resource attribute)", path, path)
	}
	return field{}, false
}

// cond compiles the condition n at scope sc; quant is the enclosing
// quantifier (at span scope). ok is false if it had any problem.
func (p *parser) cond(n *yaml.Node, sc scope, ctx, quant string, depth int) (c cond, ok bool) {
	p.nodes++
	switch {
	case p.nodes == maxCondNodes+1:
		p.errorf(n, "%s: more than %d conditions in this file", ctx, maxCondNodes).Hint = "simplify the policy (are aliases expanding?)"
		return cond{}, false
	case p.nodes > maxCondNodes:
		return cond{}, false
	case depth > maxDepth:
		p.errorf(n, "%s: conditions nested more than %d deep", ctx, maxDepth).Hint = "simplify the condition"
		return cond{}, false
	}
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		what := describe(n)
		if n.Kind == yaml.MappingNode {
			what = "an empty mapping"
		}
		p.errorf(n, "%s: want a condition, got %s", ctx, what).Hint =
			`a mapping of fields and matchers such as {root.name: "GET /", duration: {gte: 1s}}, or all: [...], any: [...], not: {...}, any_span: {...}, every_span: {...}`
		return cond{}, false
	}
	before := len(p.errs)
	var parts []cond
	for _, kv := range p.pairs(n, ctx+": ") {
		k, v := kv.key.Value, kv.value
		kctx := ctx + ": " + k
		switch k {
		case "all", "any":
			if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
				p.errorf(v, "%s: want a non-empty list of conditions, got %s", kctx, describe(v)).Hint =
					fmt.Sprintf("%s: [{...}, {...}]; a single mapping of several fields already means all of them", k)
				continue
			}
			op := condAll
			if k == "any" {
				op = condAny
			}
			kids := make([]cond, 0, len(v.Content))
			for i, item := range v.Content {
				if kid, ok := p.cond(resolve(item), sc, fmt.Sprintf("%s[%d]", kctx, i), quant, depth+1); ok {
					kids = append(kids, kid)
				}
			}
			parts = append(parts, cond{op: op, kids: kids, text: k + "(" + joinText(kids) + ")"})
		case "not":
			if kid, ok := p.cond(v, sc, kctx, quant, depth+1); ok {
				parts = append(parts, cond{op: condNot, kids: []cond{kid}, text: "not(" + kid.text + ")"})
			}
		case "any_span", "every_span":
			if sc == scopeSpan {
				p.errorf(kv.key, "%s: %s inside %s", ctx, k, quant).Hint =
					"quantifiers do not nest: a condition inside a quantifier is about one span"
				continue
			}
			op := condAnySpan
			if k == "every_span" {
				op = condEverySpan
			}
			if kid, ok := p.cond(v, scopeSpan, kctx, k, depth+1); ok {
				parts = append(parts, cond{op: op, kids: []cond{kid}, text: k + "(" + kid.text + ")"})
			}
		default:
			f, ok := p.parseField(kv.key, sc, ctx, quant)
			if !ok {
				continue
			}
			if tests, ok := p.matcher(v, &f, kctx); ok {
				parts = append(parts, cond{op: condLeaf, field: f, tests: tests, text: f.path + " " + formatTests(tests, f.typ)})
			}
		}
	}
	if len(p.errs) > before {
		return cond{}, false
	}
	if len(parts) == 1 {
		return parts[0], true
	}
	return cond{op: condAll, kids: parts, text: "all(" + joinText(parts) + ")"}, true
}

func joinText(cs []cond) string {
	var b strings.Builder
	for i := range cs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(cs[i].text)
	}
	return b.String()
}

// operators lists the operators each field type takes, in message order.
var operators = map[fieldType][]string{
	typeText:     {"eq", "in", "regex", "exists"},
	typeInt:      {"eq", "in", "gt", "gte", "lt", "lte"},
	typeDuration: {"eq", "in", "gt", "gte", "lt", "lte"},
	typeBool:     {"eq"},
	typeKind:     {"eq", "in"},
	typeStatus:   {"eq", "in"},
	typeAny:      {"eq", "in", "regex", "gt", "gte", "lt", "lte", "exists"},
	typeEvent:    {"eq", "in"},
}

var allOperators = []string{"eq", "in", "regex", "gt", "gte", "lt", "lte", "exists"}

// matcher compiles the value of field f: a scalar (equality) or a mapping
// of operators that must all hold.
func (p *parser) matcher(v *yaml.Node, f *field, ctx string) ([]test, bool) {
	switch {
	case v.Kind == yaml.ScalarNode && !isNull(v):
		l, ok := p.literal(v, f.typ, ctx)
		return []test{{op: testIn, lits: []lit{l}}}, ok
	case v.Kind == yaml.SequenceNode:
		p.errorf(v, "%s: got a list", ctx).Hint = "to match any of several values write {in: [a, b]}"
		return nil, false
	case v.Kind != yaml.MappingNode || len(v.Content) == 0:
		p.errorf(v, "%s: got %s", ctx, describe(v)).Hint = "want a value, or operators such as {gte: 500} or {exists: true}; valid operators here: " + strings.Join(operators[f.typ], ", ")
		return nil, false
	}
	before := len(p.errs)
	valid := operators[f.typ]
	var tests []test
	for _, kv := range p.pairs(v, ctx+": ") {
		op, x := kv.key.Value, kv.value
		octx := ctx + ": " + op
		if !slices.Contains(valid, op) {
			e := p.errorf(kv.key, "%s: unknown operator %q", ctx, op)
			e.Hint = "valid operators for " + f.path + ": " + strings.Join(valid, ", ")
			switch {
			case slices.Contains(allOperators, op):
				e.Msg = fmt.Sprintf("%s: operator %q does not apply to %s", ctx, op, f.path)
			case op == "ne" || op == "neq" || op == "not" || op == "not_in":
				e.Hint = fmt.Sprintf("there is no negated operator: write not: {%s: ...}, which is also true when %s is absent", f.path, f.path)
			default:
				if s := closest(op, allOperators); s != "" {
					e.Hint = fmt.Sprintf("did you mean %q? %s", s, e.Hint)
				}
			}
			continue
		}
		switch op {
		case "eq":
			if l, ok := p.literal(x, f.typ, octx); ok {
				tests = append(tests, test{op: testIn, lits: []lit{l}})
			}
		case "in":
			if x.Kind != yaml.SequenceNode || len(x.Content) == 0 {
				p.errorf(x, "%s: want a non-empty list of values, got %s", octx, describe(x)).Hint = "in: [a, b, c]"
				continue
			}
			t := test{op: testIn}
			for i, item := range x.Content {
				if l, ok := p.literal(resolve(item), f.typ, fmt.Sprintf("%s[%d]", octx, i)); ok {
					t.lits = append(t.lits, l)
				}
			}
			t.set = textSet(t.lits)
			tests = append(tests, t)
		case "regex":
			if x.Kind != yaml.ScalarNode || isNull(x) {
				p.errorf(x, "%s: got %s", octx, describe(x)).Hint = "want a regular expression (RE2 syntax) in quotes"
				continue
			}
			re, err := regexp.Compile("^(?:" + x.Value + ")$")
			if err != nil {
				msg := err.Error()
				if ce := (*syntax.Error)(nil); errors.As(err, &ce) {
					msg = string(ce.Code) + ": `" + ce.Expr + "`"
				}
				p.errorf(x, "%s: invalid regular expression %q: %s", octx, x.Value, msg).Hint = "RE2 syntax (https://github.com/google/re2/wiki/Syntax); it must match the whole value"
				continue
			}
			tests = append(tests, test{op: testRegex, re: re, src: x.Value})
		case "gt", "gte", "lt", "lte":
			if l, ok := p.numberLit(x, f.typ, octx); ok {
				tests = append(tests, test{op: map[string]testOp{"gt": testGt, "gte": testGte, "lt": testLt, "lte": testLte}[op], num: l})
			}
		case "exists":
			if b, ok := p.boolean(octx, x); ok {
				tests = append(tests, test{op: testExists, exists: b})
			}
		}
	}
	if len(p.errs) > before {
		return nil, false
	}
	if msg, hint := neverMatches(tests); msg != "" {
		p.errorf(v, "%s: never matches: %s", ctx, msg).Hint = hint
		return nil, false
	}
	return tests, true
}

// textSet returns the set of text literals of an in-list, if it is big.
func textSet(lits []lit) map[string]struct{} {
	n := 0
	for _, l := range lits {
		if l.kind == litText {
			n++
		}
	}
	if n < bigIn {
		return nil
	}
	set := make(map[string]struct{}, n)
	for _, l := range lits {
		if l.kind == litText {
			set[l.s] = struct{}{}
		}
	}
	return set
}

// neverMatches describes why tests can match no value, or returns "".
func neverMatches(tests []test) (msg, hint string) {
	lo, hi := math.Inf(-1), math.Inf(1)
	loStrict, hiStrict := false, false
	absent := false
	for _, t := range tests {
		x := t.num.f
		if t.num.kind == litInt {
			x = float64(t.num.i)
		}
		switch t.op {
		case testGt, testGte:
			if x > lo || x == lo && t.op == testGt {
				lo, loStrict = x, t.op == testGt
			}
		case testLt, testLte:
			if x < hi || x == hi && t.op == testLt {
				hi, hiStrict = x, t.op == testLt
			}
		case testExists:
			absent = absent || !t.exists
		}
	}
	if absent && len(tests) > 1 {
		return "exists: false with another operator", "an absent value matches no other operator; to say \"absent or not equal\", write not: {field: value}"
	}
	if lo > hi || lo == hi && (loStrict || hiStrict) {
		return "the range is empty", "gt and gte are lower bounds, lt and lte upper bounds"
	}
	return "", ""
}

// literal parses a value of field type ft.
func (p *parser) literal(v *yaml.Node, ft fieldType, ctx string) (lit, bool) {
	if v.Kind != yaml.ScalarNode || isNull(v) {
		h := "want a single value"
		if v.Kind == yaml.SequenceNode {
			h = "to match any of several values write {in: [a, b]}"
		}
		p.errorf(v, "%s: got %s", ctx, describe(v)).Hint = h
		return lit{}, false
	}
	switch ft {
	case typeText, typeEvent:
		return lit{kind: litText, s: v.Value}, true
	case typeInt:
		i, ok := p.integer(ctx, v, 0, math.MaxInt64)
		return lit{kind: litInt, i: i}, ok
	case typeDuration:
		d, ok := p.duration(ctx, v)
		return lit{kind: litInt, i: int64(d)}, ok
	case typeBool:
		b, ok := p.boolean(ctx, v)
		return lit{kind: litBool, b: b}, ok
	case typeKind, typeStatus:
		names := kindNames
		if ft == typeStatus {
			names = statusNames
		}
		if i := slices.Index(names, strings.ToLower(v.Value)); i >= 0 {
			return lit{kind: litInt, i: int64(i)}, true
		}
		p.errorf(v, "%s: unknown value %q", ctx, v.Value).Hint = "valid values: " + strings.Join(names, ", ")
		return lit{}, false
	}
	switch v.ShortTag() { // typeAny: the YAML type decides
	case "!!int":
		var i int64
		if v.Decode(&i) == nil {
			return lit{kind: litInt, i: i}, true
		}
		var f float64
		if v.Decode(&f) == nil {
			return lit{kind: litFloat, f: f}, true
		}
		p.errorf(v, "%s: invalid number %q", ctx, v.Value)
		return lit{}, false
	case "!!float":
		var f float64
		if v.Decode(&f) != nil || f != f {
			p.errorf(v, "%s: invalid number %q", ctx, v.Value).Hint = "NaN equals nothing; to match text, quote it"
			return lit{}, false
		}
		return lit{kind: litFloat, f: f}, true
	case "!!bool":
		var b bool
		if v.Decode(&b) != nil {
			p.errorf(v, "%s: invalid boolean %q", ctx, v.Value)
			return lit{}, false
		}
		return lit{kind: litBool, b: b}, true
	}
	return lit{kind: litText, s: v.Value}, true
}

// numberLit parses the operand of gt, gte, lt, lte.
func (p *parser) numberLit(v *yaml.Node, ft fieldType, ctx string) (lit, bool) {
	if ft != typeAny {
		return p.literal(v, ft, ctx)
	}
	if v.Kind == yaml.ScalarNode && (v.ShortTag() == "!!int" || v.ShortTag() == "!!float") {
		return p.literal(v, ft, ctx)
	}
	p.errorf(v, "%s: got %s", ctx, describe(v)).Hint = "want a number (unquoted); text compares with eq, in or regex"
	return lit{}, false
}

// eventCond builds the condition "the span has an event named name".
func eventCond(root bool, name string) cond {
	f := field{kind: fieldEvent, root: root, typ: typeEvent, path: "event"}
	if root {
		f.path = "root.event"
	}
	tests := []test{{op: testIn, lits: []lit{{kind: litText, s: name}}}}
	return cond{op: condLeaf, field: f, tests: tests, text: f.path + " " + formatTests(tests, f.typ)}
}

// rangeCond builds the condition lo <= field (< hi if hi > 0) on an int or
// duration field.
func rangeCond(f field, lo, hi int64) cond {
	tests := []test{{op: testGte, num: lit{kind: litInt, i: lo}}}
	if hi > 0 {
		tests = append(tests, test{op: testLt, num: lit{kind: litInt, i: hi}})
	}
	return cond{op: condLeaf, field: f, tests: tests, text: f.path + " " + formatTests(tests, f.typ)}
}
