package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Explanation says how a [Set] decides a trace: each rule tried, in order,
// why it did or did not match, and the decision.
type Explanation struct {
	Decision Decision
	// Rules are the rules tried, up to and including the deciding one (all
	// of them when the default decided).
	Rules []RuleExplanation
}

// RuleExplanation is one rule tried by [Set.Explain].
type RuleExplanation struct {
	Rule    string
	Type    string // the rule's type; "" for a rule without one
	Matched bool
	// Why says, for a rule that did not match, which condition failed and
	// on what value (or that it needed span data the trace does not have);
	// for the deciding rule, how it decided.
	Why string
}

// String renders e one rule per line, then the decision.
func (e Explanation) String() string {
	var b strings.Builder
	for _, r := range e.Rules {
		mark := "no match"
		if r.Matched {
			mark = "MATCH"
		}
		fmt.Fprintf(&b, "%-8s %s: %s\n", mark, r.Rule, r.Why)
	}
	d := e.Decision
	verdict := "drop"
	if d.Keep {
		verdict = "keep"
	}
	fmt.Fprintf(&b, "decision: %s by %q (probability %s", verdict, d.Rule, strconv.FormatFloat(d.Probability, 'g', -1, 64))
	if d.Priority > 0 {
		fmt.Fprintf(&b, ", priority %d", d.Priority)
	}
	b.WriteString(")\n")
	return b.String()
}

// Explain reports how s decides t at now. It allocates, and does not change
// any state: an adaptive rule does not count t, a rate_limit rule takes no
// token. So its decision is the one [Set.Evaluate] would take now, except
// that a rate_limit rule's bucket may have changed in between. For tooling:
// dry runs, the explain API, tests.
func (s *Set) Explain(t *Trace, now time.Time) Explanation {
	var e Explanation
	ns := now.UnixNano()
	for i := range s.rules {
		r := &s.rules[i]
		re := RuleExplanation{Rule: r.name, Type: r.typ}
		if r.cond.eval(t) != triTrue {
			re.Why = explainCond(&r.cond, t)
			e.Rules = append(e.Rules, re)
			continue
		}
		re.Matched = true
		switch r.act {
		case actFixed:
			e.Decision = Decision{Keep: r.th.Keep(t.ID), Rule: r.name, Probability: r.p, Threshold: r.th}
			re.Why = explainThreshold(r.th, t.ID)
		case actTiers:
			var why []string
			for j := range r.tiers {
				tr := &r.tiers[j]
				if tr.cond.eval(t) != triTrue {
					why = append(why, fmt.Sprintf("tiers[%d]%s: %s", j, quoteName(tr.name), explainCond(&tr.cond, t)))
					continue
				}
				e.Decision = Decision{Keep: tr.th.Keep(t.ID), Rule: r.name, Probability: tr.p, Threshold: tr.th, Priority: tr.priority}
				re.Why = fmt.Sprintf("tiers[%d]%s (priority %d): %s", j, quoteName(tr.name), tr.priority, explainThreshold(tr.th, t.ID))
				break
			}
			if re.Why == "" {
				re.Matched = false
				re.Why = "no tier matches: " + strings.Join(why, "; ")
				e.Rules = append(e.Rules, re)
				continue
			}
		case actAdaptive:
			th, key, rate := r.adapt.peek(t)
			e.Decision = Decision{Keep: th.Keep(t.ID), Rule: r.name, Probability: th.Probability(), Threshold: th}
			re.Why = fmt.Sprintf("key %q (%.4g traces/s): %s", key, rate, explainThreshold(th, t.ID))
		case actRateLimit:
			tokens := r.limit.peek(ns, s.Share())
			keep := tokens >= 1 && r.limit.rate*s.Share() > 0
			e.Decision = Decision{Keep: keep, Rule: r.name, Probability: 1, Threshold: 0}
			if !keep {
				e.Decision.Probability, e.Decision.Threshold = 0, MaxThreshold
			}
			re.Why = fmt.Sprintf("bucket holds %.4g tokens: %s", tokens, map[bool]string{true: "keep", false: "over the limit: drop"}[keep])
		}
		e.Rules = append(e.Rules, re)
		return e
	}
	e.Decision = s.defaultDecision()
	return e
}

