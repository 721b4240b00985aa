package node

import (
	"crypto/x509"
	"errors"

	"github.com/tailsift/tailsift/ingest"
	"github.com/tailsift/tailsift/internal/auth"
)

// authConfig maps the auth_ settings.
func (c Config) authConfig() auth.Config {
	return auth.Config{APIKeysFile: c.AuthAPIKeysFile, Header: c.AuthHeader, CertTenant: c.AuthCertTenant,
		JWT: auth.JWTConfig{JWKSFile: c.AuthJWTJWKSFile, JWKSURL: c.AuthJWTJWKSURL, Issuer: c.AuthJWTIssuer,
			Audience: c.AuthJWTAudience, TenantClaim: c.AuthJWTTenantClaim}}
}

// authReasons are auth's refusals as metric labels.
var authReasons = []error{auth.ErrMissing, auth.ErrInvalid, auth.ErrExpired, auth.ErrNoCert, auth.ErrNoClaim}

// ingestAuthenticator adapts a to the receivers.
func ingestAuthenticator(a *auth.Authenticator) ingest.Authenticator {
	return func(header func(string) []string, certs []*x509.Certificate) (string, error) {
		tenant, err := a.Authenticate(auth.Credentials{Header: header, PeerCertificates: certs})
		if err == nil {
			return tenant, nil
		}
		reason := auth.ErrInvalid.Error()
		for _, r := range authReasons {
			if errors.Is(err, r) {
				reason = r.Error()
				break
			}
		}
		return "", &ingest.AuthError{Reason: reason, Err: err}
	}
}
