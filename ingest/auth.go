package ingest

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/tailsift/tailsift/internal/otlpserver"
)

// Authenticator names the tenant of a request from its headers (names
// lower-case) and the client's verified certificate chain, or refuses it
// with an *AuthError.
type Authenticator func(header func(name string) []string, certs []*x509.Certificate) (tenant string, err error)

// AuthError is a refusal: Reason is the metric label ("missing",
// "invalid", ...), Err what the client is told (never the credential).
type AuthError struct {
	Reason string
	Err    error
}

func (e *AuthError) Error() string { return e.Err.Error() }
func (e *AuthError) Unwrap() error { return e.Err }

type tenantKey struct{}

// TenantOf is the tenant a request was authenticated as ("" without an
// Authenticator).
func TenantOf(ctx context.Context) string {
	t, _ := ctx.Value(tenantKey{}).(string)
	return t
}

// authenticate runs the Authenticator, counting and reporting refusals.
func (r *Receiver) authenticate(ctx context.Context, protocol, remote string, header func(string) []string, certs []*x509.Certificate) (context.Context, error) {
	tenant, err := r.cfg.Authenticate(header, certs)
	if err != nil {
		reason := "invalid"
		var ae *AuthError
		if errors.As(err, &ae) {
			reason = ae.Reason
		}
		r.metrics.authFailures.WithLabelValues(protocol, reason).Inc()
		if r.cfg.OnAuthFailure != nil {
			r.cfg.OnAuthFailure(protocol, remote, reason)
		}
		return nil, err
	}
	return context.WithValue(ctx, tenantKey{}, tenant), nil
}

// authGRPC authenticates a gRPC stream from its metadata, before its
// message is read.
func (r *Receiver) authGRPC(ctx context.Context, info *tap.Info) (context.Context, error) {
	var certs []*x509.Certificate
	remote := ""
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr.String()
		if ci, ok := p.AuthInfo.(connInfo); ok {
			if ti, ok := ci.AuthInfo.(credentials.TLSInfo); ok {
				certs = ti.State.PeerCertificates
			}
		}
	}
	ctx, err := r.authenticate(ctx, "grpc", remote, func(name string) []string { return info.Header.Get(name) }, certs)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "unauthenticated: "+err.Error())
	}
	return ctx, nil
}

// authHTTP authenticates an HTTP request before its body is read, and
// answers 401 if it fails.
func (r *Receiver) authHTTP(w http.ResponseWriter, req *http.Request, mediaType string) (context.Context, bool) {
	var certs []*x509.Certificate
	if req.TLS != nil {
		certs = req.TLS.PeerCertificates
	}
	header := func(name string) []string { return req.Header.Values(name) }
	ctx, err := r.authenticate(req.Context(), "http", req.RemoteAddr, header, certs)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tailsift"`)
		otlpserver.WriteStatus(w, mediaType, http.StatusUnauthorized, codes.Unauthenticated, "unauthenticated: "+err.Error())
		return nil, false
	}
	return ctx, true
}

// maxTenantLabels bounds the tenant label's values: past it, tenants not
// seen yet are counted as "other".
const maxTenantLabels = 1000

// tenantSpans counts accepted spans per tenant.
type tenantSpans struct {
	vec  *prometheus.CounterVec
	mu   sync.Mutex
	seen map[string]prometheus.Counter
}

func (t *tenantSpans) add(tenant string, spans int) {
	t.mu.Lock()
	c := t.seen[tenant]
	if c == nil {
		label := tenant
		if len(t.seen) >= maxTenantLabels {
			label = "other"
		}
		c = t.vec.WithLabelValues(label)
		if label == tenant {
			t.seen[tenant] = c
		}
	}
	t.mu.Unlock()
	c.Add(float64(spans))
}
