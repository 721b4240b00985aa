package node_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tailsift/tailsift/decision"
	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/node"
)

// Known traffic, then a scrape of /metrics over HTTP: the counters equal
// what was sent and decided, the histograms saw every decided trace, and
// the accounting identity holds on the scraped values. The admin listener
// also serves the profiler.
func TestMetricsScrape(t *testing.T) {
	sk := startSink(t)
	cfg := errorsOnlyConfig(t, sk)
	cfg.Admin, cfg.RootWait = "127.0.0.1:0", 100*time.Millisecond
	n, err := node.New(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(t.Context())
	const traces, errorEvery = 30, 3 // 10 error traces, 20 others
	for i := range traces {
		id := [16]byte{5, byte(i)}
		exportSpans(t, n, span(id, 1, true, false), span(id, 2, false, i%errorEvery == 0), span(id, 3, false, false))
	}
	waitQuiet(t, n, time.Minute)

	g := scrape(t, "http://"+n.AdminAddr().String()+"/metrics")
	want := map[string]float64{
		`tailsift_ingest_spans_received_total{protocol="grpc"}`:             3 * traces,
		`tailsift_decision_spans_accepted_total`:                            3 * traces,
		`tailsift_decision_traces_total{decision="kept",rule="errors"}`:     traces / errorEvery,
		`tailsift_decision_traces_total{decision="dropped",rule="default"}`: traces - traces/errorEvery,
		`tailsift_decision_spans_kept_total`:                                3 * traces / errorEvery,
		`tailsift_decision_spans_dropped_total{reason="policy"}`:            3 * (traces - traces/errorEvery),
		`tailsift_export_spans_sent_total`:                                  3 * traces / errorEvery,
		`tailsift_decision_delay_seconds{decision="kept"}`:                  traces / errorEvery,
		`tailsift_decision_trace_spans{decision="dropped"}`:                 traces - traces/errorEvery,
		`tailsift_decision_trace_duration_seconds{decision="kept"}`:         traces / errorEvery,
		`tailsift_buffer_spans`:                                             0,
	}
	for series, v := range want {
		name, labels := parseSeries(t, series)
		if got, ok := metricstest.Lookup(t, g, name, labels); !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}
	value := func(name string, labels map[string]string) float64 { return metricstest.Value(t, g, name, labels) }
	accepted := value("tailsift_decision_spans_accepted_total", nil)
	out := value("tailsift_export_spans_sent_total", nil) + value("tailsift_export_spans_pending", nil) +
		value("tailsift_decision_spans_dropped_total", map[string]string{"reason": "policy"}) +
		value("tailsift_decision_spans_dropped_total", map[string]string{"reason": "late"}) +
		value("tailsift_buffer_spans", nil)
	for _, r := range []string{"queue_full", "rejected", "retries_exhausted", "shutdown"} {
		out += value("tailsift_export_spans_failed_total", map[string]string{"reason": r})
	}
	if accepted != out || accepted != 3*traces {
		t.Errorf("scraped accounting: accepted %v, sent + failed + dropped + buffered + pending = %v", accepted, out)
	}

	resp, err := http.Get("http://" + n.AdminAddr().String() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("goroutine profile")) {
		t.Errorf("/debug/pprof/goroutine: %d %.100q", resp.StatusCode, body)
	}
}

// scrape reads a Prometheus text exposition over HTTP into a Gatherer.
func scrape(t *testing.T, url string) prometheus.Gatherer {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var list []*dto.MetricFamily
	for _, mf := range mfs {
		list = append(list, mf)
	}
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return list, nil })
}

// parseSeries splits `name{k="v",...}` into the name and its labels.
func parseSeries(t *testing.T, s string) (string, map[string]string) {
	t.Helper()
	i := bytes.IndexByte([]byte(s), '{')
	if i < 0 {
		return s, nil
	}
	labels := map[string]string{}
	for _, kv := range bytes.Split([]byte(s[i+1:len(s)-1]), []byte(",")) {
		k, v, ok := bytes.Cut(kv, []byte("="))
		if !ok {
			t.Fatalf("bad series %s", s)
		}
		labels[string(k)] = string(bytes.Trim(v, `"`))
	}
	return s[:i], labels
}

