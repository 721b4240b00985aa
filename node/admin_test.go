package node_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/testpki"
	"github.com/tailsift/tailsift/node"
)

// TestAdminToken: with admin_token_file, every admin endpoint but the
// probes needs the token; a missing or wrong one is refused, counted and
// logged without the token; a token rotated on disk takes over without a
// restart.
func TestAdminToken(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "admin-token")
	const first, second = "first-token-0123456789", "second-token-9876543210"
	testpki.WriteFile(t, tokenFile, []byte(first+"\n"), 0o600)
	cfg := node.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "", "127.0.0.1:0", ""
	cfg.AdminTokenFile = tokenFile
	reg := prometheus.NewRegistry()
	var logs otlptest.SyncBuffer
	n, err := node.New(cfg, node.Options{Registry: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })

	call := func(method, path, token string) int { t.Helper(); return adminCall(t, n, method, path, token) }
	for _, p := range []string{"/healthz", "/readyz"} {
		if code := call("GET", p, ""); code != http.StatusOK {
			t.Errorf("GET %s without a token: %d, want 200 (probes carry none)", p, code)
		}
	}
	guarded := []struct{ method, path string }{
		{"GET", "/metrics"}, {"POST", "/-/reload"}, {"GET", "/debug/pprof/"}, {"GET", "/debug/pprof/cmdline"},
		{"GET", "/api/v1/traces/0102030405060708090a0b0c0d0e0f10"},
	}
	for _, g := range guarded {
		if code := call(g.method, g.path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d, want 401", g.method, g.path, code)
		}
		if code := call(g.method, g.path, "not-the-token-at-all"); code != http.StatusUnauthorized {
			t.Errorf("%s %s with a wrong token: %d, want 401", g.method, g.path, code)
		}
	}
	if code := call("GET", "/metrics", first); code != http.StatusOK {
		t.Errorf("GET /metrics with the token: %d", code)
	}
	if code := call("POST", "/-/reload", first); code != http.StatusOK {
		t.Errorf("POST /-/reload with the token: %d", code)
	}
	missing := metricstest.Value(t, reg, "tailsift_admin_auth_failures_total", map[string]string{"reason": "missing"})
	wrong := metricstest.Value(t, reg, "tailsift_admin_auth_failures_total", map[string]string{"reason": "wrong"})
	if int(missing) != len(guarded) || int(wrong) != len(guarded) {
		t.Errorf("failures counted: %v missing, %v wrong; want %d each", missing, wrong, len(guarded))
	}

	// Rotate: the new token works once the file is looked at again (at
	// most a second later), the old one stops.
	testpki.WriteFile(t, tokenFile, []byte(second+"\n"), 0o600)
	deadline := time.Now().Add(15 * time.Second)
	for call("GET", "/metrics", second) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the rotated token was not accepted within 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := call("GET", "/metrics", first); code != http.StatusUnauthorized {
		t.Errorf("the old token after the rotation: %d, want 401", code)
	}
	for _, tok := range []string{first, second, "not-the-token-at-all"} {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("the log shows a token: %q", tok)
		}
	}
	if !strings.Contains(logs.String(), "admin request refused") {
		t.Error("no refusal was logged")
	}

	// A token too short to protect anything is refused at start.
	testpki.WriteFile(t, tokenFile, []byte("short\n"), 0o600)
	if _, err := node.New(cfg, node.Options{}); err == nil || !strings.Contains(err.Error(), "admin_token_file") {
		t.Errorf("a 5-byte token: %v, want an error naming admin_token_file", err)
	}
}

// adminCall makes a request of n's admin listener, with token as bearer
// if set, and returns the status.
func adminCall(t *testing.T, n *node.Node, method, path, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+n.AdminAddr().String()+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
