package export

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// retryableError marks a failed attempt that is worth repeating, with the
// server's retry hint if it gave one (never negative).
type retryableError struct {
	err      error
	after    time.Duration // the server's hint, if hasAfter
	hasAfter bool
}

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

func retryable(err error) error { return &retryableError{err: err} }

func retryableAfter(err error, after time.Duration) error {
	return &retryableError{err: err, after: max(after, 0), hasAfter: true}
}

// backoff yields exponential waits with full jitter: the step starts at
// initial and doubles up to max; each wait is uniform in [0, step].
type backoff struct {
	initial, max, step time.Duration
}

func (b *backoff) next() time.Duration {
	if b.step == 0 {
		b.step = b.initial
	} else {
		b.step = min(2*b.step, b.max)
	}
	return rand.N(b.step + 1)
}

// worker sends queued requests until the queue is closed and drained.
func (e *Exporter) worker() {
	defer e.workWG.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for req := range e.queue {
		e.deliver(req, timer)
	}
}

// deliver sends one request, retrying as configured, and accounts for every
// span of it: sent, or failed with a reason.
func (e *Exporter) deliver(req request, timer *time.Timer) {
	bo := backoff{initial: e.cfg.RetryInitial, max: e.cfg.RetryMax}
	start := time.Now()
	for {
		if err := e.ctx.Err(); err != nil {
			e.giveUp(req, reasonShutdown, err)
			return
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Timeout)
		res, err := e.sender.send(ctx, req.buf)
		cancel()
		if err == nil {
			e.m.requestsOK.Inc()
			rejected := min(max(res.rejected, 0), req.spans)
			e.markSent(req.spans - rejected)
			switch {
			case rejected > 0:
				e.fail(reasonRejected, rejected, errors.New("partial success: "+res.message))
			case res.message != "": // a warning from the destination
				if ok, suppressed := e.failLog.Allow(); ok {
					e.log.Warn("export succeeded with a warning", "message", res.message,
						"similar_lines_suppressed", suppressed)
				}
			}
			// Which spans were rejected is not said: every trace of the
			// request is told it failed.
			e.finish(req.traces, rejected == 0)
			return
		}
		if e.ctx.Err() != nil { // Shutdown gave up while we were sending
			e.giveUp(req, reasonShutdown, err)
			return
		}
		var re *retryableError
		if !errors.As(err, &re) {
			e.giveUp(req, reasonRejected, err)
			return
		}
		// A server's hint is a floor on the backoff, not a replacement:
		// a server answering "retry after 0s" every time must not get a
		// tight loop.
		wait := bo.next()
		if re.hasAfter {
			wait = max(wait, re.after)
		}
		if time.Since(start)+wait > e.cfg.RetryMaxElapsed {
			e.giveUp(req, reasonRetriesExhausted, err)
			return
		}
		e.m.requestRetry.Inc()
		e.log.Debug("export attempt failed, retrying", "spans", req.spans, "wait", wait, "err", err)
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-e.ctx.Done():
			timer.Stop()
			e.giveUp(req, reasonShutdown, err)
			return
		}
	}
}

// giveUp counts the spans of req failed for reason r and tells its traces.
func (e *Exporter) giveUp(req request, r reason, err error) {
	e.m.requestsFail.Inc()
	e.fail(r, req.spans, err)
	e.finish(req.traces, false)
}
