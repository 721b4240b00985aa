package node_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/node"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

const keepNothing = "rules:\n  - name: errors\n    type: error\ndefault: drop\n"
const keepEverything = "rules:\n  - name: errors\n    type: error\ndefault: keep\n"

// TestPolicyReload changes the policy file under a running node that keeps
// receiving traffic: a valid change is applied without refusing a request,
// an invalid one is rejected and the previous policies keep deciding.
func TestPolicyReload(t *testing.T) {
	sk := startSink(t)
	path := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(path, []byte(keepNothing), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.Forward, cfg.ClusterBind = "127.0.0.1:0", "", "127.0.0.1:0", sk.addr, ""
	cfg.Policies, cfg.PolicyPoll = path, 20*time.Millisecond
	cfg.DecisionWait, cfg.RootWait = time.Second, 50*time.Millisecond
	n, err := node.New(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	conn, err := grpc.NewClient(n.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)
	r := rand.New(rand.NewPCG(9, 9))
	batch := otlptest.DefaultBatch()
	batch.ErrorEvery = 0 // no errors: only the default decides
	send := func() {
		t.Helper()
		if _, err := client.Export(context.Background(), batch.Request(r)); err != nil {
			t.Fatalf("a request failed during reloads: %v", err)
		}
	}
	reloads := func(outcome string) float64 {
		return metricstest.Value(t, n.Registry(), "tailsift_policy_reloads_total", map[string]string{"outcome": outcome})
	}
	firstHash := n.PolicyHash()

	// Traffic under the first policies: everything dropped.
	send()
	s := waitQuiet(t, n, time.Minute)
	if s.TracesKept != 0 || s.TracesDropped != 50 {
		t.Fatalf("before reload: %+v", s)
	}

	// A valid change, picked up by the file poll while traffic flows.
	stopTraffic := make(chan struct{})
	trafficDone := make(chan struct{})
	go func() {
		defer close(trafficDone)
		for {
			select {
			case <-stopTraffic:
				return
			default:
				send()
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	if err := writeAtomic(path, keepEverything); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return reloads("success") == 1 }, "the poll to apply the change")
	close(stopTraffic)
	<-trafficDone
	if n.PolicyHash() == firstHash {
		t.Fatal("policy hash did not change")
	}
	if got := metricstest.Value(t, n.Registry(), "tailsift_policy_info", map[string]string{"hash": n.PolicyHash()}); got != 1 {
		t.Fatalf("tailsift_policy_info{hash=%q} = %v", n.PolicyHash(), got)
	}
	waitQuiet(t, n, time.Minute)
	before := n.Stats().TracesKept
	send()
	s = waitQuiet(t, n, time.Minute)
	if s.TracesKept-before != 50 {
		t.Fatalf("after a valid reload kept %d of 50 traces: %+v", s.TracesKept-before, s)
	}
	checkAccounting(t, s)

	// An invalid change: rejected, and the running policies keep deciding.
	goodHash := n.PolicyHash()
	if err := writeAtomic(path, "rules:\n  - name: x\n    type: latency\n    threshold: soon\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return reloads("failure") >= 1 }, "the poll to reject the invalid file")
	resp, err := http.Post("http://"+n.AdminAddr().String()+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "policies.yaml:4") {
		t.Fatalf("POST /-/reload of an invalid file: %d %q", resp.StatusCode, body)
	}
	if n.PolicyHash() != goodHash {
		t.Fatal("an invalid file replaced the running policies")
	}
	before = n.Stats().TracesKept
	send()
	s = waitQuiet(t, n, time.Minute)
	if s.TracesKept-before != 50 {
		t.Fatalf("after a rejected reload kept %d of 50: the old policies must keep deciding", s.TracesKept-before)
	}

	// Back to a valid file through the endpoint.
	if err := writeAtomic(path, keepNothing); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post("http://"+n.AdminAddr().String()+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n.PolicyHash() != firstHash {
		t.Fatalf("POST /-/reload of a valid file: %d, hash %s want %s", resp.StatusCode, n.PolicyHash(), firstHash)
	}
	checkAccounting(t, n.Stats())
}

// waitFor waits until cond holds. The bound only ends a hung test: it is
// generous because a busy machine (a loaded CI runner) may take many times
// longer than an idle one, and the tests judge what happens, not when.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeAtomic replaces a file the way config management does (write, then
// rename), so the poller never reads half a file.
func writeAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
