// Package lograte rate-limits repeated log lines: a failure that repeats
// on every request (a dead backend, a full queue) is logged once per
// interval with the number of lines suppressed since, not once per request.
// A Limiter is safe for concurrent use and costs one atomic load when it
// suppresses.
package lograte

import (
	"sync/atomic"
	"time"
)

// Limiter allows one line per Every.
type Limiter struct {
	Every      time.Duration
	next       atomic.Int64 // unix nanoseconds
	suppressed atomic.Int64
}

// Allow reports whether to log now, and how many lines were suppressed
// since the last one that was allowed (log it as similar_lines_suppressed).
func (l *Limiter) Allow() (ok bool, suppressed int64) {
	now := time.Now().UnixNano()
	next := l.next.Load()
	if now < next || !l.next.CompareAndSwap(next, now+int64(l.Every)) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
