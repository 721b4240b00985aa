package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/top"
	"github.com/tailsift/tailsift/node"
)

// TestTopOnce runs "sampler top --once" against a node started in-process
// that decided one trace, and together with an address nobody listens on.
func TestTopOnce(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	cfg.DecisionWait = 50 * time.Millisecond
	cfg.RootWait = 50 * time.Millisecond
	n, err := node.New(cfg, node.Options{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	}()
	admin := n.AdminAddr().String()

	resp, err := http.Post("http://"+n.HTTPAddr().String()+"/v1/traces", "application/json", strings.NewReader(errorTrace))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/traces: %s", resp.Status)
	}
	// Wait for the decision, so the frame has a rule row.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := httpGet(http.DefaultClient, "http://"+admin+"/metrics")
		s, err := top.Parse(admin, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := s.Value("tailsift_decision_traces_total", "decision", "kept"); v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no decision after 10s:\n%s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	var out, errb bytes.Buffer
	if code := run([]string{"top", "--once", "--admin", admin}, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr: %s\nstdout:\n%s", code, errb.String(), out.String())
	}
	f := out.String()
	t.Logf("frame:\n%s", f)
	for _, want := range []string{admin, "spans/s", "nodes 1/1 up", "IN/S", "KEEP", "errors"} {
		if !strings.Contains(f, want) {
			t.Errorf("frame lacks %q", want)
		}
	}
	row := fieldsOf(f, admin)
	// One span received and kept, no rates on the first frame.
	if len(row) < 6 || row[1] != "1" || row[2] != "-" || row[5] != "100.0%" {
		t.Errorf("node row: %q", row)
	}

	// With a node that is down: an error row, the live node still shown, exit 1.
	dead := freePort(t)
	out.Reset()
	errb.Reset()
	if code := run([]string{"top", "--once", "--admin", admin + "," + dead, "--timeout", "2s"}, &out, &errb); code != 1 {
		t.Errorf("exit %d with a dead node, want 1; stderr: %s", code, errb.String())
	}
	f = out.String()
	if r := fieldsOf(f, dead); len(r) < 2 || r[1] != "error:" {
		t.Errorf("dead node row %q in:\n%s", r, f)
	}
	if !strings.Contains(f, "nodes 1/2 up") || len(fieldsOf(f, admin)) < 6 {
		t.Errorf("frame with a dead node:\n%s", f)
	}

	// Usage and bad flags.
	if code := run([]string{"top", "--interval", "0"}, &out, &errb); code != 2 {
		t.Errorf("--interval 0: exit %d, want 2", code)
	}
}

func fieldsOf(frame, prefix string) []string {
	for line := range strings.Lines(frame) {
		if strings.HasPrefix(line, prefix) {
			return strings.Fields(line)
		}
	}
	return nil
}