// /readyz answers 503 while the buffer is nearly full, so a load balancer
// sends new connections elsewhere.
func TestReadyzOverloaded(t *testing.T) {
	sk := startSink(t)
	cfg := errorsOnlyConfig(t, sk)
	cfg.Admin, cfg.MemoryLimit, cfg.StressRelief = "127.0.0.1:0", 64<<10, false
	cfg.DecisionWait, cfg.RootWait = time.Hour, time.Hour
	n, err := node.New(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(t.Context())
	readyz := func() int {
		resp, err := http.Get("http://" + n.AdminAddr().String() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz = %d with an empty buffer", code)
	}
	for i := 0; n.Stats().BufferBytes < 61<<10; i++ { // past 15/16 of 64 KiB
		if i == 10000 {
			t.Fatalf("buffer never filled: %+v", n.Stats())
		}
		id := [16]byte{6, byte(i >> 8), byte(i)}
		exportSpans(t, n, span(id, 1, false, false))
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d with the buffer at %d of 64 KiB, want 503", code, n.Stats().BufferBytes)
	}
}

// The explain API answers for the trace's owner from any node: asked of
// the node that does not own them, a pending, a kept and a dropped trace
// are described by their owner, with rule, probability and summary.
func TestExplainAcrossNodes(t *testing.T) {
	tt := startThreeTraces(t, 4)
	nodes, kept, dropped, pending := tt.nodes, tt.kept, tt.dropped, tt.pending

	ask := func(id [16]byte) (int, decision.Explanation) {
		resp, err := http.Get(fmt.Sprintf("http://%s/api/v1/traces/%x", nodes[0].AdminAddr(), id))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var x decision.Explanation
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&x); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, x
	}
	_, x := ask(kept)
	if x.Status != "kept" || x.Node != "node-1" || x.Rule != "errors" || x.Probability == nil || *x.Probability != 1 ||
		x.Spans != 2 || x.ErrorSpans != 1 || !x.HasRoot || x.DecidedAt.IsZero() || x.DurationSec != 0.1 ||
		!slices.Equal(x.Services, []string{"checkout"}) {
		t.Errorf("kept trace: %+v", x)
	}
	_, x = ask(dropped)
	if x.Status != "dropped" || x.Node != "node-1" || x.Rule != "default" || x.Probability == nil || *x.Probability != 0 || x.Spans != 1 {
		t.Errorf("dropped trace: %+v", x)
	}
	_, x = ask(pending)
	if x.Status != "pending" || x.Node != "node-1" || x.Spans != 1 || x.HasRoot || x.Rule != "" || !x.DecidedAt.IsZero() ||
		!slices.Equal(x.Services, []string{"checkout"}) {
		t.Errorf("pending trace: %+v", x)
	}
	_, x = ask([16]byte{4, 0xff, 0xff, 0xff})
	if x.Status != "unknown" {
		t.Errorf("a trace never sent: %+v", x)
	}
	if code, _ := ask([16]byte{}); code != http.StatusBadRequest {
		t.Errorf("the all-zero trace ID: status %d, want 400", code)
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/api/v1/traces/not-hex", nodes[0].AdminAddr()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a malformed trace ID: status %d, want 400", resp.StatusCode)
	}
}

// The example policies' adaptive rule (test-envs) reports its current keep
// probability and key count.
func TestAdaptiveRateMetrics(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "", "127.0.0.1:0", ""
	cfg.Forward = startSink(t).addr
	n, err := node.New(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(t.Context())
	g := scrape(t, "http://"+n.AdminAddr().String()+"/metrics")
	rule := map[string]string{"rule": "test-envs"}
	p, ok := metricstest.Lookup(t, g, "tailsift_policy_adaptive_probability", rule)
	keys := metricstest.Value(t, g, "tailsift_policy_adaptive_keys", rule)
	if !ok || p <= 0 || p > 1 || keys < 1 {
		t.Fatalf("adaptive rule test-envs: probability %v (present %v), %v keys", p, ok, keys)
	}
	if _, ok := metricstest.Lookup(t, g, "tailsift_policy_adaptive_keys", map[string]string{"rule": "errors"}); ok {
		t.Fatal("a non-adaptive rule has adaptive metrics")
	}
}
