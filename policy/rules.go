package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Rules: every rule compiles to a condition (which traces it decides) and an
// action (what it does to them). The condition is the rule type's own (an
// error, a duration, ...) and the rule's "when", both of which must hold.

// ruleNameRE is the syntax of rule and tier names: they become Prometheus
// label values and appear in decision records, so keep them plain.
var ruleNameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

// actionKind is what a matching rule does.
type actionKind uint8

const (
	actFixed     actionKind = iota // keep with probability p, by trace ID (p 1: keep, 0: drop)
	actTiers                       // priority: the first matching tier's p; no tier: the rule does not match
	actAdaptive                    // adaptive: p per key, adjusted every interval
	actRateLimit                   // rate_limit: keep while the token bucket allows
)

// rule is one compiled rule.
type rule struct {
	name  string
	label string // `rules[2] "sample-rest"`, for messages
	line  int
	typ   string // the rule's type, "" for a rule without one
	cond  cond
	act   actionKind
	p     float64   // actFixed
	th    Threshold // actFixed: ThresholdFor(p)
	tiers []tier    // actTiers
	adapt *adaptive // actAdaptive
	limit *rateLimit
	// decidesAll: the rule decides every trace (a type without a condition
	// of its own, no when), so the rules after it are unreachable.
	decidesAll bool
}

// tier is one tier of a priority rule.
type tier struct {
	name     string // may be empty
	cond     cond
	p        float64
	th       Threshold
	priority int // Decision.Priority: the first tier has the highest
}

func (r *rule) setFixed(p float64) {
	r.act, r.p, r.th = actFixed, p, ThresholdFor(p)
}

// actions says whether a rule type takes the action keys keep, drop and
// percentage.
type actions uint8

const (
	actionsNone     actions = iota // the type has its own action
	actionsOptional                // default keep
	actionsRequired
)

var actionKeys = []string{"keep", "drop", "percentage"}

// ruleType is one value of a rule's "type" key.
type ruleType struct {
	name      string
	params    []string // keys besides name, type, when and the action keys
	actions   actions
	needsWhen bool
	// decidesAll: without a when, the type decides every trace (it has no
	// condition of its own), so rules after it are unreachable.
	decidesAll bool
	// compile sets r.cond to the type's own condition and, for types with
	// their own action, r's action.
	compile func(p *parser, rn *ruleNode, r *rule)
}

// ruleNode is a rule mapping being compiled.
type ruleNode struct {
	label  string                // `rules[1] "slow"`, prefix of every message
	node   *yaml.Node            // the mapping, for "missing key" positions
	fields map[string]*yaml.Node // key -> value
	keys   map[string]*yaml.Node // key -> key node
}

// untyped is the type of a rule without "type": a condition and an action.
var untyped = ruleType{name: "", actions: actionsRequired, decidesAll: true, compile: func(*parser, *ruleNode, *rule) {}}

// ruleTypes lists the rule types in the order messages list them.
var ruleTypes = []ruleType{
	{name: "error", params: []string{"http_status", "grpc_status", "exception"}, actions: actionsOptional, compile: compileError},
	{name: "latency", params: []string{"threshold", "upper", "spans"}, actions: actionsOptional, compile: compileLatency},
	{name: "priority", params: []string{"tiers"}, compile: compilePriority},
	{name: "adaptive", decidesAll: true, params: []string{"key", "target", "target_per_key", "interval", "initial_percentage", "max_keys", "smoothing"}, compile: compileAdaptive},
	{name: "probabilistic", decidesAll: true, params: []string{"percentage"}, compile: compileProbabilistic},
	{name: "attribute", actions: actionsRequired, needsWhen: true, compile: func(*parser, *ruleNode, *rule) {}},
	{name: "span_count", params: []string{"min", "max"}, actions: actionsOptional, compile: compileSpanCount},
	{name: "rate_limit", decidesAll: true, params: []string{"traces_per_second", "spans_per_second", "burst"}, compile: compileRateLimit},
	{name: "always", decidesAll: true, compile: func(_ *parser, _ *ruleNode, r *rule) { r.setFixed(1) }},
	{name: "drop", decidesAll: true, compile: func(_ *parser, _ *ruleNode, r *rule) { r.setFixed(0) }},
}

