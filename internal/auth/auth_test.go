package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// headers makes a Credentials.Header from name, value pairs.
func headers(kv ...string) func(string) []string {
	return func(name string) []string {
		var out []string
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == name {
				out = append(out, kv[i+1])
			}
		}
		return out
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAPIKeys(t *testing.T) {
	keys := writeFile(t, "keys", "# tenant key\nteam-a aaaaaaaaaaaaaaaa-key\n\nteam-b bbbbbbbbbbbbbbbb-key\n")
	a, err := New(Config{APIKeysFile: keys})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		h      func(string) []string
		tenant string
		err    error
	}{
		{headers("authorization", "Bearer aaaaaaaaaaaaaaaa-key"), "team-a", nil},
		{headers("authorization", "bearer bbbbbbbbbbbbbbbb-key"), "team-b", nil},
		{headers("authorization", "Bearer cccccccccccccccc-key"), "", ErrInvalid},
		{headers("authorization", "Basic aaaaaaaaaaaaaaaa-key"), "", ErrMissing},
		{headers(), "", ErrMissing},
		{headers("authorization", "Bearer aaaaaaaaaaaaaaaa-key", "authorization", "Bearer x"), "", ErrMissing},
	} {
		tenant, err := a.Authenticate(Credentials{Header: tc.h})
		if tenant != tc.tenant || !errors.Is(err, tc.err) {
			t.Errorf("%v: %q, %v; want %q, %v", tc.h("authorization"), tenant, err, tc.tenant, tc.err)
		}
	}
	x, err := New(Config{APIKeysFile: keys, Header: "X-Api-Key"})
	if err != nil {
		t.Fatal(err)
	}
	if tenant, err := x.Authenticate(Credentials{Header: headers("x-api-key", "aaaaaaaaaaaaaaaa-key")}); tenant != "team-a" || err != nil {
		t.Errorf("x-api-key: %q, %v", tenant, err)
	}
	if _, err := x.Authenticate(Credentials{Header: headers("authorization", "Bearer aaaaaaaaaaaaaaaa-key")}); !errors.Is(err, ErrMissing) {
		t.Errorf("the key in authorization when the header is x-api-key: %v", err)
	}
	for content, want := range map[string]string{
		"team-a short\n":                           "at least 16",
		"team-a aaaaaaaaaaaaaaaa and more\n":       `want "tenant key"`,
		"a aaaaaaaaaaaaaaaa\nb aaaaaaaaaaaaaaaa\n": "listed twice",
		"# nothing\n":                              "no key",
	} {
		if _, err := New(Config{APIKeysFile: writeFile(t, "k", content)}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("keys file %q: %v, want %q", content, err, want)
		}
	}
}

// signer signs tokens with one key of a JWKS.
type signer struct {
	alg  jose.SignatureAlgorithm
	key  any
	pub  any
	kid  string
	opts *jose.SignerOptions
}

func newSigners(t *testing.T) []signer {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return []signer{
		{alg: jose.ES256, key: ec, pub: &ec.PublicKey, kid: "ec"},
		{alg: jose.RS256, key: rs, pub: &rs.PublicKey, kid: "rs"},
		{alg: jose.EdDSA, key: ed, pub: edPub, kid: "ed"},
	}
}

