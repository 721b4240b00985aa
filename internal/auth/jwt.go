package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tailsift/tailsift/internal/reloadfile"
)

// JWTConfig checks bearer tokens: signed (RS256, ES256 or EdDSA; never
// "none", never HMAC) by a key of the JWKS, with an expiry, the issuer and
// audience if set, and the tenant claim.
type JWTConfig struct {
	JWKSFile string // a JWKS on disk, reread when it changes
	JWKSURL  string // or fetched from here, again every RefreshInterval
	Issuer   string
	Audience string
	// TenantClaim names the claim holding the tenant. Default "tenant".
	TenantClaim string
	// ClockSkew is the leeway on exp, nbf and iat. Default 1m.
	ClockSkew time.Duration
	// RefreshInterval is how often JWKSURL is fetched. Default 5m.
	RefreshInterval time.Duration
}

func (c JWTConfig) enabled() bool { return c.JWKSFile != "" || c.JWKSURL != "" }

func (c JWTConfig) validate(prefix string) error {
	var errs []error
	if c.JWKSFile != "" && c.JWKSURL != "" {
		errs = append(errs, fmt.Errorf("%sjwks_file and %sjwks_url: set one", prefix, prefix))
	}
	if !c.enabled() && (c.Issuer != "" || c.Audience != "") {
		errs = append(errs, fmt.Errorf("%sissuer and %saudience need %sjwks_file or %sjwks_url", prefix, prefix, prefix, prefix))
	}
	if c.ClockSkew < 0 || c.RefreshInterval < 0 {
		errs = append(errs, fmt.Errorf("%sclock_skew must not be negative", prefix))
	}
	return errors.Join(errs...)
}

// algorithms are the signatures accepted: asymmetric only, so that a
// public JWKS cannot sign tokens.
var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

type jwtVerifier struct {
	cfg  JWTConfig
	now  func() time.Time
	file *reloadfile.Value[*jose.JSONWebKeySet]
	url  atomic.Pointer[jose.JSONWebKeySet]

	stop chan struct{}
	wg   sync.WaitGroup
}

func newJWTVerifier(c JWTConfig, now func() time.Time) (*jwtVerifier, error) {
	if c.TenantClaim == "" {
		c.TenantClaim = "tenant"
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = time.Minute
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = 5 * time.Minute
	}
	v := &jwtVerifier{cfg: c, now: now, stop: make(chan struct{})}
	if c.JWKSFile != "" {
		f, err := reloadfile.New(func() (*jose.JSONWebKeySet, error) {
			b, err := readSmallFile(c.JWKSFile, maxJWKS)
			if err != nil {
				return nil, err
			}
			return parseJWKS(b)
		}, []string{c.JWKSFile})
		if err != nil {
			return nil, err
		}
		v.file = f
		return v, nil
	}
	set, err := fetchJWKS(c.JWKSURL)
	if err != nil {
		return nil, err
	}
	v.url.Store(set)
	v.wg.Add(1)
	go v.refresh()
	return v, nil
}

// maxJWKS bounds a JWKS document.
const maxJWKS = 1 << 20

func parseJWKS(b []byte) (*jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("JWKS: no key")
	}
	return &set, nil
}

func fetchJWKS(url string) (*jose.JSONWebKeySet, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("JWKS %s: HTTP %d", url, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKS+1))
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", url, err)
	}
	if len(b) > maxJWKS {
		return nil, fmt.Errorf("JWKS %s: larger than %d bytes", url, maxJWKS)
	}
	return parseJWKS(b)
}

// refresh fetches the JWKS URL every interval; a failed fetch keeps the
// last good set.
func (v *jwtVerifier) refresh() {
	defer v.wg.Done()
	t := time.NewTicker(v.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-v.stop:
			return
		case <-t.C:
			if set, err := fetchJWKS(v.cfg.JWKSURL); err == nil {
				v.url.Store(set)
			}
		}
	}
}

func (v *jwtVerifier) close() {
	close(v.stop)
	v.wg.Wait()
}

func (v *jwtVerifier) keys() *jose.JSONWebKeySet {
	if v.file != nil {
		return v.file.Get()
	}
	return v.url.Load()
}

// verify checks a token and returns its tenant.
func (v *jwtVerifier) verify(token string) (string, error) {
	tok, err := jwt.ParseSigned(token, algorithms)
	if err != nil {
		return "", fmt.Errorf("%w: not a signed JWT of an accepted algorithm", ErrInvalid)
	}
	set := v.keys()
	var candidates []jose.JSONWebKey
	if kid := tok.Headers[0].KeyID; kid != "" {
		candidates = set.Key(kid)
	} else {
		candidates = set.Keys
	}
	var std jwt.Claims
	var extra map[string]any
	verified := false
	for _, k := range candidates {
		pub := k.Public() // invalid for symmetric keys: a JWKS never signs with a shared secret
		if pub.Valid() && tok.Claims(pub.Key, &std, &extra) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return "", fmt.Errorf("%w: no key of the JWKS verifies the signature", ErrInvalid)
	}
	if std.Expiry == nil {
		return "", fmt.Errorf("%w: the token has no expiry", ErrInvalid)
	}
	exp := jwt.Expected{Issuer: v.cfg.Issuer, Time: v.now()}
	if v.cfg.Audience != "" {
		exp.AnyAudience = jwt.Audience{v.cfg.Audience}
	}
	if err := std.ValidateWithLeeway(exp, v.cfg.ClockSkew); err != nil {
		if errors.Is(err, jwt.ErrExpired) {
			return "", ErrExpired
		}
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	tenant, _ := extra[v.cfg.TenantClaim].(string)
	if tenant == "" {
		return "", ErrNoClaim
	}
	return tenant, nil
}

// readSmallFile reads a file of at most limit bytes.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}
