package export

import (
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// reason is why spans were counted failed; the label values are a closed set.
type reason int

const (
	reasonQueueFull reason = iota
	reasonRejected
	reasonRetriesExhausted
	reasonShutdown
	reasonOversize
	numReasons
)

var reasonNames = [numReasons]string{"queue_full", "rejected", "retries_exhausted", "shutdown", "oversize"}

func (r reason) String() string { return reasonNames[r] }

// metrics are updated once per request or batch, never per span.
type metrics struct {
	spansSent    prometheus.Counter
	spansFailed  [numReasons]prometheus.Counter
	requestsOK   prometheus.Counter // attempts that succeeded
	requestRetry prometheus.Counter // attempts that failed and will be retried
	requestsFail prometheus.Counter // requests given up (not sent, or not retried)
}

// newMetrics registers the exporter's metrics with reg (nil: unregistered).
// The gauges are computed at scrape time from the exporter's own counters.
func newMetrics(reg prometheus.Registerer, pending, queued func() float64) (*metrics, error) {
	sent := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tailsift_export_spans_sent_total",
		Help: "Spans delivered to the export destination.",
	})
	failed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailsift_export_spans_failed_total",
		Help: "Spans accepted for export that were not delivered, by reason.",
	}, []string{"reason"})
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailsift_export_requests_total",
		Help: "Export requests by outcome: ok (attempt succeeded), retry (attempt failed, will be retried), failed (given up: rejected, retries exhausted, dropped on a full queue or at shutdown).",
	}, []string{"outcome"})
	pendingGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tailsift_export_spans_pending",
		Help: "Spans accepted for export and not yet sent or failed.",
	}, pending)
	queueGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tailsift_export_queue_requests",
		Help: "Built requests waiting in the send queue.",
	}, queued)

	m := &metrics{
		spansSent:    sent,
		requestsOK:   requests.WithLabelValues("ok"),
		requestRetry: requests.WithLabelValues("retry"),
		requestsFail: requests.WithLabelValues("failed"),
	}
	for r := range numReasons {
		m.spansFailed[r] = failed.WithLabelValues(r.String())
	}
	if reg != nil {
		var errs []error
		for _, c := range []prometheus.Collector{sent, failed, requests, pendingGauge, queueGauge} {
			if err := reg.Register(c); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Stats counts spans. Accepted == Sent + Failed + Pending always holds.
type Stats struct {
	Accepted int64 // spans passed to ExportTrace/ExportSpans
	Sent     int64 // delivered (the destination accepted them)
	Failed   int64 // not delivered, each with a reason (see the failed metric)
	Pending  int64 // in a batch, queued or in flight
}

// counts are the exporter's span accounting. Spans are counted accepted
// before they can be sent or failed, so reading sent and failed before
// accepted never yields a negative pending count.
type counts struct {
	accepted, sent, failed atomic.Int64
}

func (c *counts) stats() Stats {
	s := Stats{Sent: c.sent.Load(), Failed: c.failed.Load()}
	s.Accepted = c.accepted.Load()
	s.Pending = s.Accepted - s.Sent - s.Failed
	return s
}
