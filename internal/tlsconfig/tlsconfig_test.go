package tlsconfig

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/reloadfile"
	"github.com/tailsift/tailsift/internal/testpki"
)

// serve accepts TLS connections with cfg on loopback; each is told the
// common name of its client certificate ("-" for none), then closed.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { lis.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tc := c.(*tls.Conn)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				name := "-"
				if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
					name = pc[0].Subject.CommonName
				}
				io.WriteString(tc, name)
			}()
		}
	}()
	return lis.Addr().String()
}

// dial connects with cfg and returns what the server said and the common
// name of the server's certificate.
func dial(addr string, cfg *tls.Config) (said, server string, err error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return "", "", err
	}
	if len(b) == 0 {
		return "", "", errors.New("the server closed the connection without a word")
	}
	return string(b), c.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// fakeClock is a clock the test moves.

func TestServerTLS(t *testing.T) {
	ca, other := testpki.NewCA(t, "ca"), testpki.NewCA(t, "other")
	files := testpki.WriteFiles(t, t.TempDir(), "server", ca.Server(t, "server-1"), ca)
	cfg, _, err := ServerConfig(Server{CertFile: files.Cert, KeyFile: files.Key})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)

	said, server, err := dial(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil || said != "-" || server != "server-1" {
		t.Errorf("a client trusting the CA: %q from %q, %v", said, server, err)
	}
	if _, _, err := dial(addr, &tls.Config{RootCAs: other.Pool(), ServerName: "127.0.0.1"}); err == nil {
		t.Error("a client trusting another CA connected")
	}
	// A plaintext client gets no answer: its bytes are not a handshake.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n")
	if b, _ := io.ReadAll(c); strings.Contains(string(b), "-") {
		t.Errorf("a plaintext client was answered %q", b)
	}
}

func TestMutualTLS(t *testing.T) {
	ca, other := testpki.NewCA(t, "ca"), testpki.NewCA(t, "other")
	dir := t.TempDir()
	files := testpki.WriteFiles(t, dir, "server", ca.Server(t, "server-1"), ca)
	cfg, _, err := ServerConfig(Server{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.CA, MinVersion: "1.3"})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	client := func(l *testpki.Leaf) *tls.Config {
		c := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
		if l != nil {
			c.Certificates = []tls.Certificate{l.TLS(t)}
		}
		return c
	}
	if said, _, err := dial(addr, client(ca.Client(t, "collector-a"))); err != nil || said != "collector-a" {
		t.Errorf("a client with a certificate of the CA: %q, %v", said, err)
	}
	if said, _, err := dial(addr, client(nil)); err == nil {
		t.Errorf("a client without a certificate was answered %q", said)
	}
	if said, _, err := dial(addr, client(other.Client(t, "intruder"))); err == nil {
		t.Errorf("a client with another CA's certificate was answered %q", said)
	}
	if said, _, err := dial(addr, client(ca.Server(t, "not-a-client"))); err == nil {
		t.Errorf("a server certificate used as a client's was answered %q", said)
	}
	old := client(ca.Client(t, "old"))
	old.MaxVersion = tls.VersionTLS12
	if _, _, err := dial(addr, old); err == nil {
		t.Error("a TLS 1.2 client connected to a listener with min_version 1.3")
	}
}

// TestServerRotation: new files on disk are served from the next check on,
// without a restart; files that do not load leave the last good ones
// serving, and are tried again.
func TestServerRotation(t *testing.T) {
	ca, ca2 := testpki.NewCA(t, "ca"), testpki.NewCA(t, "ca-2")
	dir := t.TempDir()
	files := testpki.WriteFiles(t, dir, "server", ca.Server(t, "first"), ca)
	clock := otlptest.NewFakeClock(time.Unix(1e9, 0))
	var reloadErrs []error
	var mu sync.Mutex
	cfg, f, err := ServerConfig(Server{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.CA},
		reloadfile.WithClock(clock.Now, time.Second), reloadfile.OnReload(func(err error) { mu.Lock(); reloadErrs = append(reloadErrs, err); mu.Unlock() }))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, cfg)
	trust := func(roots *testpki.CA, client *testpki.Leaf) *tls.Config {
		return &tls.Config{RootCAs: roots.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{client.TLS(t)}}
	}
	serverName := func(c *tls.Config) string {
		t.Helper()
		_, name, err := dial(addr, c)
		if err != nil {
			return "error: " + err.Error()
		}
		return name
	}
	if got := serverName(trust(ca, ca.Client(t, "c"))); got != "first" {
		t.Fatalf("before the rotation: %s", got)
	}

	// Rotate to a new CA and certificate, as a certificate manager does.
	testpki.WriteFiles(t, dir, "server", ca2.Server(t, "second"), ca2)
	if got := serverName(trust(ca, ca.Client(t, "c"))); got != "first" {
		t.Errorf("within the check interval: %s, want the first certificate still", got)
	}
	clock.Add(time.Second)
	if got := serverName(trust(ca2, ca2.Client(t, "c"))); got != "second" {
		t.Errorf("after the interval: %s, want the second certificate", got)
	}
	if got := serverName(trust(ca2, ca.Client(t, "c"))); !strings.HasPrefix(got, "error") {
		t.Errorf("a client certificate of the old CA after the rotation: %s, want refused", got)
	}

	// A key that does not match its certificate: the second pair stays.
	testpki.WriteFile(t, files.Key, ca.Server(t, "mismatch").KeyPEM, 0o600)
	clock.Add(time.Second)
	if got := serverName(trust(ca2, ca2.Client(t, "c"))); got != "second" {
		t.Errorf("after a bad rotation: %s, want the second certificate still", got)
	}
	reloads, failures := f.Stats()
	mu.Lock()
	defer mu.Unlock()
	if reloads != 1 || failures != 1 || len(reloadErrs) != 2 || reloadErrs[0] != nil || reloadErrs[1] == nil {
		t.Errorf("reloads %d, failures %d, reported %v; want 1, 1, [nil, an error]", reloads, failures, reloadErrs)
	}
}

