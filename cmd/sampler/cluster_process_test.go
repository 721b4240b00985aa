package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tailsift/tailsift/bench"
	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlptest"
)

// clusterProc is one "sampler run" process of TestClusterProcess.
type clusterProc struct {
	name                string
	grpc, admin, gossip string
	cmd                 *exec.Cmd
	stderr              otlptest.SyncBuffer
	done                chan struct{} // closed when the process exited
	err                 error         // its exit status, set before done closes
}

// TestClusterProcess runs three real "sampler run" processes that form a
// cluster on loopback with --join, drives all three with "sampler bench" in
// external mode, and checks that every kept trace reached the bench sink
// whole although its spans arrived at different nodes; then each node
// leaves on SIGTERM and exits 0.
func TestClusterProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three samplers and a load")
	}
	bin := buildSampler(t)
	sinkAddr := freePort(t) // the bench's sink: every node forwards kept traces to it

	nodes := make([]*clusterProc, 3)
	for i := range nodes {
		nodes[i] = &clusterProc{name: fmt.Sprintf("node-%d", i), grpc: freePort(t), admin: freePort(t), gossip: freePort(t)}
	}
	// Every node is given every gossip address, as a headless service
	// would: it joins those that are up and counts itself as joined.
	var join []string
	for _, n := range nodes {
		join = append(join, n.gossip)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if n.cmd == nil {
				continue
			}
			select {
			case <-n.done:
			default:
				n.cmd.Process.Kill()
				<-n.done
			}
			if t.Failed() {
				t.Logf("stderr of %s (grpc %s, admin %s, gossip %s):\n%s", n.name, n.grpc, n.admin, n.gossip, n.stderr.String())
			}
		}
	})
	for _, n := range nodes {
		n.cmd = exec.Command(bin, "run",
			"--node-name", n.name,
			"--otlp-grpc", n.grpc, "--otlp-http", "", "--admin", n.admin,
			"--cluster-bind", n.gossip, "--peer-listen", "127.0.0.1:0", "--join", strings.Join(join, ","),
			"--forward", sinkAddr,
			"--root-wait", "500ms", "--decision-wait", "10s",
			"--shutdown-timeout", "10s")
		n.cmd.Stdout = io.Discard
		n.cmd.Stderr = &n.stderr
		if err := n.cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", n.name, err)
		}
		n.done = make(chan struct{})
		go func() {
			n.err = n.cmd.Wait()
			close(n.done)
		}()
	}

	// Ready, and each sees the three members.
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range nodes {
		for {
			code, _ := httpGet(hc, "http://"+n.admin+"/readyz")
			members := -1.0
			if code == http.StatusOK {
				if g, err := scrapeMetrics(hc, n.admin); err == nil {
					members = metricstest.Value(t, g, "tailsift_cluster_members", nil)
				}
			}
			if members == 3 {
				break
			}
			select {
			case <-n.done:
				t.Fatalf("%s exited before the cluster formed: %v", n.name, n.err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz %d, tailsift_cluster_members %v: the cluster of 3 did not form within 20s", n.name, code, members)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// The load, through every node; the sink listens where they forward.
	var grpcs, admins []string
	for _, n := range nodes {
		grpcs, admins = append(grpcs, n.grpc), append(admins, n.admin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // ends a hung bench only
	defer cancel()
	benchCmd := exec.CommandContext(ctx, bin, "bench",
		"--target", strings.Join(grpcs, ","), "--target-admin", strings.Join(admins, ","),
		"--sink-listen", sinkAddr, "--protocol", "grpc", "--connections", "6",
		"--rate", "3000", "--duration", "5s", "--seed", "7",
		"--error-share", "0.1", "--tail-share", "0.05", // enough of each class in a short run
		"--drain", "3m", "--no-progress", "--json")
	var benchOut, benchErr bytes.Buffer
	benchCmd.Stdout, benchCmd.Stderr = &benchOut, &benchErr
	t0 := time.Now()
	if err := benchCmd.Run(); err != nil {
		t.Fatalf("sampler bench: %v (after %v)\nstderr:\n%s\nstdout:\n%s", err, time.Since(t0).Round(time.Millisecond), benchErr.String(), benchOut.String())
	}
	var res bench.Result
	if err := json.Unmarshal(benchOut.Bytes(), &res); err != nil {
		t.Fatalf("bench --json output does not parse: %v\n%s", err, benchOut.String())
	}
	var text bytes.Buffer
	res.WriteText(&text)
	t.Logf("bench took %v:\n%s", time.Since(t0).Round(time.Millisecond), text.String())

	if res.Mode != "external" || res.Nodes != 3 {
		t.Errorf("bench mode %q with %d nodes, want external with 3", res.Mode, res.Nodes)
	}
	s := res.Sink
	if s.Complete == 0 || s.Completeness() != 1 || s.Fragmented != 0 || s.Duplicated != 0 || s.Unexpected != 0 || s.UnexpectedSpans != 0 || s.MalformedRequests != 0 {
		t.Errorf("kept traces not intact: completeness %.4f, complete %d, fragmented %d, duplicated %d, unexpected %d traces (+%d spans), %d malformed requests",
			s.Completeness(), s.Complete, s.Fragmented, s.Duplicated, s.Unexpected, s.UnexpectedSpans, s.MalformedRequests)
	}
	if res.SpansRefused != 0 || s.Undelivered != 0 || res.SpansSent != int64(res.SpansScheduled) {
		t.Errorf("sent %d of %d scheduled spans, %d refused, %d traces undelivered", res.SpansSent, res.SpansScheduled, res.SpansRefused, s.Undelivered)
	}
	// The embedded example policies keep every error and every slow trace
	// they have seen to be one when they decide: one whose error span or
	// root reaches its owner more than root_wait after the rest (a busy
	// machine delays the generator's connections and the peers' forwards)
	// is dropped, its late spans counted. What the owner says of each
	// missed one must show that.
	errs, slow := s.Classes[workload.ClassError], s.Classes[workload.ClassSlow]
	t.Logf("error traces kept whole: %d of %d, slow: %d of %d", errs.Complete, errs.Sent, slow.Complete, slow.Sent)
	if errs.Sent == 0 || slow.Sent == 0 {
		t.Errorf("%d error and %d slow traces delivered: a class is empty", errs.Sent, slow.Sent)
	}
	for _, m := range res.Unexplained() {
		t.Errorf("%s trace %s not kept whole, and its owner did not drop it before it showed that: %+v %s", m.Class, m.TraceID, m.Explanation, m.Err)
	}
	if e := res.Engine; e == nil || !e.External || !e.AccountingOK || e.Stats.Accepted != res.SpansSent {
		t.Errorf("accounting from the nodes' /metrics does not add up: %+v (generator sent %d spans)", e, res.SpansSent)
	}

	// The nodes' own counters: spans crossed nodes, both sides agree, and
	// the clients' spans are what the generator sent.
	var out, in, client, queued float64
	for _, n := range nodes {
		g, err := scrapeMetrics(hc, n.admin)
		if err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		o := metricstest.Value(t, g, "tailsift_cluster_forwarded_spans_total", map[string]string{"direction": "out"})
		i := metricstest.Value(t, g, "tailsift_cluster_forwarded_spans_total", map[string]string{"direction": "in"})
		c := metricstest.Value(t, g, "tailsift_cluster_received_spans_total", map[string]string{"source": "client"})
		q := metricstest.Value(t, g, "tailsift_cluster_forward_queued_spans", nil)
		t.Logf("%s: forwarded out %.0f, in %.0f; received from clients %.0f; queued %.0f", n.name, o, i, c, q)
		if c == 0 {
			t.Errorf("%s received no spans from the generator", n.name)
		}
		out, in, client, queued = out+o, in+i, client+c, queued+q
	}
	if out <= 0 || out != in {
		t.Errorf("spans forwarded between nodes: out %.0f, in %.0f; want equal and > 0", out, in)
	}
	if client != float64(res.SpansSent) {
		t.Errorf("the nodes received %.0f spans from clients, the generator sent %d", client, res.SpansSent)
	}
	if queued != 0 {
		t.Errorf("%.0f spans still queued for forwarding after the drain", queued)
	}

	// Leave one by one: each hands off, leaves and exits 0.
	for _, i := range []int{2, 1, 0} {
		n := nodes[i]
		t1 := time.Now()
		n.stop(t)
		if !strings.Contains(n.stderr.String(), `msg=stopped`) {
			t.Errorf("%s: no final accounting line in its log", n.name)
		}
		t.Logf("%s exited 0, %v after SIGTERM", n.name, time.Since(t1).Round(time.Millisecond))
	}
}

// httpGet returns the status code and body of a GET, 0 if it failed.
func httpGet(hc *http.Client, url string) (int, []byte) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// scrapeMetrics reads a node's /metrics into a Gatherer for metricstest.
func scrapeMetrics(hc *http.Client, admin string) (prometheus.Gatherer, error) {
	code, body := httpGet(hc, "http://"+admin+"/metrics")
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: status %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	var list []*dto.MetricFamily
	for _, mf := range mfs {
		list = append(list, mf)
	}
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return list, nil }), nil
}
