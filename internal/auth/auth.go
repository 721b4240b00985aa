// Package auth authenticates OTLP clients and names their tenant: static
// API keys from a file, JWT bearer tokens checked against a JWKS, or the
// client's TLS certificate. A request passes with any one method that is
// configured; without any, every request passes as the default tenant.
//
// Credentials are checked before a request's body is read. Nothing here
// logs or returns a credential: errors name what was wrong, not the value.
package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tailsift/tailsift/internal/reloadfile"
)

// DefaultTenant is the tenant of requests when no method is configured.
const DefaultTenant = "default"

// Config selects the methods. The zero value authenticates nothing.
type Config struct {
	// APIKeysFile lists "tenant key" lines (blank lines and # comments
	// ignored); reread when it changes. Keys of 16 bytes or more.
	APIKeysFile string
	// Header carries the API key: "authorization" (the default) reads
	// "Bearer <key>"; any other header's whole value is the key (e.g.
	// "x-api-key").
	Header string
	// JWT bearer tokens in the authorization header.
	JWT JWTConfig
	// CertTenant names the tenant after the client certificate: "subject"
	// (its common name) or "san" (its first DNS name); "" does not use it.
	// The certificate itself is checked by the listener (mutual TLS).
	CertTenant string
}

// Enabled reports whether any method is configured.
func (c Config) Enabled() bool {
	return c.APIKeysFile != "" || c.JWT.enabled() || c.CertTenant != ""
}

// Validate checks c; errors name settings as prefix + "api_keys_file"
// and so on.
func (c Config) Validate(prefix string) error {
	var errs []error
	if h := c.Header; h != "" && !validHeaderName(h) {
		errs = append(errs, fmt.Errorf("%sheader %q is not a header name", prefix, h))
	}
	switch c.CertTenant {
	case "", "subject", "san":
	default:
		errs = append(errs, fmt.Errorf("%scert_tenant must be subject or san, got %q", prefix, c.CertTenant))
	}
	errs = append(errs, c.JWT.validate(prefix+"jwt_"))
	return errors.Join(errs...)
}

func validHeaderName(h string) bool {
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return h != ""
}

// Credentials is what a request presents: its headers (gRPC metadata or
// HTTP header fields; names lower-case) and the client's verified
// certificate chain, if any.
type Credentials struct {
	Header           func(name string) []string
	PeerCertificates []*x509.Certificate
}

// Reasons a request is refused; the metric label values.
var (
	ErrMissing = errors.New("missing")  // no credential of a configured method
	ErrInvalid = errors.New("invalid")  // an unknown key, a bad signature or claims
	ErrExpired = errors.New("expired")  // a token past its expiry
	ErrNoCert  = errors.New("no_cert")  // certificate tenants, but no certificate
	ErrNoClaim = errors.New("no_claim") // a valid token without the tenant claim
)

// Authenticator checks credentials. Its methods are safe for concurrent
// use.
type Authenticator struct {
	cfg  Config
	keys *reloadfile.Value[map[[32]byte]string] // SHA-256 of a key -> tenant
	jwt  *jwtVerifier
	now  func() time.Time
}

// Option adjusts an Authenticator.
type Option func(*Authenticator)

// WithClock sets the clock tokens are checked against (tests).
func WithClock(now func() time.Time) Option { return func(a *Authenticator) { a.now = now } }

// New loads the files and keys c names.
func New(c Config, opts ...Option) (*Authenticator, error) {
	if c.Header == "" {
		c.Header = "authorization"
	}
	c.Header = strings.ToLower(c.Header)
	a := &Authenticator{cfg: c, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	if c.APIKeysFile != "" {
		v, err := reloadfile.New(func() (map[[32]byte]string, error) { return readKeys(c.APIKeysFile) }, []string{c.APIKeysFile})
		if err != nil {
			return nil, err
		}
		a.keys = v
	}
	if c.JWT.enabled() {
		v, err := newJWTVerifier(c.JWT, func() time.Time { return a.now() })
		if err != nil {
			return nil, err
		}
		a.jwt = v
	}
	return a, nil
}

// Close stops refreshing a JWKS URL.
func (a *Authenticator) Close() {
	if a.jwt != nil {
		a.jwt.close()
	}
}

// Authenticate returns the tenant of a request, or why it is refused
// (one of the Err values, wrapped).
func (a *Authenticator) Authenticate(cr Credentials) (string, error) {
	if !a.cfg.Enabled() {
		return DefaultTenant, nil
	}
	var first error
	note := func(err error) {
		if first == nil || errors.Is(first, ErrMissing) {
			first = err
		}
	}
	bearer := ""
	if v := cr.Header("authorization"); len(v) == 1 {
		if scheme, tok, ok := strings.Cut(v[0], " "); ok && strings.EqualFold(scheme, "bearer") {
			bearer = strings.TrimSpace(tok)
		}
	}
	if a.keys != nil {
		key := bearer
		if a.cfg.Header != "authorization" {
			key = ""
			if v := cr.Header(a.cfg.Header); len(v) == 1 {
				key = strings.TrimSpace(v[0])
			}
		}
		if key == "" {
			note(ErrMissing)
		} else if tenant, ok := a.keys.Get()[sha256.Sum256([]byte(key))]; ok {
			return tenant, nil
		} else if a.jwt == nil || !looksLikeJWT(key) {
			note(fmt.Errorf("%w: unknown API key", ErrInvalid))
		}
	}
	if a.jwt != nil {
		if bearer == "" {
			note(ErrMissing)
		} else if tenant, err := a.jwt.verify(bearer); err == nil {
			return tenant, nil
		} else {
			note(err)
		}
	}
	if a.cfg.CertTenant != "" {
		if len(cr.PeerCertificates) == 0 {
			note(ErrNoCert)
		} else if tenant := certTenant(cr.PeerCertificates[0], a.cfg.CertTenant); tenant != "" {
			return tenant, nil
		} else {
			note(fmt.Errorf("%w: the client certificate has no %s", ErrInvalid, a.cfg.CertTenant))
		}
	}
	return "", first
}

func certTenant(c *x509.Certificate, from string) string {
	if from == "san" {
		if len(c.DNSNames) > 0 {
			return c.DNSNames[0]
		}
		return ""
	}
	return c.Subject.CommonName
}

// looksLikeJWT: three base64url parts.
func looksLikeJWT(s string) bool { return strings.Count(s, ".") == 2 }

// minKeyLen is the shortest API key accepted in the keys file.
const minKeyLen = 16

// readKeys parses an API keys file.
func readKeys(path string) (map[[32]byte]string, error) {
	data, err := readSmallFile(path, 4<<20)
	if err != nil {
		return nil, err
	}
	keys := map[[32]byte]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"tenant key\"", path, i+1)
		}
		if len(f[1]) < minKeyLen {
			return nil, fmt.Errorf("%s:%d: the key of tenant %s has %d bytes, want at least %d", path, i+1, f[0], len(f[1]), minKeyLen)
		}
		h := sha256.Sum256([]byte(f[1]))
		if _, dup := keys[h]; dup {
			return nil, fmt.Errorf("%s:%d: a key of tenant %s is listed twice", path, i+1, f[0])
		}
		keys[h] = f[0]
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no key", path)
	}
	return keys, nil
}
