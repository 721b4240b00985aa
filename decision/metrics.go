package decision

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailsift/tailsift/buffer"
)

// counters are the engine's span accounting. They are atomics updated once
// per request or per tick, read by Stats and exported as CounterFuncs, so
// there is one source of truth and no per-span metric cost.
type counters struct {
	accepted        atomic.Int64 // spans Consume accepted
	kept            atomic.Int64 // spans handed to the exporter (kept traces and late spans)
	droppedPolicy   atomic.Int64 // spans of traces the policy dropped
	droppedLate     atomic.Int64 // late spans of dropped traces
	lateKept        atomic.Int64 // late spans of kept traces (part of kept)
	shadowForwarded atomic.Int64 // shadow mode: spans of dropped traces forwarded (part of kept)
	handedOff       atomic.Int64 // spans of buffered traces handed to their new owner (TakeMoved)
	tracesKept      atomic.Int64
	tracesDropped   atomic.Int64
	droppedStorage  atomic.Int64 // spans of traces whose spilled bytes could not be read
	recovered       atomic.Int64 // spans read back from the write-ahead log
	relievedTraces  atomic.Int64 // traces decided early by stress relief
	relievedSpans   atomic.Int64
	limitedTraces   atomic.Int64 // traces decided at once for reaching max_trace_spans or max_trace_bytes
	limitedSpans    atomic.Int64
	decisionsSaved  atomic.Int64
	decisionsFailed atomic.Int64 // decisions that could not be persisted
}

type metrics struct {
	tracesByRule *prometheus.CounterVec // decision, rule
	// Per decided trace, by decision (index: 0 dropped, 1 kept): how long
	// after its first span it was decided, its duration, its span count.
	delay, duration, spans [2]prometheus.Observer
}

// observe records one decided trace in the histograms.
func (m *metrics) observe(kept bool, delay time.Duration, t *buffer.Trace) {
	i := 0
	if kept {
		i = 1
	}
	m.delay[i].Observe(delay.Seconds())
	if t.MinStart != 0 && t.MaxEnd >= t.MinStart {
		m.duration[i].Observe(float64(t.MaxEnd-t.MinStart) / 1e9)
	}
	m.spans[i].Observe(float64(t.SpanCount))
}

