package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailsift/tailsift/bench"
	"github.com/tailsift/tailsift/internal/metricstest"
)

// startProc starts p as "sampler run" with args; its stderr is collected,
// and it is killed at cleanup if still running (its log shown if t failed).
func startProc(t *testing.T, bin string, p *clusterProc, args ...string) {
	t.Helper()
	p.done = make(chan struct{})
	p.cmd = exec.Command(bin, append([]string{"run"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("stderr of %s (admin %s, gossip %s):\n%s", p.name, p.admin, p.gossip, p.stderr.String())
		}
	})
}

// stop sends SIGTERM and expects exit 0 within 15s.
func (p *clusterProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second): // the shutdown timeout is 10s
		t.Fatalf("%s did not exit within 15s of SIGTERM", p.name)
	}
	if p.err != nil {
		t.Fatalf("%s exited with %v after SIGTERM", p.name, p.err)
	}
}

// waitProc polls cond every 50ms for up to 60s (a busy machine), failing
// early if p exits.
func waitProc(t *testing.T, p *clusterProc, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		select {
		case <-p.done:
			t.Fatalf("%s exited while waiting for %s: %v", p.name, what, p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out after 60s waiting for %s", p.name, what)
		}
	}
}

var nodeNameLog = regexp.MustCompile(`msg="cluster gossip started" .*\bnode=(\S+)`)

