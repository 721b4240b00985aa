// Package tlsconfig turns TLS settings (PEM files on disk) into
// *tls.Config values for listeners and for clients, and rereads the files
// when they change (reloadfile: checked on a handshake at most once a
// second, loaded whole or not at all), so that certificates and CAs rotate
// without a restart.
package tlsconfig

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/tailsift/tailsift/internal/reloadfile"
)

// Versions maps the accepted min_version values to their TLS versions.
var versions = map[string]uint16{"": tls.VersionTLS12, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// Server is a listener's TLS. The zero value is plaintext.
type Server struct {
	CertFile string // PEM certificate chain; set with KeyFile to serve TLS
	KeyFile  string // PEM private key
	// ClientCAFile, when set, requires every client to present a
	// certificate issued by one of its CAs (mutual TLS).
	ClientCAFile string
	MinVersion   string // "1.2" (the default) or "1.3"
}

// Enabled reports whether s serves TLS.
func (s Server) Enabled() bool { return s.CertFile != "" || s.KeyFile != "" || s.ClientCAFile != "" }

// Validate checks s; errors name settings as prefix + "cert_file" and so
// on (prefix "tls_" gives tls_cert_file).
func (s Server) Validate(prefix string) error {
	var errs []error
	if (s.CertFile == "") != (s.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%scert_file and %skey_file must be set together", prefix, prefix))
	}
	if s.ClientCAFile != "" && s.CertFile == "" {
		errs = append(errs, fmt.Errorf("%sclient_ca_file needs %scert_file and %skey_file: client certificates are asked for over TLS", prefix, prefix, prefix))
	}
	if _, ok := versions[s.MinVersion]; !ok {
		errs = append(errs, fmt.Errorf("%smin_version %q: want 1.2 or 1.3", prefix, s.MinVersion))
	}
	return errors.Join(errs...)
}

// Client is how a client dials a TLS server. The zero value trusts the
// system's CAs and presents no certificate.
type Client struct {
	CAFile     string // PEM CAs to trust instead of the system's
	CertFile   string // client certificate (mutual TLS), with KeyFile
	KeyFile    string
	ServerName string // the name to verify, if not the dialled host's
	MinVersion string // "1.2" (the default) or "1.3"
}

// Validate checks c; errors name settings as for Server.Validate.
func (c Client) Validate(prefix string) error {
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%scert_file and %skey_file must be set together", prefix, prefix))
	}
	if _, ok := versions[c.MinVersion]; !ok {
		errs = append(errs, fmt.Errorf("%smin_version %q: want 1.2 or 1.3", prefix, c.MinVersion))
	}
	return errors.Join(errs...)
}

// Files holds the current contents of a set of TLS files and reloads them
// when they change (see reloadfile).
type Files struct {
	*reloadfile.Value[*material]
}

// material is one consistent load of the files.
type material struct {
	cert *tls.Certificate // nil without certFile
	cas  *x509.CertPool   // nil without caFile
}

// Option adjusts how files are watched: reloadfile.WithClock,
// reloadfile.OnReload.
type Option = reloadfile.Option

// loadFiles reads the files once; it fails if any does not load.
func loadFiles(certFile, keyFile, caFile string, opts []Option) (*Files, error) {
	v, err := reloadfile.New(func() (*material, error) { return load(certFile, keyFile, caFile) },
		[]string{certFile, keyFile, caFile}, opts...)
	if err != nil {
		return nil, err
	}
	return &Files{v}, nil
}

func load(certFile, keyFile, caFile string) (*material, error) {
	m := &material{}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("certificate %s with key %s: %w", certFile, keyFile, err)
		}
		m.cert = &c
	}
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate in it", caFile)
		}
		m.cas = pool
	}
	return m, nil
}

// ServerConfig loads s's files and returns a listener's config that uses
// the current ones on each handshake, and the Files for its stats. With a
// ClientCAFile, a client without a certificate that chains to one of its
// CAs is refused in the handshake.
func ServerConfig(s Server, opts ...Option) (*tls.Config, *Files, error) {
	if err := s.Validate(""); err != nil {
		return nil, nil, err
	}
	f, err := loadFiles(s.CertFile, s.KeyFile, s.ClientCAFile, opts)
	if err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{
		MinVersion: versions[s.MinVersion],
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return f.Get().cert, nil
		},
	}
	if s.ClientCAFile != "" {
		// Verified here rather than by ClientCAs, which a config fixes:
		// the CAs rotate too.
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			_, err := verify(cs.PeerCertificates, f.Current().cas, "", x509.ExtKeyUsageClientAuth)
			return err
		}
	}
	return cfg, f, nil
}

// ClientFiles is a client's TLS settings with their files loaded; For
// makes the config to dial one host.
type ClientFiles struct {
	c Client
	*Files
}

// LoadClient loads c's files. Without a CAFile the system's CAs are
// trusted (and only the client certificate, if any, is watched).
func LoadClient(c Client, opts ...Option) (*ClientFiles, error) {
	if err := c.Validate(""); err != nil {
		return nil, err
	}
	f, err := loadFiles(c.CertFile, c.KeyFile, c.CAFile, opts)
	if err != nil {
		return nil, err
	}
	return &ClientFiles{c: c, Files: f}, nil
}

// For returns the config to dial host (a name or an IP address, without
// the port): it verifies the server's certificate for Client.ServerName,
// or else for host, against the current CAs, and presents the current
// client certificate.
func (cf *ClientFiles) For(host string) *tls.Config {
	name := cmp.Or(cf.c.ServerName, host)
	cfg := &tls.Config{MinVersion: versions[cf.c.MinVersion], ServerName: name}
	if cf.c.CertFile != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cf.Get().cert, nil
		}
	}
	if cf.c.CAFile != "" {
		// crypto/tls would verify against a fixed RootCAs; the CAs rotate,
		// so this makes the same checks against the current ones.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if name == "" {
				return errors.New("tls: no server name to verify the certificate for")
			}
			_, err := verify(cs.PeerCertificates, cf.Get().cas, name, x509.ExtKeyUsageServerAuth)
			return err
		}
	}
	return cfg
}

// verify checks that certs[0] chains to roots through certs[1:] for usage
// and, if name is set, is valid for name.
func verify(certs []*x509.Certificate, roots *x509.CertPool, name string, usage x509.ExtKeyUsage) ([][]*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, errors.New("tls: no certificate presented")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	return certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       name,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
}
