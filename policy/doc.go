// Package policy decides, for a complete trace, whether to keep it: it parses
// and validates the YAML policy file and compiles it into a [Set] that
// evaluates a trace ([Trace]: a summary, and the spans through a
// [SpanSource] the caller implements) to a [Decision].
//
// A policy file is an ordered list of named rules and a default:
//
//	rules:
//	  - name: errors
//	    type: error
//	  - name: checkout
//	    when:
//	      root.resource.service.name: checkout
//	      any_span: {kind: client, duration: {gte: 500ms}}
//	    keep: true
//	  - name: sample-rest
//	    type: probabilistic
//	    percentage: 10
//	default: drop
//
// The first rule that matches a trace decides it; "default" (keep or drop,
// drop if absent) decides the traces no rule matches. Every rule compiles to
// a condition (its type's, such as an ERROR span or a duration, and its
// optional "when") and an action: keep with a fixed probability, keep with
// an adaptive probability per key (adaptive), keep while a token bucket
// allows (rate_limit), or a priority rule's tier. docs/policies.md is the
// reference of the language.
//
// Files: parse.go (the document, top-level keys, shared value parsers),
// rules.go (rule types), condparse.go and cond.go (conditions: parsing and
// evaluation), value.go (literals and comparisons), adaptive.go and
// ratelimit.go (the rules with state), set.go (Set, Decision, Evaluate,
// reload), explain.go, probability.go (consistent-sampling thresholds),
// trace.go and view.go (what a policy sees of a trace).
//
// Invariants: a Set's rules never change once built; only adaptive and
// rate_limit rules keep state. [Set.Evaluate] does not allocate (an adaptive
// rule allocates once per new key) and does not retain its Trace. Every keep
// decision at probability p compares the trace ID's randomness with
// ThresholdFor(p), so a trace gets the same decision from every node that
// applies the same p ([Decision.Threshold] is the exact threshold).
// Decision.Rule is always one of [Set.RuleNames], a bounded set usable as a
// metric label. Parse reports every problem of a file at once, each with
// file:line:column and a hint ([Errors]); unknown keys, fields and operators
// are errors, and so are unreachable rules and a file without rules. The
// package does no I/O except [Load] reading the one file it is given, and
// imports nothing else of this module.
//
// Concurrency: every method of a Set is safe for concurrent use by any
// number of goroutines. Adaptive rules take a read lock per evaluation and a
// write lock for a new key and once an interval; rate limits take a small
// mutex. Parse and Load share no state and may run concurrently. Hot reload
// builds a new Set, calls [Set.AdoptState] with the old one, and swaps it in
// (e.g. an atomic.Pointer[Set]); evaluations in flight finish on the old one.
package policy