func newMetrics(reg prometheus.Registerer, c *counters, e *Engine) *metrics {
	if reg == nil { // allowed, as in every package: the counters still count, unexported
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		tracesByRule: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tailsift_decision_traces_total",
			Help: "Traces decided, by decision (kept or dropped) and deciding rule.",
		}, []string{"decision", "rule"}),
	}
	counter := func(name, help string, v *atomic.Int64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, f func() float64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	histogram := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, []string{"decision"})
	}
	delay := histogram("tailsift_decision_delay_seconds", "Time from a trace's first span arriving to its decision, by decision.",
		[]float64{0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300})
	duration := histogram("tailsift_decision_trace_duration_seconds", "Duration of decided traces (latest span end - earliest span start), by decision.",
		prometheus.ExponentialBuckets(0.001, 4, 10))
	spans := histogram("tailsift_decision_trace_spans", "Spans per decided trace, by decision.",
		prometheus.ExponentialBuckets(1, 4, 8))
	for i, d := range []string{"dropped", "kept"} {
		m.delay[i], m.duration[i], m.spans[i] = delay.WithLabelValues(d), duration.WithLabelValues(d), spans.WithLabelValues(d)
	}
	reg.MustRegister(
		m.tracesByRule, delay, duration, spans, newAdaptiveCollector(e),
		counter("tailsift_decision_spans_accepted_total", "Spans accepted from ingest (buffered or following a cached decision).", &c.accepted, nil),
		counter("tailsift_decision_spans_kept_total", "Spans handed to the exporter: spans of kept traces and their late spans.", &c.kept, nil),
		counter("tailsift_decision_spans_dropped_total", "Spans dropped, by reason: policy (the trace was dropped), late (arrived after a drop decision) or storage (spilled bytes unreadable).", &c.droppedPolicy, prometheus.Labels{"reason": "policy"}),
		counter("tailsift_decision_spans_dropped_total", "Spans dropped, by reason: policy (the trace was dropped), late (arrived after a drop decision) or storage (spilled bytes unreadable).", &c.droppedLate, prometheus.Labels{"reason": "late"}),
		counter("tailsift_decision_spans_dropped_total", "Spans dropped, by reason: policy (the trace was dropped), late (arrived after a drop decision) or storage (spilled bytes unreadable).", &c.droppedStorage, prometheus.Labels{"reason": "storage"}),
		counter("tailsift_decision_spans_recovered_total", "Spans read back from the write-ahead log at start (--durability=wal).", &c.recovered, nil),
		counter("tailsift_decision_stress_relief_traces_total", "Traces decided early because the buffer was about to refuse spans (--stress-relief).", &c.relievedTraces, nil),
		counter("tailsift_decision_stress_relief_spans_total", "Spans of traces decided early by stress relief.", &c.relievedSpans, nil),
		counter("tailsift_decision_trace_limit_traces_total", "Traces decided at once because they reached max_trace_spans or max_trace_bytes; their later spans follow the decision.", &c.limitedTraces, nil),
		counter("tailsift_decision_trace_limit_spans_total", "Spans of traces decided at once for reaching a trace limit (at the decision).", &c.limitedSpans, nil),
		counter("tailsift_decision_persisted_total", "Decisions written to the data directory, by outcome.", &c.decisionsSaved, prometheus.Labels{"outcome": "ok"}),
		counter("tailsift_decision_persisted_total", "Decisions written to the data directory, by outcome.", &c.decisionsFailed, prometheus.Labels{"outcome": "failed"}),
		counter("tailsift_decision_spans_shadow_forwarded_total", "Shadow mode: spans of traces the policies dropped, forwarded anyway (counted in spans_kept_total).", &c.shadowForwarded, nil),
		counter("tailsift_decision_late_spans_total", "Spans that arrived after their trace was decided, by decision.", &c.lateKept, prometheus.Labels{"decision": "kept"}),
		counter("tailsift_decision_late_spans_total", "Spans that arrived after their trace was decided, by decision.", &c.droppedLate, prometheus.Labels{"decision": "dropped"}),
		counter("tailsift_decision_spans_handed_off_total", "Buffered spans handed to another node that owns their trace now.", &c.handedOff, nil),
		gauge("tailsift_decision_cluster_share", "This node's share of the cluster's traces (its part of the ring): the adaptive and rate_limit targets, which are cluster-wide, are multiplied by it.",
			func() float64 { return e.policies.Load().set.Share() }, nil),
		gauge("tailsift_buffer_traces", "Traces buffered awaiting a decision.", func() float64 { return float64(e.buf.Stats().Traces) }, nil),
		gauge("tailsift_buffer_spans", "Spans buffered awaiting a decision.", func() float64 { return float64(e.buf.Stats().Spans) }, nil),
		gauge("tailsift_buffer_memory_bytes", "Memory accounted to the buffer (span bytes and bookkeeping).", func() float64 { return float64(e.buf.Stats().Bytes) }, nil),
		gauge("tailsift_decision_explain_ring_bytes", "Memory of the explain API's ring of recent decisions: fixed at start, outside memory_limit.", func() float64 { return float64(int64(e.recent.size) * recentEntryBytes) }, nil),
		gauge("tailsift_buffer_pressure", "1 while the buffer is within 1/16 of its memory limit: stress relief decides the oldest traces early (if on), and past the limit ingest answers retry-later.", func() float64 {
			if e.buf.Pressure() {
				return 1
			}
			return 0
		}, nil),
		gauge("tailsift_buffer_memory_limit_bytes", "The buffer's memory limit (--memory-limit).", func() float64 { return float64(e.buf.Stats().MemoryLimit) }, nil),
		gauge("tailsift_decision_cache_entries", "Trace IDs remembered for late spans, by decision.", func() float64 { return float64(e.kept.len()) }, prometheus.Labels{"decision": "kept"}),
		gauge("tailsift_decision_cache_entries", "Trace IDs remembered for late spans, by decision.", func() float64 { return float64(e.dropped.len()) }, prometheus.Labels{"decision": "dropped"}),
	)
	return m
}

// adaptiveCollector exports each adaptive rule's current sampling: the keep
// probability averaged over its keys weighted by their traffic, and the
// number of keys it tracks. Labels are rule names: bounded by the policy
// file. Read at scrape time from the live policy set.
type adaptiveCollector struct {
	e                *Engine
	probability, key *prometheus.Desc
}

func newAdaptiveCollector(e *Engine) *adaptiveCollector {
	return &adaptiveCollector{e: e,
		probability: prometheus.NewDesc("tailsift_policy_adaptive_probability",
			"Keep probability an adaptive rule applies now, averaged over its keys weighted by their traffic.", []string{"rule"}, nil),
		key: prometheus.NewDesc("tailsift_policy_adaptive_keys",
			"Keys an adaptive rule tracks (its overflow key included).", []string{"rule"}, nil),
	}
}

func (c *adaptiveCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.probability; ch <- c.key }

func (c *adaptiveCollector) Collect(ch chan<- prometheus.Metric) {
	ps := c.e.policies.Load()
	if ps == nil {
		return
	}
	for _, rule := range ps.set.RuleNames() {
		keys := ps.set.AdaptiveKeys(rule)
		if keys == nil {
			continue
		}
		var rate, weighted, plain float64
		for _, k := range keys {
			rate += k.Rate
			weighted += k.Rate * k.Probability
			plain += k.Probability
		}
		p := plain / float64(len(keys)) // before any traffic estimate
		if rate > 0 {
			p = weighted / rate
		}
		ch <- prometheus.MustNewConstMetric(c.probability, prometheus.GaugeValue, p, rule)
		ch <- prometheus.MustNewConstMetric(c.key, prometheus.GaugeValue, float64(len(keys)), rule)
	}
}