// TestClientRotation: a client verifies servers against its current CA
// file, presents its current certificate, and checks the name it dials.
func TestClientRotation(t *testing.T) {
	ca, ca2 := testpki.NewCA(t, "ca"), testpki.NewCA(t, "ca-2")
	dir := t.TempDir()
	serverFiles := testpki.WriteFiles(t, dir, "server", ca.Server(t, "server"), ca)
	// The server trusts clients of either CA, and serves ca's certificate
	// until the test rotates it to ca2's.
	clientCAs := dir + "/clients.crt"
	testpki.WriteFile(t, clientCAs, append(append([]byte{}, ca.PEM...), ca2.PEM...), 0o644)
	sclock := otlptest.NewFakeClock(time.Unix(1e9, 0))
	scfg, _, err := ServerConfig(Server{CertFile: serverFiles.Cert, KeyFile: serverFiles.Key, ClientCAFile: clientCAs}, reloadfile.WithClock(sclock.Now, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, scfg)

	clientFiles := testpki.WriteFiles(t, dir, "client", ca.Client(t, "client-1"), ca)
	cclock := otlptest.NewFakeClock(time.Unix(1e9, 0))
	cf, err := LoadClient(Client{CAFile: clientFiles.CA, CertFile: clientFiles.Cert, KeyFile: clientFiles.Key}, reloadfile.WithClock(cclock.Now, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if said, _, err := dial(addr, cf.For("127.0.0.1")); err != nil || said != "client-1" {
		t.Fatalf("before the rotation: %q, %v", said, err)
	}
	if _, _, err := dial(addr, cf.For("collector.example")); err == nil {
		t.Error("a server whose certificate does not name the dialled host was trusted")
	}

	// The server moves to ca2; the client, until it reloads, refuses it.
	testpki.WriteFiles(t, dir, "server", ca2.Server(t, "server"), ca2)
	sclock.Add(time.Second)
	if _, _, err := dial(addr, cf.For("127.0.0.1")); err == nil {
		t.Error("the client trusted a server certificate of a CA it does not know yet")
	}
	testpki.WriteFiles(t, dir, "client", ca2.Client(t, "client-2"), ca2)
	cclock.Add(time.Second)
	if said, _, err := dial(addr, cf.For("127.0.0.1")); err != nil || said != "client-2" {
		t.Errorf("after both rotated: %q, %v; want client-2 accepted", said, err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		s    Server
		want string
	}{
		{Server{CertFile: "a"}, "tls_cert_file and tls_key_file must be set together"},
		{Server{ClientCAFile: "ca"}, "tls_client_ca_file needs tls_cert_file"},
		{Server{CertFile: "a", KeyFile: "b", MinVersion: "1.1"}, `tls_min_version "1.1"`},
	} {
		if err := tc.s.Validate("tls_"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.s, err, tc.want)
		}
	}
	if err := (Server{}).Validate("tls_"); err != nil {
		t.Errorf("plaintext: %v", err)
	}
	if err := (Client{CertFile: "a"}).Validate("peer_tls_"); err == nil || !strings.Contains(err.Error(), "peer_tls_cert_file and peer_tls_key_file") {
		t.Errorf("client cert without key: %v", err)
	}
	if _, _, err := ServerConfig(Server{CertFile: "/nonexistent.crt", KeyFile: "/nonexistent.key"}); err == nil {
		t.Error("ServerConfig with missing files succeeded")
	}
}