func lookupRuleType(name string) *ruleType {
	for i := range ruleTypes {
		if ruleTypes[i].name == name {
			return &ruleTypes[i]
		}
	}
	return nil
}

func ruleTypeNames() []string {
	names := make([]string, len(ruleTypes))
	for i, rt := range ruleTypes {
		names[i] = rt.name
	}
	return names
}

// keys lists the keys a rule of type rt may have.
func (rt *ruleType) keys() []string {
	keys := []string{"name"}
	if rt.name != "" {
		keys = append(keys, "type")
	}
	keys = append(keys, "when")
	keys = append(keys, rt.params...)
	if rt.actions != actionsNone {
		keys = append(keys, actionKeys...)
	}
	return keys
}

// typesTaking lists the rule types that take key k.
func typesTaking(k string) []string {
	var out []string
	for i := range ruleTypes {
		if slices.Contains(ruleTypes[i].keys(), k) {
			out = append(out, ruleTypes[i].name)
		}
	}
	return out
}

func ruleLabel(i int, n *yaml.Node) string {
	label := fmt.Sprintf("rules[%d]", i)
	if n.Kind == yaml.MappingNode {
		if v := lookup(n, "name"); v != nil && v.Kind == yaml.ScalarNode && !isNull(v) && v.Value != "" {
			label += fmt.Sprintf(" %q", v.Value)
		}
	}
	return label
}

// rule compiles the i-th rule; ok is false if it had any problem.
func (p *parser) rule(i int, n *yaml.Node, seen map[string]int) (r rule, ok bool) {
	label := ruleLabel(i, n)
	r.label, r.line = label, n.Line
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s: must be a mapping, got %s", label, describe(n)).Hint = `a rule has a name, and a type or a when and an action, e.g. "- {name: errors, type: error}"`
		return r, false
	}
	before := len(p.errs)
	rn := &ruleNode{label: label, node: n, fields: make(map[string]*yaml.Node), keys: make(map[string]*yaml.Node)}
	pairs := p.pairs(n, label+": ")
	for _, kv := range pairs {
		rn.fields[kv.key.Value] = kv.value
		rn.keys[kv.key.Value] = kv.key
	}

	if v, ok := rn.fields["name"]; !ok {
		p.errorf(n, "%s: name: missing", label).Hint = "every rule needs a unique name of a-z, 0-9, '_' and '-'"
	} else {
		r.name = p.ruleName(label+": name", v, seen)
	}
	rt := &untyped
	if v, ok := rn.fields["type"]; ok {
		rt = nil
		if v.Kind != yaml.ScalarNode || isNull(v) {
			p.errorf(v, "%s: type: got %s", label, describe(v)).Hint = "valid types: " + strings.Join(ruleTypeNames(), ", ")
		} else if rt = lookupRuleType(v.Value); rt == nil {
			e := p.errorf(v, "%s: type: unknown type %q", label, v.Value)
			e.Hint = "valid types: " + strings.Join(ruleTypeNames(), ", ")
			if s := closest(v.Value, ruleTypeNames()); s != "" {
				e.Hint = fmt.Sprintf("did you mean %q? %s", s, e.Hint)
			}
		}
	}
	if rt == nil { // report unknown keys against every type's keys, nothing more
		all := []string{"name", "type", "when"}
		for _, t := range ruleTypes {
			for _, k := range t.keys() {
				if !slices.Contains(all, k) {
					all = append(all, k)
				}
			}
		}
		for _, kv := range pairs {
			if !slices.Contains(all, kv.key.Value) {
				p.unknownKey(kv.key, label+": ", kv.key.Value, all)
			}
		}
		return r, false
	}
	r.typ = rt.name
	valid := rt.keys()
	for _, kv := range pairs {
		k := kv.key.Value
		if slices.Contains(valid, k) {
			continue
		}
		if types := typesTaking(k); len(types) > 0 {
			what := "a rule without type"
			if rt.name != "" {
				what = "type " + rt.name
			}
			p.errorf(kv.key, "%s: %s: not a key of %s", label, k, what).Hint =
				fmt.Sprintf("%s takes %s; %s is a key of type %s", what, strings.Join(valid, ", "), k, strings.Join(types, ", "))
			continue
		}
		p.unknownKey(kv.key, label+": ", k, valid)
	}
	if rt.name == "" && rn.fields["when"] == nil && !hasAny(rn.fields, actionKeys) {
		p.errorf(n, "%s: neither a type nor a when and an action", label).Hint =
			"add type: (" + strings.Join(ruleTypeNames(), ", ") + "), or when: {...} and keep: true, drop: true or percentage: N"
		return r, false
	}

	r.cond = trueCond
	rt.compile(p, rn, &r)
	_, hasWhen := rn.fields["when"]
	r.decidesAll = rt.decidesAll && !hasWhen
	switch rt.actions {
	case actionsOptional:
		r.setFixed(1)
		p.action(rn, &r, false)
	case actionsRequired:
		p.action(rn, &r, true)
	}
	if v, ok := rn.fields["when"]; ok {
		if when, ok := p.cond(v, scopeTrace, label+": when", "", 0); ok {
			r.cond = and(r.cond, when)
		}
	} else if rt.needsWhen {
		p.errorf(n, "%s: when: missing", label).Hint = "type " + rt.name + " decides the traces its when: condition selects"
	}
	return r, len(p.errs) == before
}

