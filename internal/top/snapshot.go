package top

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// NodeSnapshot is one scrape of one node's metrics.
type NodeSnapshot struct {
	Addr     string                       // the admin address as given
	At       time.Time                    // when the scrape finished
	Err      error                        // non-nil: the node could not be scraped
	Families map[string]*dto.MetricFamily // by metric name
}

// Parse reads a Prometheus text exposition into a snapshot of addr.
func Parse(addr string, r io.Reader) (NodeSnapshot, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return NodeSnapshot{Addr: addr, Err: err}, err
	}
	return NodeSnapshot{Addr: addr, Families: mfs}, nil
}

// MetricsURL is the /metrics URL of an admin address (host:port or a URL).
func MetricsURL(addr string) string {
	if strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://") {
		u := strings.TrimRight(addr, "/")
		if strings.HasSuffix(u, "/metrics") {
			return u
		}
		return u + "/metrics"
	}
	return "http://" + addr + "/metrics"
}

// Scrape fetches one node's metrics. Failures are in the snapshot's Err,
// never a panic: the caller renders them as an error row.
func Scrape(ctx context.Context, hc *http.Client, addr string) NodeSnapshot {
	s, err := scrape(ctx, hc, addr)
	if err != nil {
		s = NodeSnapshot{Addr: addr, Err: err}
	}
	s.At = time.Now()
	return s
}

func scrape(ctx context.Context, hc *http.Client, addr string) (NodeSnapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, MetricsURL(addr), nil)
	if err != nil {
		return NodeSnapshot{}, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := hc.Do(req)
	if err != nil {
		return NodeSnapshot{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return NodeSnapshot{}, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	s, err := Parse(addr, resp.Body)
	if err != nil {
		return NodeSnapshot{}, fmt.Errorf("GET /metrics: %w", err)
	}
	return s, nil
}

// ScrapeAll scrapes the nodes concurrently, results in the order of addrs.
func ScrapeAll(ctx context.Context, hc *http.Client, addrs []string) []NodeSnapshot {
	out := make([]NodeSnapshot, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = Scrape(ctx, hc, a)
		}()
	}
	wg.Wait()
	return out
}

// Value sums the samples of a counter, gauge or untyped metric whose labels
// include all of match (name=value pairs). ok is false if the metric is absent.
func (s NodeSnapshot) Value(name string, match ...string) (v float64, ok bool) {
	mf := s.Families[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if !matches(m, match) {
			continue
		}
		v += sampleValue(m)
	}
	return v, true
}

// By sums a metric's samples grouped by the values of the given labels
// (joined with "/"). nil if the metric is absent.
func (s NodeSnapshot) By(name string, labels ...string) map[string]float64 {
	mf := s.Families[name]
	if mf == nil {
		return nil
	}
	out := map[string]float64{}
	for _, m := range mf.GetMetric() {
		key := make([]string, len(labels))
		for i, l := range labels {
			key[i] = label(m, l)
		}
		out[strings.Join(key, "\x00")] += sampleValue(m)
	}
	return out
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

func matches(m *dto.Metric, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if label(m, match[i]) != match[i+1] {
			return false
		}
	}
	return true
}
