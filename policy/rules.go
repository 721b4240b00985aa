package policy

import (
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// condKind is the kind of a rule's condition: which traces the rule decides.
type condKind uint8

const (
	condAll     condKind = iota // every trace
	condError                   // ErrorCount > 0
	condLatency                 // min <= Duration() (< max if max > 0)
)

// condition is a compiled match condition. It is a plain value with a kind
// switch rather than an interface so that Evaluate neither allocates nor
// makes the *Trace escape.
type condition struct {
	kind     condKind
	min, max time.Duration // condLatency; max 0 means no upper bound
}

func (c *condition) match(t *Trace) bool {
	switch c.kind {
	case condAll:
		return true
	case condError:
		return t.ErrorCount > 0
	case condLatency:
		d := t.Duration()
		return d >= c.min && (c.max == 0 || d < c.max)
	}
	panic("BUG: policy: unknown condition kind")
}

// action is what a matching rule does: keep the trace with probability p,
// decided by trace ID against th = ThresholdFor(p). Keep is p=1, th=0 (every
// randomness is >= 0); drop is p=0, th=MaxThreshold (none reaches 2^56).
type action struct {
	p  float64
	th Threshold
}

var (
	keepAction = action{p: 1, th: 0}
	dropAction = action{p: 0, th: MaxThreshold}
)

func sampleAction(p float64) action { return action{p: p, th: ThresholdFor(p)} }

// ruleType is one value of a rule's "type" key: the keys it takes besides
// name and type, and how its YAML compiles to a condition and an action.
type ruleType struct {
	name    string
	params  []string
	compile func(p *parser, r *ruleNode) (condition, action)
}

// ruleNode is a rule mapping being compiled.
type ruleNode struct {
	label  string                // `rules[1] "slow"`, prefix of every message
	node   *yaml.Node            // the mapping, for "missing key" lines
	fields map[string]*yaml.Node // key -> value, first occurrence
}

// ruleTypes lists the rule types in the order error messages list them.
var ruleTypes = []ruleType{
	{name: "error", compile: func(*parser, *ruleNode) (condition, action) {
		return condition{kind: condError}, keepAction
	}},
	{name: "latency", params: []string{"threshold", "upper"}, compile: compileLatency},
	{name: "probabilistic", params: []string{"percentage"}, compile: compileProbabilistic},
	{name: "always", compile: func(*parser, *ruleNode) (condition, action) {
		return condition{kind: condAll}, keepAction
	}},
	{name: "drop", compile: func(*parser, *ruleNode) (condition, action) {
		return condition{kind: condAll}, dropAction
	}},
}

func lookupRuleType(name string) *ruleType {
	for i := range ruleTypes {
		if ruleTypes[i].name == name {
			return &ruleTypes[i]
		}
	}
	return nil
}

func ruleTypeNames() string {
	names := make([]string, len(ruleTypes))
	for i, rt := range ruleTypes {
		names[i] = rt.name
	}
	return strings.Join(names, ", ")
}

// isParam reports whether key is a parameter of any rule type.
func isParam(key string) bool {
	for _, rt := range ruleTypes {
		if rt.takes(key) {
			return true
		}
	}
	return false
}

// ruleKeys lists the keys a rule of type rt (of any type if rt is nil) may
// have.
func ruleKeys(rt *ruleType) string {
	keys := []string{"name", "type"}
	for i := range ruleTypes {
		if rt != nil && rt != &ruleTypes[i] {
			continue
		}
		for _, k := range ruleTypes[i].params {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	return strings.Join(keys, ", ")
}

func (rt *ruleType) takes(key string) bool { return slices.Contains(rt.params, key) }

func (rt *ruleType) describeParams() string {
	if len(rt.params) == 0 {
		return "type " + rt.name + " takes no parameters"
	}
	return "type " + rt.name + " takes " + strings.Join(rt.params, ", ")
}

// paramSyntax checks the value of parameter key on its own, for a rule whose
// type is missing or unknown. Other keys are ignored.
func (p *parser) paramSyntax(label, key string, v *yaml.Node) {
	switch key {
	case "threshold", "upper":
		p.duration(label, key, v)
	case "percentage":
		p.percentage(label, key, v)
	}
}

// compileLatency: keep traces with threshold <= duration (< upper if set).
func compileLatency(p *parser, r *ruleNode) (condition, action) {
	var lo, hi time.Duration
	loOK := false
	if v, ok := r.fields["threshold"]; !ok {
		p.errorf(r.node.Line, "%s: threshold: missing (required by type latency, e.g. threshold: 1s)", r.label)
	} else if d, ok := p.duration(r.label, "threshold", v); ok {
		if d <= 0 {
			p.errorf(v.Line, "%s: threshold: must be > 0, got %s", r.label, v.Value)
		} else {
			lo, loOK = d, true
		}
	}
	if v, ok := r.fields["upper"]; ok {
		if d, ok := p.duration(r.label, "upper", v); ok {
			switch {
			case d <= 0:
				p.errorf(v.Line, "%s: upper: must be > 0, got %s", r.label, v.Value)
			case loOK && d <= lo:
				p.errorf(v.Line, "%s: upper: must be greater than threshold (%s), got %s", r.label, lo, v.Value)
			default:
				hi = d
			}
		}
	}
	return condition{kind: condLatency, min: lo, max: hi}, keepAction
}

// compileProbabilistic: decide every trace, keeping percentage% by trace ID.
func compileProbabilistic(p *parser, r *ruleNode) (condition, action) {
	v, ok := r.fields["percentage"]
	if !ok {
		p.errorf(r.node.Line, "%s: percentage: missing (required by type probabilistic: 0 to 100, e.g. percentage: 10)", r.label)
		return condition{kind: condAll}, dropAction
	}
	pct, _ := p.percentage(r.label, "percentage", v)
	return condition{kind: condAll}, sampleAction(pct / 100)
}