func hasAny(fields map[string]*yaml.Node, keys []string) bool {
	for _, k := range keys {
		if _, ok := fields[k]; ok {
			return true
		}
	}
	return false
}

// action compiles the action keys keep, drop and percentage into r.
func (p *parser) action(rn *ruleNode, r *rule, required bool) {
	var given []string
	for _, k := range actionKeys {
		if _, ok := rn.fields[k]; ok {
			given = append(given, k)
		}
	}
	switch {
	case len(given) == 0 && required:
		p.errorf(rn.node, "%s: no action", rn.label).Hint = "add keep: true, drop: true or percentage: N"
		return
	case len(given) == 0:
		return
	case len(given) > 1:
		p.errorf(rn.keys[given[1]], "%s: more than one action: %s", rn.label, strings.Join(given, ", ")).Hint = "a rule has one action: keep: true, drop: true or percentage: N"
		return
	}
	k := given[0]
	v := rn.fields[k]
	ctx := rn.label + ": " + k
	switch k {
	case "keep", "drop":
		b, ok := p.boolean(ctx, v)
		switch {
		case !ok:
		case !b && k == "keep":
			p.errorf(v, "%s: keep: false", rn.label).Hint = "write drop: true"
		case !b:
			p.errorf(v, "%s: drop: false", rn.label).Hint = "write keep: true"
		case k == "keep":
			r.setFixed(1)
		default:
			r.setFixed(0)
		}
	case "percentage":
		if pct, ok := p.percentage(ctx, v); ok {
			r.setFixed(pct / 100)
		}
	}
}

func (p *parser) ruleName(ctx string, v *yaml.Node, seen map[string]int) string {
	switch {
	case v.Kind != yaml.ScalarNode || isNull(v) || v.Value == "":
		p.errorf(v, "%s: got %s", ctx, describe(v)).Hint = "want a unique name of a-z, 0-9, '_' and '-'"
		return ""
	case !ruleNameRE.MatchString(v.Value):
		p.errorf(v, "%s: %q is invalid", ctx, v.Value).Hint = "use only a-z, 0-9, '_' and '-': names become metric label values"
	case v.Value == DefaultRule:
		p.errorf(v, "%s: %q is reserved", ctx, v.Value).Hint = `it names the decisions of the "default" key; pick another name`
	default:
		if first, dup := seen[v.Value]; dup {
			p.errorf(v, "%s: duplicate name %q (first used at line %d)", ctx, v.Value, first).Hint = "rule names must be unique"
		} else {
			seen[v.Value] = v.Line
		}
	}
	return v.Value
}

// missing reports a required key.
func (p *parser) missing(rn *ruleNode, key, hint string) {
	p.errorf(rn.node, "%s: %s: missing", rn.label, key).Hint = hint
}

