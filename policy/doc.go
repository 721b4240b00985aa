// Package policy decides, for a complete trace, whether to keep it: it parses
// and validates the YAML policy file and compiles it into a [Set] that
// evaluates a trace summary ([Trace]) to a [Decision].
//
// A policy file is an ordered list of named rules and a default:
//
//	rules:
//	  - name: errors
//	    type: error
//	  - name: sample-rest
//	    type: probabilistic
//	    percentage: 10
//	default: drop
//
// The first rule that matches a trace decides it; "default" (keep or drop,
// drop if absent) decides the traces no rule matches. Every rule compiles to
// a condition (which traces it decides) and an action (keep with probability
// p, decided by trace ID): error and latency rules keep what they match,
// always and drop decide every trace, probabilistic decides every trace and
// keeps p of them by consistent probability sampling (see [Threshold]).
//
// Invariants: a Set never changes once built; [Set.Evaluate] does not
// allocate and is deterministic: the same trace (in particular the same trace
// ID) gets the same decision on every node. Decision.Rule is always one of
// [Set.RuleNames], a bounded set usable as a metric label. Parse reports every
// problem of a file at once, each with file:line and the key that fixes it
// ([Errors]); unknown keys are errors. The package does no I/O except [Load]
// reading the one file it is given, and imports nothing else of this module.
//
// Concurrency: a Set is safe for concurrent use by any number of goroutines;
// Parse and Load share no state and may run concurrently.
// Hot reload builds a new Set and swaps it in (e.g. an atomic.Pointer[Set]);
// evaluations in flight finish on the old one.
package policy
