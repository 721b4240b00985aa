package policy

// DefaultRule is the [Decision.Rule] of a trace that no rule matched, and the
// last name of [Set.RuleNames]. No rule may be named so.
const DefaultRule = "default"

// Decision is the outcome of evaluating a [Set] on one trace.
type Decision struct {
	Keep bool
	// Rule is the deciding rule's name, or [DefaultRule].
	Rule string
	// Probability is the keep probability the deciding rule applied: 1 for
	// error, latency and always rules and a default of keep, the configured
	// p for probabilistic rules (whether this trace was kept or not), 0 for
	// drop rules and a default of drop. ThresholdFor(Probability) is the
	// exact threshold that was applied, for the tracestate "ot=th" value.
	Probability float64
}

// Set is a compiled policy set: an ordered list of rules, the first matching
// rule decides, and a default applies when none matches. Build it with
// [Parse] or [Load]. It is immutable: [Set.Evaluate] is safe for concurrent
// use, and a reload builds a new Set that the caller swaps in (for example
// with an atomic.Pointer). The zero Set has no rules and drops everything.
type Set struct {
	rules         []rule
	keepByDefault bool
}

// rule is one compiled rule: which traces it applies to (cond) and what it
// does to them (act). Every rule type of the YAML compiles to this pair.
type rule struct {
	name string
	cond condition
	act  action
}

// Evaluate decides whether to keep trace t. It does not allocate, does not
// retain t, and is safe for concurrent use.
func (s *Set) Evaluate(t *Trace) Decision {
	for i := range s.rules {
		r := &s.rules[i]
		if r.cond.match(t) {
			return Decision{Keep: r.act.th.Keep(t.ID), Rule: r.name, Probability: r.act.p}
		}
	}
	if s.keepByDefault {
		return Decision{Keep: true, Rule: DefaultRule, Probability: 1}
	}
	return Decision{Keep: false, Rule: DefaultRule, Probability: 0}
}

// RuleNames returns the rule names in evaluation order followed by
// [DefaultRule]: every value [Decision.Rule] can take, a bounded label set
// for decision metrics. The caller owns the returned slice.
func (s *Set) RuleNames() []string {
	names := make([]string, 0, len(s.rules)+1)
	for i := range s.rules {
		names = append(names, s.rules[i].name)
	}
	return append(names, DefaultRule)
}

// KeepByDefault reports the action of the set's "default" key.
func (s *Set) KeepByDefault() bool { return s.keepByDefault }
