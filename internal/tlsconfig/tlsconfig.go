// Package tlsconfig turns TLS settings (PEM files on disk) into
// *tls.Config values for listeners and for clients, and rereads the files
// when they change, so that certificates rotate without a restart (as
// cert-manager and Kubernetes secrets rotate them: a new file, or a
// symlink swapped to one).
//
// The files are checked on a handshake at most once per CheckInterval; a
// change is loaded whole (certificate, key and CA) or not at all: files
// that do not load (half written, a key that does not match) leave the
// last good ones serving, and the failure is reported.
package tlsconfig

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// CheckInterval is how often, at most, a handshake looks at the files.
const CheckInterval = time.Second

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
// when they change. Its methods are safe for concurrent use.
type Files struct {
	certFile, keyFile, caFile string
	interval                  time.Duration
	now                       func() time.Time
	onReload                  func(error)

	cur       atomic.Pointer[material]
	mu        sync.Mutex // one check at a time
	lastCheck time.Time
	stamps    [3]stamp

	reloads, failures atomic.Int64
}

// material is one consistent load of the files.
type material struct {
	cert *tls.Certificate // nil without certFile
	cas  *x509.CertPool   // nil without caFile
}

// stamp identifies a file's version.
type stamp struct {
	mod  time.Time
	size int64
}

// Option adjusts Files.
type Option func(*Files)

// WithClock sets the clock (tests) and the check interval.
func WithClock(now func() time.Time, interval time.Duration) Option {
	return func(f *Files) { f.now, f.interval = now, interval }
}

// OnReload is called after each attempt to load changed files: nil for a
// reload that took effect, else why the old files stay.
func OnReload(fn func(error)) Option { return func(f *Files) { f.onReload = fn } }

// loadFiles reads the files once; it fails if any does not load.
func loadFiles(certFile, keyFile, caFile string, opts []Option) (*Files, error) {
	f := &Files{certFile: certFile, keyFile: keyFile, caFile: caFile, interval: CheckInterval, now: time.Now}
	for _, o := range opts {
		o(f)
	}
	m, stamps, err := f.load()
	if err != nil {
		return nil, err
	}
	f.cur.Store(m)
	f.stamps, f.lastCheck = stamps, f.now()
	return f, nil
}

func (f *Files) load() (*material, [3]stamp, error) {
	var stamps [3]stamp
	for i, name := range []string{f.certFile, f.keyFile, f.caFile} {
		if name == "" {
			continue
		}
		st, err := os.Stat(name)
		if err != nil {
			return nil, stamps, err
		}
		stamps[i] = stamp{st.ModTime(), st.Size()}
	}
	m := &material{}
	if f.certFile != "" {
		c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
		if err != nil {
			return nil, stamps, fmt.Errorf("certificate %s with key %s: %w", f.certFile, f.keyFile, err)
		}
		m.cert = &c
	}
	if f.caFile != "" {
		pemBytes, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, stamps, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, stamps, fmt.Errorf("CA file %s: no PEM certificate in it", f.caFile)
		}
		m.cas = pool
	}
	return m, stamps, nil
}

// current returns the files' contents, reloading them first if the check
// interval has passed and a file changed.
func (f *Files) current() *material {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if now.Sub(f.lastCheck) < f.interval {
		return f.cur.Load()
	}
	f.lastCheck = now
	if !f.changed() {
		return f.cur.Load()
	}
	m, stamps, err := f.load()
	if err == nil {
		f.cur.Store(m)
		f.stamps = stamps
		f.reloads.Add(1)
	} else {
		// Try again at the next interval: a rotation may be half done.
		f.failures.Add(1)
	}
	if f.onReload != nil {
		f.onReload(err)
	}
	return f.cur.Load()
}

func (f *Files) changed() bool {
	for i, name := range []string{f.certFile, f.keyFile, f.caFile} {
		if name == "" {
			continue
		}
		st, err := os.Stat(name)
		if err != nil || (stamp{st.ModTime(), st.Size()}) != f.stamps[i] {
			return true
		}
	}
	return false
}

// Stats counts reloads that took effect and that failed.
func (f *Files) Stats() (reloads, failures int64) { return f.reloads.Load(), f.failures.Load() }

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
			return f.current().cert, nil
		},
	}
	if s.ClientCAFile != "" {
		// Verified here rather than by ClientCAs, which a config fixes:
		// the CAs rotate too.
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			_, err := verify(cs.PeerCertificates, f.cur.Load().cas, "", x509.ExtKeyUsageClientAuth)
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
			return cf.current().cert, nil
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
			_, err := verify(cs.PeerCertificates, cf.current().cas, name, x509.ExtKeyUsageServerAuth)
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