// TestClusterProcessDefaultNames starts three processes on one host as a
// new user would (issue 11, item 7): the first with --cluster-bind only,
// two more with --join to it, none with --node-name. Each takes a name
// of its own (host name and gossip port), one cluster of three forms,
// and every kept trace of a load through all three arrives complete. A
// fourth process then takes the first one's name: both are not ready and
// say why, where they used to run as separate clusters in silence.
func TestClusterProcessDefaultNames(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs four samplers and a load")
	}
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no host name:", err)
	}
	bin := buildSampler(t)
	sinkAddr := freePort(t)
	common := func(p *clusterProc) []string {
		// Each node on a host needs its own peer link port (peer_listen's
		// default, 4319, is for one node per host).
		return []string{"--otlp-grpc", p.grpc, "--otlp-http", "", "--admin", p.admin, "--cluster-bind", p.gossip, "--peer-listen", "127.0.0.1:0",
			"--forward", sinkAddr, "--root-wait", "500ms", "--decision-wait", "10s", "--shutdown-timeout", "10s"}
	}
	nodes := make([]*clusterProc, 3)
	t0 := time.Now()
	for i := range nodes {
		p := &clusterProc{name: fmt.Sprintf("node-%d", i), grpc: freePort(t), admin: freePort(t), gossip: freePort(t)}
		args := common(p)
		if i > 0 {
			args = append(args, "--join", nodes[0].gossip)
		}
		startProc(t, bin, p, args...)
		nodes[i] = p
	}

	hc := &http.Client{Timeout: 2 * time.Second}
	metric := func(p *clusterProc, name string) float64 {
		g, err := scrapeMetrics(hc, p.admin)
		if err != nil {
			return -1
		}
		return metricstest.Value(t, g, name, nil)
	}
	for _, n := range nodes {
		waitProc(t, n, "/readyz 200 with 3 members", func() bool {
			code, _ := httpGet(hc, "http://"+n.admin+"/readyz")
			return code == http.StatusOK && metric(n, "tailsift_cluster_members") == 3
		})
	}
	t.Logf("3 processes formed one cluster %v after the first started", time.Since(t0).Round(time.Millisecond))

	names := map[string]bool{}
	for _, n := range nodes {
		m := nodeNameLog.FindStringSubmatch(n.stderr.String())
		_, port, _ := net.SplitHostPort(n.gossip)
		if m == nil || m[1] != host+"-"+port {
			t.Fatalf("%s (gossip %s): logged node name %q, want %s-%s", n.name, n.gossip, m, host, port)
		}
		n.name = m[1]
		names[m[1]] = true
		if v := metric(n, "tailsift_cluster_name_conflicts_total"); v != 0 {
			t.Errorf("%s: %v name conflicts", n.name, v)
		}
	}
	if len(names) != 3 {
		t.Fatalf("node names %v, want 3 different", names)
	}

	// A load through every node; each trace's spans reach different nodes.
	var grpcs, admins []string
	for _, n := range nodes {
		grpcs, admins = append(grpcs, n.grpc), append(admins, n.admin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	benchCmd := exec.CommandContext(ctx, bin, "bench",
		"--target", strings.Join(grpcs, ","), "--target-admin", strings.Join(admins, ","),
		"--sink-listen", sinkAddr, "--protocol", "grpc", "--connections", "6",
		"--rate", "2000", "--duration", "5s", "--seed", "11",
		"--error-share", "0.1", "--tail-share", "0.05",
		"--quiet", "3s", "--drain", "30s", "--no-progress", "--json")
	var benchOut, benchErr bytes.Buffer
	benchCmd.Stdout, benchCmd.Stderr = &benchOut, &benchErr
	if err := benchCmd.Run(); err != nil {
		t.Fatalf("sampler bench: %v\nstderr:\n%s\nstdout:\n%s", err, benchErr.String(), benchOut.String())
	}
	var res bench.Result
	if err := json.Unmarshal(benchOut.Bytes(), &res); err != nil {
		t.Fatalf("bench --json output does not parse: %v\n%s", err, benchOut.String())
	}
	s := res.Sink
	t.Logf("kept traces: %d complete, %d fragmented, %d duplicated (completeness %.4f); spans sent %d of %d",
		s.Complete, s.Fragmented, s.Duplicated, s.Completeness(), res.SpansSent, res.SpansScheduled)
	if s.Complete == 0 || s.Completeness() != 1 || s.Fragmented != 0 || s.Duplicated != 0 || s.Unexpected != 0 || s.UnexpectedSpans != 0 {
		t.Errorf("kept traces not intact: completeness %.4f, complete %d, fragmented %d, duplicated %d, unexpected %d (+%d spans)",
			s.Completeness(), s.Complete, s.Fragmented, s.Duplicated, s.Unexpected, s.UnexpectedSpans)
	}
	if res.SpansRefused != 0 || s.Undelivered != 0 || res.SpansSent != int64(res.SpansScheduled) {
		t.Errorf("sent %d of %d scheduled spans, %d refused, %d traces undelivered", res.SpansSent, res.SpansScheduled, res.SpansRefused, s.Undelivered)
	}

	// A fourth process with the first one's name, joining it.
	dup := &clusterProc{name: "duplicate", grpc: freePort(t), admin: freePort(t), gossip: freePort(t)}
	startProc(t, bin, dup, append(common(dup), "--node-name", nodes[0].name, "--join", nodes[0].gossip)...)
	for _, c := range []struct{ n, other *clusterProc }{{dup, nodes[0]}, {nodes[0], dup}} {
		want := `not ready: node name "` + nodes[0].name + `" is also used by the node at ` + c.other.gossip
		waitProc(t, c.n, "/readyz to report the name conflict", func() bool {
			code, body := httpGet(hc, "http://"+c.n.admin+"/readyz")
			return code == http.StatusServiceUnavailable && strings.Contains(string(body), want)
		})
		if v := metric(c.n, "tailsift_cluster_name_conflicts_total"); v < 1 {
			t.Errorf("%s (gossip %s): tailsift_cluster_name_conflicts_total = %v, want >= 1", c.n.name, c.n.gossip, v)
		}
		if log := c.n.stderr.String(); !strings.Contains(log, "level=ERROR msg=\"another node uses this node's name") ||
			!strings.Contains(log, "other_node="+c.other.gossip) {
			t.Errorf("%s (gossip %s): no error line naming the other node", c.n.name, c.n.gossip)
		}
	}
	// The others keep the node they knew under that name.
	for _, n := range nodes {
		if m := metric(n, "tailsift_cluster_members"); m != 3 {
			t.Errorf("%s sees %v members after the duplicate came, want 3", n.name, m)
		}
	}

	// The duplicate leaves without a leave message in the name (peers
	// would drop the first node), so the cluster stays whole.
	dup.stop(t)
	if !strings.Contains(dup.stderr.String(), "leaving without a leave message") {
		t.Errorf("the duplicate did not say it left without a leave message")
	}
	for _, n := range nodes {
		if m := metric(n, "tailsift_cluster_members"); m != 3 {
			t.Errorf("%s sees %v members after the duplicate left, want 3", n.name, m)
		}
	}
	for _, n := range []*clusterProc{nodes[2], nodes[1], nodes[0]} {
		n.stop(t)
	}
}