// compileError: traces with an ERROR span, and optionally with an HTTP or
// gRPC status or an exception event.
func compileError(p *parser, rn *ruleNode, r *rule) {
	errs := rangeCond(field{kind: fieldErrorCount, typ: typeInt, path: "error_count"}, 1, 0)
	var extra []cond // span conditions
	attrs := func(key string, attrKeys ...string) {
		v, ok := rn.fields[key]
		if !ok {
			return
		}
		f := field{kind: fieldAttr, key: attrKeys[0], typ: typeAny, path: key}
		tests, ok := p.matcher(v, &f, rn.label+": "+key)
		if !ok {
			return
		}
		for _, k := range attrKeys {
			f := field{kind: fieldAttr, key: k, typ: typeAny, path: "attr." + k}
			extra = append(extra, cond{op: condLeaf, field: f, tests: tests, text: f.path + " " + formatTests(tests, f.typ)})
		}
	}
	attrs("http_status", "http.response.status_code", "http.status_code")
	attrs("grpc_status", "rpc.grpc.status_code")
	if v, ok := rn.fields["exception"]; ok {
		if b, ok := p.boolean(rn.label+": exception", v); ok && b {
			extra = append(extra, eventCond(false, "exception"))
		} else if ok {
			p.errorf(v, "%s: exception: false is the default", rn.label).Hint = "remove the key"
		}
	}
	r.cond = errs
	if len(extra) > 0 {
		span := extra[0]
		if len(extra) > 1 {
			span = cond{op: condAny, kids: extra, text: "any(" + joinText(extra) + ")"}
		}
		anySpan := cond{op: condAnySpan, kids: []cond{span}, text: "any_span(" + span.text + ")"}
		r.cond = cond{op: condAny, kids: []cond{errs, anySpan}, text: "any(" + errs.text + ", " + anySpan.text + ")"}
	}
}

// compileLatency: threshold <= duration (< upper), of the trace or of some
// span matching "spans".
func compileLatency(p *parser, rn *ruleNode, r *rule) {
	var lo, hi time.Duration
	loOK := false
	if v, ok := rn.fields["threshold"]; !ok {
		p.missing(rn, "threshold", "type latency needs a threshold, e.g. threshold: 1s")
	} else if d, ok := p.duration(rn.label+": threshold", v); ok {
		if d <= 0 {
			p.errorf(v, "%s: threshold: must be > 0, got %s", rn.label, v.Value).Hint = "every trace lasts at least 0s: use type always"
		} else {
			lo, loOK = d, true
		}
	}
	if v, ok := rn.fields["upper"]; ok {
		if d, ok := p.duration(rn.label+": upper", v); ok {
			switch {
			case d <= 0:
				p.errorf(v, "%s: upper: must be > 0, got %s", rn.label, v.Value).Hint = "upper is an exclusive upper bound of the duration"
			case loOK && d <= lo:
				p.errorf(v, "%s: upper: must be greater than threshold (%s), got %s", rn.label, lo, v.Value).Hint = "upper is an exclusive upper bound of the duration"
			default:
				hi = d
			}
		}
	}
	v, spans := rn.fields["spans"]
	if !spans {
		r.cond = rangeCond(field{kind: fieldDuration, typ: typeDuration, path: "duration"}, int64(lo), int64(hi))
		return
	}
	which, ok := p.cond(v, scopeSpan, rn.label+": spans", "spans", 0)
	if !ok {
		return
	}
	d := rangeCond(field{kind: fieldSpanDuration, typ: typeDuration, path: "duration"}, int64(lo), int64(hi))
	span := cond{op: condAll, kids: []cond{which, d}, text: "all(" + which.text + ", " + d.text + ")"}
	r.cond = cond{op: condAnySpan, kids: []cond{span}, text: "any_span(" + span.text + ")"}
}

// compileSpanCount: min <= span count <= max.
func compileSpanCount(p *parser, rn *ruleNode, r *rule) {
	f := field{kind: fieldSpanCount, typ: typeInt, path: "span_count"}
	var tests []test
	var lo int64 = -1
	if v, ok := rn.fields["min"]; ok {
		if i, ok := p.integer(rn.label+": min", v, 0, 1<<62); ok {
			lo = i
			tests = append(tests, test{op: testGte, num: lit{kind: litInt, i: i}})
		}
	}
	if v, ok := rn.fields["max"]; ok {
		if i, ok := p.integer(rn.label+": max", v, 0, 1<<62); ok {
			if i < lo {
				p.errorf(v, "%s: max: must be at least min (%d), got %d", rn.label, lo, i).Hint = "min and max are inclusive bounds of the span count"
			}
			tests = append(tests, test{op: testLte, num: lit{kind: litInt, i: i}})
		}
	}
	if rn.fields["min"] == nil && rn.fields["max"] == nil {
		p.missing(rn, "min or max", "type span_count needs min:, max: or both (inclusive), e.g. min: 10001")
	}
	r.cond = cond{op: condLeaf, field: f, tests: tests, text: f.path + " " + formatTests(tests, f.typ)}
}

