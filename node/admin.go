package node

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailsift/tailsift/internal/lograte"
	"github.com/tailsift/tailsift/internal/reloadfile"
)

// adminAuth guards the admin endpoints with a bearer token read from
// admin_token_file (reread when the file changes). /healthz and /readyz
// stay open: probes carry no token.
type adminAuth struct {
	token    *reloadfile.Value[[32]byte] // SHA-256 of the token: compared in constant time
	failures *prometheus.CounterVec
	logEvery lograte.Limiter
	n        *Node
}

// openPaths answer without a token.
var openPaths = map[string]bool{"/healthz": true, "/readyz": true}

// minAdminToken is the shortest token accepted: a guessable one protects
// nothing.
const minAdminToken = 16

func readAdminToken(path string) ([32]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}, err
	}
	tok := strings.TrimRight(string(b), "\r\n")
	if len(tok) < minAdminToken {
		return [32]byte{}, fmt.Errorf("%s: the token has %d bytes, want at least %d (e.g. head -c 32 /dev/urandom | base64)", path, len(tok), minAdminToken)
	}
	return sha256.Sum256([]byte(tok)), nil
}

func newAdminAuth(n *Node) (*adminAuth, error) {
	a := &adminAuth{n: n, logEvery: lograte.Limiter{Every: 10 * time.Second}}
	a.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailsift_admin_auth_failures_total",
		Help: "Admin requests refused for a missing or wrong bearer token (admin_token_file), by reason.",
	}, []string{"reason"})
	path := n.cfg.AdminTokenFile
	v, err := reloadfile.New(func() ([32]byte, error) { return readAdminToken(path) }, []string{path},
		reloadfile.OnReload(func(err error) {
			n.audit.Event("secret_reload", "what", "admin token", "file", path, "error", errString(err))
			if err != nil {
				n.log.Warn("admin_token_file changed but does not load; the previous token stays", "err", err)
				return
			}
			n.log.Info("admin token reloaded", "file", path)
		}))
	if err != nil {
		return nil, fmt.Errorf("admin_token_file (--admin-token-file): %w", err)
	}
	a.token = v
	n.reg.MustRegister(a.failures)
	return a, nil
}

// wrap requires the token on every path but the open ones.
func (a *adminAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if openPaths[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		if err := a.check(r); err != nil {
			a.failures.WithLabelValues(err.Error()).Inc()
			a.n.audit.Limited("admin_auth_failure", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "reason", err.Error())
			if ok, suppressed := a.logEvery.Allow(); ok {
				a.n.log.Warn("admin request refused", "reason", err.Error(), "remote", r.RemoteAddr,
					"method", r.Method, "path", r.URL.Path, "similar_lines_suppressed", suppressed)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="tailsift-admin"`)
			http.Error(w, "unauthorized: this endpoint needs the admin bearer token", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Refusal reasons, the values of the failures metric's label.
var (
	errNoToken    = errors.New("missing")
	errWrongToken = errors.New("wrong")
)

func (a *adminAuth) check(r *http.Request) error {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return errNoToken
	}
	got, want := sha256.Sum256([]byte(strings.TrimSpace(tok))), a.token.Get()
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return errWrongToken
	}
	return nil
}
