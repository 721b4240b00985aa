package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/testpki"
	"github.com/tailsift/tailsift/node"
)

// TestAuditLog: the audit log records the effective configuration, policy
// reloads with who asked and the hashes before and after, admin requests
// and refused ones; and no secret of the configuration appears in it, nor
// in the log.
func TestAuditLog(t *testing.T) {
	dir := t.TempDir()
	const (
		adminToken = "admin-token-5f2c9e1a7b"
		apiKey     = "sk-live-audit-93ab17"
		urlPass    = "hunter2secret"
		queryKey   = "qwerty12345secret"
	)
	gossipKey := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		testpki.WriteFile(t, p, []byte(content), 0o600)
		return p
	}
	cfg := node.DefaultConfig()
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin = "127.0.0.1:0", "", "127.0.0.1:0"
	cfg.ClusterBind, cfg.PeerListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.ClusterKeyFile = write("gossip.key", gossipKey)
	cfg.AdminTokenFile = write("admin.token", adminToken)
	cfg.Policies = write("policies.yaml", "rules:\n  - name: all\n    type: always\ndefault: keep\n")
	cfg.Forward = "https://svc:" + urlPass + "@127.0.0.1:1/v1/traces?api_key=" + queryKey
	cfg.ForwardHeaders = []string{"x-api-key=${file:" + write("api.key", apiKey) + "}"}
	cfg.AuditLog = filepath.Join(dir, "audit.jsonl")
	var logs otlptest.SyncBuffer
	n, err := node.New(cfg, node.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())

	admin := func(method, path, token string) int { t.Helper(); return adminCall(t, n, method, path, token) }
	write("policies.yaml", "rules:\n  - name: errors\n    type: error\ndefault: drop\n")
	if code := admin("POST", "/-/reload", adminToken); code != http.StatusOK {
		t.Fatalf("reload: %d", code)
	}
	write("policies.yaml", "rules:\n  - name: broken\n    type: nonsense\n")
	if code := admin("POST", "/-/reload", adminToken); code != http.StatusBadRequest {
		t.Fatalf("reload of an invalid file: %d", code)
	}
	if code := admin("GET", "/debug/pprof/cmdline", "wrong-token-0123456789"); code != http.StatusUnauthorized {
		t.Fatalf("a wrong token: %d", code)
	}
	if code := admin("GET", "/debug/pprof/cmdline", adminToken); code != http.StatusOK {
		t.Fatalf("pprof cmdline: %d", code)
	}
	if err := n.Shutdown(context.Background()); err != nil {
		t.Log(err) // the forward destination does not exist; exports may fail
	}

	raw, err := os.ReadFile(cfg.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(cfg.AuditLog); st.Mode().Perm() != 0o600 {
		t.Errorf("the audit log is %v, want 0600", st.Mode().Perm())
	}
	var events []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		events = append(events, e)
	}
	find := func(msg string, match func(map[string]any) bool) map[string]any {
		for _, e := range events {
			if e["msg"] == msg && (match == nil || match(e)) {
				return e
			}
		}
		t.Errorf("no %s event in the audit log:\n%s", msg, raw)
		return nil
	}
	if e := find("start", nil); e != nil {
		c, _ := e["config"].(map[string]any)
		if c["admin_token_file"] != cfg.AdminTokenFile || c["forward_headers"] == nil {
			t.Errorf("the start event's configuration: %v", c)
		}
	}
	ok := find("policy_reload", func(e map[string]any) bool { return e["outcome"] == "success" })
	bad := find("policy_reload", func(e map[string]any) bool { return e["outcome"] == "failure" })
	if ok != nil && bad != nil {
		if !strings.HasPrefix(ok["trigger"].(string), "POST /-/reload from 127.0.0.1:") || ok["hash_before"] == ok["hash_after"] || ok["hash_after"] == "" {
			t.Errorf("the successful reload: %v", ok)
		}
		if bad["hash_before"] != bad["hash_after"] || bad["hash_before"] != ok["hash_after"] || bad["error"] == "" {
			t.Errorf("the rejected reload: %v (the policies must not change)", bad)
		}
	}
	find("admin_auth_failure", func(e map[string]any) bool { return e["reason"] == "wrong" && e["path"] == "/debug/pprof/cmdline" })
	find("admin_request", func(e map[string]any) bool { return e["path"] == "/debug/pprof/cmdline" && e["status"] == float64(200) })
	find("stop", nil)

	for _, secret := range []string{adminToken, apiKey, urlPass, queryKey, gossipKey, "wrong-token-0123456789"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the audit log shows a secret: %q", secret)
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows a secret: %q", secret)
		}
	}
}