// compileProbabilistic: decide every trace, keeping percentage% by trace ID.
func compileProbabilistic(p *parser, rn *ruleNode, r *rule) {
	r.setFixed(0)
	v, ok := rn.fields["percentage"]
	if !ok {
		p.missing(rn, "percentage", "type probabilistic needs a percentage from 0 to 100, e.g. percentage: 10")
		return
	}
	if pct, ok := p.percentage(rn.label+": percentage", v); ok {
		r.setFixed(pct / 100)
	}
}

// compilePriority: tiers, most important first; the first tier whose
// condition holds decides with its percentage.
func compilePriority(p *parser, rn *ruleNode, r *rule) {
	r.act = actTiers
	v, ok := rn.fields["tiers"]
	if !ok {
		p.missing(rn, "tiers", "type priority needs tiers: a list of {name, when, percentage}, most important first")
		return
	}
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		p.errorf(v, "%s: tiers: want a non-empty list, got %s", rn.label, describe(v)).Hint = "tiers: [{name: critical, when: {...}, percentage: 100}, ...], most important first"
		return
	}
	names := make(map[string]int)
	for i, item := range v.Content {
		item = resolve(item)
		ctx := fmt.Sprintf("%s: tiers[%d]", rn.label, i)
		if item.Kind != yaml.MappingNode {
			p.errorf(item, "%s: must be a mapping, got %s", ctx, describe(item)).Hint = "a tier is {name: ..., when: {...}, percentage: N}"
			continue
		}
		t := tier{priority: len(v.Content) - i}
		fields := make(map[string]*yaml.Node)
		for _, kv := range p.pairs(item, ctx+": ") {
			switch k := kv.key.Value; k {
			case "name", "when", "percentage":
				fields[k] = kv.value
			default:
				p.unknownKey(kv.key, ctx+": ", k, []string{"name", "when", "percentage"})
			}
		}
		if n, ok := fields["name"]; ok {
			t.name = p.ruleName(ctx+": name", n, names)
		}
		if w, ok := fields["when"]; !ok {
			p.errorf(item, "%s: when: missing", ctx).Hint = "a tier decides the traces its when: condition selects"
		} else if c, ok := p.cond(w, scopeTrace, ctx+": when", "", 0); ok {
			t.cond = c
		}
		if pv, ok := fields["percentage"]; !ok {
			p.errorf(item, "%s: percentage: missing", ctx).Hint = "the share of the tier's traces to keep, 0 to 100"
		} else if pct, ok := p.percentage(ctx+": percentage", pv); ok {
			t.p, t.th = pct/100, ThresholdFor(pct/100)
		}
		r.tiers = append(r.tiers, t)
	}
}

// compileRateLimit: keep the traces the token bucket allows.
func compileRateLimit(p *parser, rn *ruleNode, r *rule) {
	r.act = actRateLimit
	rl := &rateLimit{state: &bucket{}}
	r.limit = rl
	tv, tok := rn.fields["traces_per_second"]
	sv, sok := rn.fields["spans_per_second"]
	switch {
	case tok && sok:
		p.errorf(rn.keys["spans_per_second"], "%s: both traces_per_second and spans_per_second", rn.label).Hint = "a rate limit counts traces or spans, not both"
	case tok:
		rl.rate, _ = p.positive(rn.label+": traces_per_second", tv, "a number of traces per second > 0")
	case sok:
		rl.spans = true
		rl.rate, _ = p.positive(rn.label+": spans_per_second", sv, "a number of spans per second > 0")
	default:
		p.missing(rn, "traces_per_second or spans_per_second", "e.g. traces_per_second: 10")
	}
	rl.burst = rl.rate
	if v, ok := rn.fields["burst"]; ok {
		if b, ok := p.positive(rn.label+": burst", v, "the bucket size, a number >= 1"); ok {
			if b < 1 {
				p.errorf(v, "%s: burst: must be at least 1, got %s", rn.label, v.Value).Hint = "the bucket size, a number >= 1"
			}
			rl.burst = b
		}
	}
	rl.burst = max(rl.burst, 1)
}