func (s signer) sign(t *testing.T, claims ...any) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", s.kid))
	if err != nil {
		t.Fatal(err)
	}
	b := jwt.Signed(sg)
	for _, c := range claims {
		b = b.Claims(c)
	}
	tok, err := b.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func jwks(t *testing.T, signers ...signer) string {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, s := range signers {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: s.pub, KeyID: s.kid, Algorithm: string(s.alg), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestJWT: tokens of every accepted algorithm pass with the tenant claim;
// expired, not yet valid, wrong audience or issuer, signed by a key not in
// the JWKS, unsigned (alg none), HMAC-signed with the public key as the
// secret, without expiry or without the tenant claim, each is refused with
// its reason.
func TestJWT(t *testing.T) {
	signers := newSigners(t)
	stranger := newSigners(t)[0]
	now := time.Unix(1_800_000_000, 0)
	a, err := New(Config{JWT: JWTConfig{JWKSFile: writeFile(t, "jwks.json", jwks(t, signers...)),
		Issuer: "https://idp.example", Audience: "tailsift", TenantClaim: "org", ClockSkew: 30 * time.Second}},
		WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	std := func(exp time.Duration) jwt.Claims {
		return jwt.Claims{Issuer: "https://idp.example", Audience: jwt.Audience{"tailsift", "other"},
			Expiry: jwt.NewNumericDate(now.Add(exp)), IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute))}
	}
	org := map[string]any{"org": "team-a"}
	check := func(name, token, tenant string, want error) {
		t.Helper()
		got, err := a.Authenticate(Credentials{Header: headers("authorization", "Bearer "+token)})
		if got != tenant || !errors.Is(err, want) {
			t.Errorf("%s: %q, %v; want %q, %v", name, got, err, tenant, want)
		}
	}
	for _, s := range signers {
		check("valid "+string(s.alg), s.sign(t, std(time.Hour), org), "team-a", nil)
	}
	es := signers[0]
	check("expired, beyond the skew", es.sign(t, std(-time.Minute), org), "", ErrExpired)
	check("expired, within the skew", es.sign(t, std(-10*time.Second), org), "team-a", nil)
	notYet := std(time.Hour)
	notYet.NotBefore = jwt.NewNumericDate(now.Add(time.Hour))
	check("not yet valid", es.sign(t, notYet, org), "", ErrInvalid)
	aud := std(time.Hour)
	aud.Audience = jwt.Audience{"someone-else"}
	check("wrong audience", es.sign(t, aud, org), "", ErrInvalid)
	iss := std(time.Hour)
	iss.Issuer = "https://evil.example"
	check("wrong issuer", es.sign(t, iss, org), "", ErrInvalid)
	check("a key not in the JWKS", stranger.sign(t, std(time.Hour), org), "", ErrInvalid)
	noExp := std(time.Hour)
	noExp.Expiry = nil
	check("no expiry", es.sign(t, noExp, org), "", ErrInvalid)
	check("no tenant claim", es.sign(t, std(time.Hour)), "", ErrNoClaim)

	claims := map[string]any{"iss": "https://idp.example", "aud": "tailsift", "exp": now.Add(time.Hour).Unix(), "org": "team-a"}
	check("alg none", b64(map[string]string{"alg": "none", "typ": "JWT"})+"."+b64(claims)+".", "", ErrInvalid)
	// HS256 with the RSA public key's DER as the secret: the classic
	// algorithm confusion.
	der, _ := x509.MarshalPKIXPublicKey(signers[1].pub)
	unsigned := b64(map[string]string{"alg": "HS256", "typ": "JWT", "kid": "rs"}) + "." + b64(claims)
	m := hmac.New(sha256.New, der)
	m.Write([]byte(unsigned))
	check("HS256 with the public key", unsigned+"."+base64.RawURLEncoding.EncodeToString(m.Sum(nil)), "", ErrInvalid)
	check("garbage", "not.a.jwt", "", ErrInvalid)
	check("no token", "", "", ErrMissing)
}

// TestJWKSURL: the JWKS is fetched from a URL, and fetched again on the
// refresh interval, so a rotated signing key is accepted.
func TestJWKSURL(t *testing.T) {
	first, second := newSigners(t)[0], newSigners(t)[0]
	second.kid = "ec-2"
	var doc atomicString
	doc.set(jwks(t, first))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(doc.get())) }))
	defer srv.Close()
	a, err := New(Config{JWT: JWTConfig{JWKSURL: srv.URL, RefreshInterval: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	claims := jwt.Claims{Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour))}
	tenant := map[string]any{"tenant": "team-b"}
	auth := func(tok string) (string, error) {
		return a.Authenticate(Credentials{Header: headers("authorization", "Bearer "+tok)})
	}
	if got, err := auth(first.sign(t, claims, tenant)); got != "team-b" || err != nil {
		t.Fatalf("first key: %q, %v", got, err)
	}
	doc.set(jwks(t, second))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, err := auth(second.sign(t, claims, tenant)); got == "team-b" && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rotated key was not fetched within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := New(Config{JWT: JWTConfig{JWKSURL: "http://127.0.0.1:1/jwks"}}); err == nil {
		t.Error("an unreachable JWKS URL: New succeeded")
	}
}

// TestCertTenant: with mutual TLS the tenant can be the client
// certificate's common name or first DNS name.
func TestCertTenant(t *testing.T) {
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "collector-a"}, DNSNames: []string{"team-a.collectors"}}
	for from, want := range map[string]string{"subject": "collector-a", "san": "team-a.collectors"} {
		a, err := New(Config{CertTenant: from})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := a.Authenticate(Credentials{Header: headers(), PeerCertificates: []*x509.Certificate{cert}}); got != want || err != nil {
			t.Errorf("%s: %q, %v", from, got, err)
		}
		if _, err := a.Authenticate(Credentials{Header: headers()}); !errors.Is(err, ErrNoCert) {
			t.Errorf("%s without a certificate: %v", from, err)
		}
	}
	if tenant, err := (&Authenticator{}).Authenticate(Credentials{Header: headers()}); tenant != DefaultTenant || err != nil {
		t.Errorf("no method: %q, %v", tenant, err)
	}
}

// FuzzAuthenticate: any authorization or key header is refused or names
// a configured tenant; never a panic.
func FuzzAuthenticate(f *testing.F) {
	for _, s := range []string{"Bearer aaaaaaaaaaaaaaaa-key", "Bearer a.b.c", "bearer", "Bearer ", "Basic x", "Bearer e30.e30.", "Bearer ....", " Bearer  x "} {
		f.Add(s)
	}
	keys := filepath.Join(f.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("team-a aaaaaaaaaaaaaaaa-key\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	a, err := New(Config{APIKeysFile: keys, CertTenant: "subject"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value string) {
		tenant, err := a.Authenticate(Credentials{Header: headers("authorization", value, "x-api-key", value)})
		if (err == nil) != (tenant == "team-a") {
			t.Fatalf("%q: tenant %q, err %v", value, tenant, err)
		}
	})
}

type atomicString struct{ v atomic.Value }

func (s *atomicString) set(v string) { s.v.Store(v) }
func (s *atomicString) get() string  { return s.v.Load().(string) }
