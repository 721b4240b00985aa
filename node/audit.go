package node

import (
	"fmt"
	"net/http"
	"os"

	"github.com/tailsift/tailsift/internal/audit"
)

// openAudit opens audit_log: "" (none), "stderr", or a file, appended to
// and created 0600. Lines pass through the node's redactor.
func (n *Node) openAudit() error {
	switch n.cfg.AuditLog {
	case "":
		return nil
	case "stderr":
		n.audit = audit.New(os.Stderr, n.red.Handler)
	default:
		f, err := os.OpenFile(n.cfg.AuditLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("audit_log (--audit-log): %w", err)
		}
		n.auditFile = f
		n.audit = audit.New(f, n.red.Handler)
	}
	return nil
}

// auditStart records the effective configuration: every setting, with
// the secrets of its values redacted and only the names of the headers
// sent to forward (their values are credentials).
func (n *Node) auditStart() {
	if n.audit == nil {
		return
	}
	cfg := n.cfg.EnsureDefaults()
	settings := map[string]any{}
	for _, s := range Settings() {
		switch v := s.Field(&cfg).(type) {
		case *string:
			settings[s.Key] = n.red.Text(*v)
		case *[]string:
			list := make([]string, len(*v))
			for i, e := range *v {
				if s.Key == "forward_headers" {
					name, _, _ := parseHeader(e)
					e = name + "=" + "REDACTED"
				}
				list[i] = n.red.Text(e)
			}
			settings[s.Key] = list
		default:
			settings[s.Key] = fmt.Sprint(deref(v))
		}
	}
	n.audit.Event("start", "node", n.clu.Name(), "config", settings)
}

// deref is the value a setting's field pointer points to.
func deref(p any) any {
	switch v := p.(type) {
	case *bool:
		return *v
	case *int:
		return *v
	default:
		return fmt.Sprint(v)
	}
}

// clusterEvent passes the cluster's security events to the audit log;
// refusals an attacker can repeat at will are rate limited.
func (n *Node) clusterEvent(event string, args ...any) {
	if event == "peer_auth_failure" {
		n.audit.Limited(event, args...)
		return
	}
	n.audit.Event(event, args...)
}

// auditAdmin records admin requests that act or reveal (reload,
// profiles, explain), with who made them and the answer; metrics and the
// probes are left out, as they are polled.
func (n *Node) auditAdmin(next http.Handler) http.Handler {
	if n.audit == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" || openPaths[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		n.audit.Event("admin_request", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "status", sw.status)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Flush keeps streaming endpoints (pprof's profile and trace) working.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
