package ingest

import "github.com/prometheus/client_golang/prometheus"

// Outcomes of a request, a bounded label set.
const (
	outcomeOK          = "ok"
	outcomeMalformed   = "malformed"
	outcomeTooLarge    = "too_large"
	outcomeUnsupported = "unsupported"
	outcomeOverloaded  = "overloaded"
	outcomeUnavailable = "unavailable"
)

type metrics struct {
	requests      *prometheus.CounterVec // protocol, outcome
	spansReceived *prometheus.CounterVec // protocol
	spansRefused  *prometheus.CounterVec // protocol, reason
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailsift_ingest_requests_total",
			Help: "OTLP export requests received, by protocol and outcome.",
		}, []string{"protocol", "outcome"}),
		spansReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailsift_ingest_spans_received_total",
			Help: "Spans in well-formed requests, accepted or refused.",
		}, []string{"protocol"}),
		spansRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailsift_ingest_spans_refused_total",
			Help: "Spans refused with a retryable error, by reason (overloaded, unavailable). The client keeps them.",
		}, []string{"protocol", "reason"}),
	}
	reg.MustRegister(m.requests, m.spansReceived, m.spansRefused)
	return m
}

// observe records one request: its outcome and its spans.
func (m *metrics) observe(protocol, outcome string, spans int) {
	m.requests.WithLabelValues(protocol, outcome).Inc()
	if spans == 0 {
		return
	}
	m.spansReceived.WithLabelValues(protocol).Add(float64(spans))
	if outcome == outcomeOverloaded || outcome == outcomeUnavailable {
		m.spansRefused.WithLabelValues(protocol, outcome).Add(float64(spans))
	}
}
