package bench

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// admins reads the resource metrics of external samplers from their admin
// /metrics endpoints: what the engine costs where it runs.
type admins struct {
	urls []string
	hc   *http.Client
}

func newAdmins(addrs []string) *admins {
	a := &admins{hc: &http.Client{Timeout: 5 * time.Second}}
	for _, addr := range addrs {
		if !strings.Contains(addr, "://") {
			addr = "http://" + addr
		}
		a.urls = append(a.urls, strings.TrimSuffix(addr, "/")+"/metrics")
	}
	return a
}

// nodeMetrics is one scrape of one node.
type nodeMetrics struct {
	CPUSeconds    float64 // process_cpu_seconds_total
	RSS           float64 // process_resident_memory_bytes
	BufferedSpans float64 // tailsift_buffer_spans
	BufferBytes   float64 // tailsift_buffer_memory_bytes
	SpilledBytes  float64 // tailsift_buffer_spilled_bytes
	Accepted      float64 // tailsift_decision_spans_accepted_total
	// Spans on their way out: waiting for export or for a peer.
	ExportPending float64 // tailsift_export_spans_pending
	ForwardQueued float64 // tailsift_cluster_forward_queued_spans
}

// idle reports whether the nodes summed in m hold nothing: no span
// buffered, pending export or queued for a peer.
func (m nodeMetrics) idle() bool {
	return m.BufferedSpans == 0 && m.ExportPending == 0 && m.ForwardQueued == 0
}

// total scrapes every node and sums the figures.
func (a *admins) total(ctx context.Context) (nodeMetrics, error) {
	var sum nodeMetrics
	for _, u := range a.urls {
		m, err := a.scrape(ctx, u)
		if err != nil {
			return sum, err
		}
		sum.CPUSeconds += m.CPUSeconds
		sum.RSS += m.RSS
		sum.BufferedSpans += m.BufferedSpans
		sum.BufferBytes += m.BufferBytes
		sum.SpilledBytes += m.SpilledBytes
		sum.Accepted += m.Accepted
		sum.ExportPending += m.ExportPending
		sum.ForwardQueued += m.ForwardQueued
	}
	return sum, nil
}

func (a *admins) scrape(ctx context.Context, url string) (nodeMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nodeMetrics{}, err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nodeMetrics{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nodeMetrics{}, fmt.Errorf("scrape %s: HTTP %d", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nodeMetrics{}, fmt.Errorf("scrape %s: %w", url, err)
	}
	value := func(name string) float64 {
		mf := mfs[name]
		if mf == nil {
			return 0
		}
		v := 0.0
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				v += m.GetCounter().GetValue()
			case m.Gauge != nil:
				v += m.GetGauge().GetValue()
			case m.Untyped != nil:
				v += m.GetUntyped().GetValue()
			}
		}
		return v
	}
	return nodeMetrics{
		CPUSeconds:    value("process_cpu_seconds_total"),
		RSS:           value("process_resident_memory_bytes"),
		BufferedSpans: value("tailsift_buffer_spans"),
		BufferBytes:   value("tailsift_buffer_memory_bytes"),
		SpilledBytes:  value("tailsift_buffer_spilled_bytes"),
		Accepted:      value("tailsift_decision_spans_accepted_total"),
		ExportPending: value("tailsift_export_spans_pending"),
		ForwardQueued: value("tailsift_cluster_forward_queued_spans"),
	}, nil
}
