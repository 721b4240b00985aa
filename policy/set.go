package policy

import (
	"math"
	"sync/atomic"
	"time"
)

// DefaultRule is the [Decision.Rule] of a trace that no rule matched, and the
// last name of [Set.RuleNames]. No rule may be named so.
const DefaultRule = "default"

// Decision is the outcome of evaluating a [Set] on one trace.
type Decision struct {
	Keep bool
	// Rule is the deciding rule's name, or [DefaultRule].
	Rule string
	// Probability is the keep probability the deciding rule applied, whether
	// this trace was kept or not: 1 for rules that keep what they match
	// (error, latency, span_count, always, keep: true, a rate_limit with a
	// token) and a default of keep; the configured p of a percentage, a
	// probabilistic rule or a priority tier; the current p of the trace's
	// key for adaptive rules; 0 for drop rules, a rate_limit without a token
	// and a default of drop.
	Probability float64
	// Threshold is the exact consistent-sampling threshold applied:
	// 0 for probability 1, [MaxThreshold] for 0, ThresholdFor(p) otherwise.
	// A kept trace with 0 < Threshold carries it in tracestate (ot=th).
	Threshold Threshold
	// Priority is the tier of a priority rule that decided: the first tier
	// listed has the highest value (the number of tiers), the last 1. It is
	// 0 for every other decision. Higher means more important: overload
	// sheds the lowest first.
	Priority int
}

// Set is a compiled policy set: an ordered list of rules, the first
// matching rule decides, and a default applies when none matches. Build it
// with [Parse] or [Load]. Its rules never change; adaptive and rate_limit
// rules keep state that [Set.Evaluate] updates. Every method is safe for
// concurrent use. A reload builds a new Set, carries the state over
// ([Set.AdoptState]) and swaps it in (for example with an atomic.Pointer).
// The zero Set has no rules and drops everything.
type Set struct {
	rules         []rule
	keepByDefault bool
	hash          string
	// share is math.Float64bits(share) ^ oneBits, so that the zero value
	// means share 1.
	share atomic.Uint64
}

var oneBits = math.Float64bits(1)

// Evaluate decides whether to keep trace t at time now, which drives the
// intervals of adaptive rules and the buckets of rate_limit rules (the
// wall clock, or a replay's clock). It does not allocate (an adaptive rule
// allocates once for each new key), does not retain t, and is safe for
// concurrent use. Rules with fixed probabilities are deterministic: the same
// trace ID gets the same decision on every node.
func (s *Set) Evaluate(t *Trace, now time.Time) Decision {
	ns := now.UnixNano()
	for i := range s.rules {
		r := &s.rules[i]
		if r.cond.eval(t) != triTrue {
			continue
		}
		switch r.act {
		case actFixed:
			return Decision{Keep: r.th.Keep(t.ID), Rule: r.name, Probability: r.p, Threshold: r.th}
		case actTiers:
			for j := range r.tiers {
				tr := &r.tiers[j]
				if tr.cond.eval(t) == triTrue {
					return Decision{Keep: tr.th.Keep(t.ID), Rule: r.name, Probability: tr.p, Threshold: tr.th, Priority: tr.priority}
				}
			}
		case actAdaptive:
			th, keep := r.adapt.decide(t, ns, s.Share())
			return Decision{Keep: keep, Rule: r.name, Probability: th.Probability(), Threshold: th}
		case actRateLimit:
			if r.limit.take(t, ns, s.Share()) {
				return Decision{Keep: true, Rule: r.name, Probability: 1, Threshold: 0}
			}
			return Decision{Keep: false, Rule: r.name, Probability: 0, Threshold: MaxThreshold}
		}
	}
	return s.defaultDecision()
}

func (s *Set) defaultDecision() Decision {
	if s.keepByDefault {
		return Decision{Keep: true, Rule: DefaultRule, Probability: 1, Threshold: 0}
	}
	return Decision{Keep: false, Rule: DefaultRule, Probability: 0, Threshold: MaxThreshold}
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

// Hash returns the hex SHA-256 of the policy file the Set was parsed from
// (the bytes given to Parse), e.g. for a metric telling which policy a node
// runs; "" for the zero Set.
func (s *Set) Hash() string { return s.hash }

// SetShare sets this evaluator's share of the cluster-wide targets of
// adaptive and rate_limit rules: with share f, an adaptive rule aims at f
// times its targets and a rate limit allows f times its rate. A cluster of
// n nodes that each see 1/n of the traces sets 1/n on each. f is clamped to
// [0, 1]; NaN means 1. The default is 1. Adaptive rules re-level at once
// from the rates already measured.
func (s *Set) SetShare(f float64) {
	switch {
	case f != f:
		f = 1
	case f < 0:
		f = 0
	case f > 1:
		f = 1
	}
	s.share.Store(math.Float64bits(f) ^ oneBits)
	for i := range s.rules {
		if a := s.rules[i].adapt; a != nil {
			a.reshare(f)
		}
	}
}

// Share returns the share set by [Set.SetShare].
func (s *Set) Share() float64 { return math.Float64frombits(s.share.Load() ^ oneBits) }

// AdoptState carries the learned state of old, the Set s replaces on a
// reload, into s: for each adaptive rule of s whose name, key fields and
// targets are those of an adaptive rule of old, its measured rates and
// thresholds; for each rate_limit rule whose name, unit, rate and burst are
// unchanged, its bucket; and old's share. Other rules start afresh. Call it
// before s is published; evaluations still running on old after the call
// are not carried over. old may be nil.
func (s *Set) AdoptState(old *Set) {
	if old == nil || old == s {
		return
	}
	s.share.Store(old.share.Load())
	for i := range s.rules {
		r := &s.rules[i]
		for j := range old.rules {
			o := &old.rules[j]
			if o.name != r.name {
				continue
			}
			switch {
			case r.adapt != nil && o.adapt != nil && r.adapt.sameAs(o.adapt):
				r.adapt.adopt(o.adapt)
			case r.limit != nil && o.limit != nil && r.limit.sameAs(o.limit):
				r.limit.adopt(o.limit)
			}
		}
	}
}
