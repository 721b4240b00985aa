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
	requests        *prometheus.CounterVec // protocol, outcome
	spansReceived   *prometheus.CounterVec // protocol
	spansRefused    *prometheus.CounterVec // protocol, reason
	refused         *prometheus.CounterVec // protocol, reason
	connections     *prometheus.GaugeVec   // protocol
	connectionsFull *prometheus.CounterVec // protocol
	authFailures    *prometheus.CounterVec // protocol, reason
	tenants         tenantSpans
}

func newMetrics(reg prometheus.Registerer, l *limits) *metrics {
	if reg == nil { // allowed, as in every package: the counters still count, unexported
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailsift_ingest_auth_failures_total",
			Help: "Requests refused as unauthenticated, by protocol and reason (missing, invalid, expired, no_cert, no_claim).",
		}, []string{"protocol", "reason"}),
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
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailsift_ingest_requests_refused_total",
			Help: "Requests the receiver refused (retryable) because of its own limits, by reason: inflight_bytes (max_inflight_bytes), concurrent_requests (max_concurrent_requests), stalled (a gRPC upload cancelled to make room in max_inflight_bytes). gRPC counts streams of every method.",
		}, []string{"protocol", "reason"}),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tailsift_ingest_connections",
			Help: "Open client connections, by protocol (at most max_connections each).",
		}, []string{"protocol"}),
		connectionsFull: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailsift_ingest_connection_limit_reached_total",
			Help: "Times a listener reached max_connections: further connections wait in the kernel's accept queue.",
		}, []string{"protocol"}),
	}
	m.tenants = tenantSpans{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailsift_ingest_tenant_spans_total",
		Help: "Spans accepted per authenticated tenant (the first 1,000 tenants seen; the rest as \"other\").",
	}, []string{"tenant"}), seen: map[string]prometheus.Counter{}}
	reg.MustRegister(m.authFailures, m.tenants.vec)
	reg.MustRegister(m.requests, m.spansReceived, m.spansRefused, m.refused, m.connections, m.connectionsFull,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tailsift_ingest_inflight_bytes",
			Help: "Request bytes held by requests in progress (received, decompressed, transcoded, scan index; gRPC streams hold max_request_size until their message has arrived).",
		}, func() float64 { return float64(l.bytes.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tailsift_ingest_inflight_limit_bytes",
			Help: "The in-flight budget, max_inflight_bytes.",
		}, func() float64 { return float64(l.maxBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tailsift_ingest_inflight_requests",
			Help: "Requests in progress on both receivers, arriving or past their upload (gRPC streams of every method, HTTP requests).",
		}, func() float64 { return float64(l.requests.Load()) }),
	)
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

// refuse records a request refused by the limits before it was read;
// export says whether it was an export request (gRPC streams of the peer
// service count only as refused).
func (m *metrics) refuse(protocol, reason string, export bool) {
	m.refused.WithLabelValues(protocol, reason).Inc()
	if export {
		m.requests.WithLabelValues(protocol, outcomeOverloaded).Inc()
	}
}
