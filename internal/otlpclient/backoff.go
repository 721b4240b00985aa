package otlpclient

import (
	"math/rand/v2"
	"time"
)

// Backoff draws the waits between attempts of one request: exponential
// with full jitter, floored at the server's hint. Make one per request
// being retried, with Initial and Max set; the zero step starts the
// schedule. It is not safe for concurrent use.
type Backoff struct {
	// Initial is the first step.
	Initial time.Duration
	// Max caps the step.
	Max time.Duration

	step time.Duration
}

// minStep floors the step: a caller that left Initial or Max zero must
// not retry in a tight loop.
const minStep = time.Millisecond

// Next returns the wait before the next attempt. The step is Initial on
// the first call and doubles on each later one, up to Max (neither taken
// below 1ms); the wait is drawn uniformly from [0, step] (full jitter, so
// that clients failed together do not retry together), then raised to
// hint if it is shorter. The hint is a floor, not a replacement: a server
// answering "retry after 0s" every time still gets the backoff, not a
// tight loop, and RetryInfo's own documentation asks clients to back off
// from the hint when retries fail again.
func (b *Backoff) Next(hint time.Duration) time.Duration {
	if b.step == 0 {
		b.step = b.Initial
	} else {
		b.step = min(2*b.step, b.Max)
	}
	b.step = max(b.step, minStep)
	return max(rand.N(b.step+1), hint)
}