func quoteName(name string) string {
	if name == "" {
		return ""
	}
	return " " + strconv.Quote(name)
}

// explainThreshold says how threshold th decides trace id.
func explainThreshold(th Threshold, id [16]byte) string {
	switch th {
	case 0:
		return "keep (probability 1)"
	case MaxThreshold:
		return "drop (probability 0)"
	}
	r := Randomness(id)
	p := strconv.FormatFloat(th.Probability(), 'g', 6, 64)
	if r >= uint64(th) {
		return fmt.Sprintf("keep at probability %s: trace randomness %#014x >= threshold %#014x", p, r, uint64(th))
	}
	return fmt.Sprintf("drop at probability %s: trace randomness %#014x < threshold %#014x", p, r, uint64(th))
}

const noSpans = "unknown: the trace has no span data, which %s needs (a rule matches only if its condition is true)"

// explainCond says why c is not true of t.
func explainCond(c *cond, t *Trace) string {
	switch c.op {
	case condAll:
		for i := range c.kids {
			if c.kids[i].eval(t) != triTrue {
				return explainCond(&c.kids[i], t)
			}
		}
	case condAny:
		why := make([]string, len(c.kids))
		for i := range c.kids {
			why[i] = explainCond(&c.kids[i], t)
		}
		return "none of: " + strings.Join(why, "; ")
	case condNot:
		if c.kids[0].eval(t) == triUnknown {
			return explainCond(&c.kids[0], t)
		}
		return "not: " + c.kids[0].text + " holds"
	case condAnySpan, condEverySpan:
		src := t.Spans
		if src == nil {
			return fmt.Sprintf(noSpans, c.text)
		}
		n := src.Len()
		if c.op == condAnySpan {
			return fmt.Sprintf("any_span: none of the %d spans has %s", n, c.kids[0].text)
		}
		for i := 0; i < n; i++ {
			if !c.kids[0].evalSpan(src, i) {
				return fmt.Sprintf("every_span: span %d %q fails: %s", i, src.Span(i).Name, explainSpan(&c.kids[0], src, i))
			}
		}
	case condLeaf:
		if c.field.kind == fieldEvent {
			if t.Spans == nil {
				return fmt.Sprintf(noSpans, c.field.path)
			}
			if t.Spans.Root() < 0 {
				return "the trace has no root span"
			}
			return "the root span has no event " + strings.TrimPrefix(formatTests(c.tests, typeEvent), "= ")
		}
		v, present, known := c.field.traceValue(t)
		if !known {
			return fmt.Sprintf(noSpans, c.field.path)
		}
		if c.field.root && t.Spans.Root() < 0 {
			return c.field.path + ": the trace has no root span"
		}
		return fmt.Sprintf("%s is %s, want %s", c.field.path, formatValue(&v, present, c.field.typ), formatTests(c.tests, c.field.typ))
	}
	return c.text + " is not true" // not reached for a condition that is not true
}

// explainSpan says why c fails for span i.
func explainSpan(c *cond, src SpanSource, i int) string {
	switch c.op {
	case condAll:
		for j := range c.kids {
			if !c.kids[j].evalSpan(src, i) {
				return explainSpan(&c.kids[j], src, i)
			}
		}
	case condAny:
		why := make([]string, len(c.kids))
		for j := range c.kids {
			why[j] = explainSpan(&c.kids[j], src, i)
		}
		return "none of: " + strings.Join(why, "; ")
	case condNot:
		return "not: " + c.kids[0].text + " holds"
	case condLeaf:
		if c.field.kind == fieldEvent {
			return "no event " + strings.TrimPrefix(formatTests(c.tests, typeEvent), "= ")
		}
		v, present := c.field.spanValue(src, i)
		return fmt.Sprintf("%s is %s, want %s", c.field.path, formatValue(&v, present, c.field.typ), formatTests(c.tests, c.field.typ))
	}
	return c.text + " is not true"
}
