package export

import (
	"context"
	"errors"
	"time"

	"github.com/tailsift/tailsift/internal/otlpclient"
)

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
	bo := otlpclient.Backoff{Initial: e.cfg.RetryInitial, Max: e.cfg.RetryMax}
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
			rejected := min(max(res.RejectedSpans, 0), req.spans)
			e.markSent(req.spans - rejected)
			switch {
			case rejected > 0:
				e.fail(reasonRejected, rejected, errors.New("partial success: "+res.Message))
			case res.Message != "": // a warning from the destination
				if ok, suppressed := e.failLog.Allow(); ok {
					e.log.Warn("export succeeded with a warning", "message", res.Message,
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
		retry, hint := otlpclient.Classify(err)
		if !retry {
			e.giveUp(req, reasonRejected, err)
			return
		}
		wait := bo.Next(hint) // the hint is a floor on the backoff, not a replacement
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
