package policy

import (
	"sync"
)

// Rate limits: a token bucket per rule. The bucket holds up to burst
// tokens and gains rate tokens per second; a trace is kept if the bucket
// holds at least one token, and then costs one token (traces_per_second) or
// one per span (spans_per_second; the bucket may go into debt, so a large
// trace is not starved, and the average rate still holds). A rate limit is a
// cap, not a sample: the traces it keeps carry probability 1.
//
// Rates are cluster-wide: an evaluator applies its share (Set.SetShare) to
// rate and burst (a burst of at least 1).

// rateLimit is the configuration of a rate_limit rule.
type rateLimit struct {
	rate  float64 // tokens per second
	burst float64 // bucket size, >= 1
	spans bool    // a trace costs its span count, not 1
	state *bucket
}

// bucket is a rate limit's state.
type bucket struct {
	mu      sync.Mutex
	tokens  float64
	last    int64 // unix ns of the last refill
	started bool
}

// take reports whether trace t is kept at now (unix ns), taking its tokens.
func (rl *rateLimit) take(t *Trace, now int64, share float64) bool {
	rate, burst := rl.rate*share, max(rl.burst*share, 1)
	if !(rate > 0) {
		return false
	}
	cost := 1.0
	if rl.spans {
		cost = float64(t.SpanCount)
	}
	b := rl.state
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens, b.last = b.refill(now, rate, burst), max(b.last, now)
	b.started = true
	if b.tokens < 1 {
		return false
	}
	b.tokens -= cost
	return true
}

// peek returns the tokens the bucket would hold at now, for Explain.
func (rl *rateLimit) peek(now int64, share float64) float64 {
	b := rl.state
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refill(now, rl.rate*share, max(rl.burst*share, 1))
}

// refill returns the tokens at now. Called with mu held.
func (b *bucket) refill(now int64, rate, burst float64) float64 {
	if !b.started {
		return burst
	}
	tokens := b.tokens
	if now > b.last {
		tokens += rate * float64(now-b.last) / 1e9
	}
	return min(tokens, burst)
}

// sameAs reports whether old's bucket means the same for rl.
func (rl *rateLimit) sameAs(old *rateLimit) bool {
	return rl.rate == old.rate && rl.burst == old.burst && rl.spans == old.spans
}

// adopt copies old's bucket into rl's.
func (rl *rateLimit) adopt(old *rateLimit) {
	o, n := old.state, rl.state
	o.mu.Lock()
	tokens, last, started := o.tokens, o.last, o.started
	o.mu.Unlock()
	n.mu.Lock()
	n.tokens, n.last, n.started = tokens, last, started
	n.mu.Unlock()
}
