package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tailsift/tailsift/internal/testpki"
)

// TestForwardClientSettings: how the forward_* settings choose TLS,
// compression and headers, and the errors that name what to fix.
func TestForwardClientSettings(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TAILSIFT_TEST_KEY", "from-the-env")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	testpki.WriteFile(t, caFile, testpki.NewCA(t, "ca").PEM, 0o644)
	for _, tc := range []struct {
		name        string
		adjust      func(*Config)
		tls         bool
		compression string
		headers     map[string]string
	}{
		{"gRPC to another host: TLS and gzip", func(c *Config) { c.Forward = "tempo.internal:4317" }, true, "gzip", nil},
		{"gRPC to loopback: plaintext, no compression", func(c *Config) { c.Forward = "127.0.0.1:4317" }, false, "", nil},
		{"gRPC to localhost with a CA: TLS", func(c *Config) { c.Forward, c.ForwardTLSCAFile = "localhost:4317", caFile }, true, "", nil},
		{"gRPC, insecure", func(c *Config) { c.Forward, c.ForwardInsecure = "tempo.internal:4317", true }, false, "gzip", nil},
		{"https", func(c *Config) { c.Forward = "https://api.example.com" }, true, "gzip", nil},
		{"http to loopback", func(c *Config) { c.Forward, c.ForwardCompression = "http://[::1]:4318", CompressionGzip }, false, "gzip", nil},
		{"http, insecure, no compression", func(c *Config) {
			c.Forward, c.ForwardInsecure, c.ForwardCompression = "http://collector:4318", true, CompressionNone
		}, false, "", nil},
		{"headers: literal, env, file", func(c *Config) {
			c.Forward = "https://api.example.com"
			c.ForwardHeaders = []string{"x-scope-orgid=team-a", "x-api-key=${env:TAILSIFT_TEST_KEY}", "authorization=${file:" + keyFile + "}"}
		}, true, "gzip", map[string]string{"x-scope-orgid": "team-a", "x-api-key": "from-the-env", "authorization": "from-a-file"}},
	} {
		c := DefaultConfig()
		tc.adjust(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", tc.name, err)
			continue
		}
		tlsCfg, headers, compression, secrets, err := c.forwardClient()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if (tlsCfg != nil) != tc.tls || compression != tc.compression || len(headers) != len(tc.headers) || len(secrets) != len(tc.headers) {
			t.Errorf("%s: TLS %v, compression %q, headers %v; want TLS %v, %q, %v", tc.name, tlsCfg != nil, compression, headers, tc.tls, tc.compression, tc.headers)
		}
		for k, v := range tc.headers {
			if headers[k] != v {
				t.Errorf("%s: header %s = %q, want %q", tc.name, k, headers[k], v)
			}
		}
	}

	for _, tc := range []struct {
		adjust func(*Config)
		want   string
	}{
		{func(c *Config) { c.Forward = "http://collector:4318" }, "forward_insecure"},
		{func(c *Config) { c.Forward, c.ForwardTLSCAFile = "http://127.0.0.1:4318", keyFile }, "use https://"},
		{func(c *Config) { c.Forward, c.ForwardInsecure = "https://api.example.com", true }, "asks for plaintext"},
		{func(c *Config) { c.ForwardHeaders = []string{"a=b"} }, "apply to OTLP destinations"}, // stdout
		{func(c *Config) { c.Forward, c.ForwardCompression = "127.0.0.1:4317", "zstd" }, "forward_compression"},
		{func(c *Config) { c.Forward, c.ForwardHeaders = "127.0.0.1:4317", []string{"novalue"} }, "not name=value"},
		{func(c *Config) { c.Forward, c.ForwardHeaders = "127.0.0.1:4317", []string{"k=${vault:x}"} }, "${env:VAR}"},
		{func(c *Config) { c.Forward, c.ForwardTLSCertFile = "127.0.0.1:4317", keyFile }, "forward_tls_key_file"},
	} {
		c := DefaultConfig()
		tc.adjust(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Validate = %v, want an error about %q", c.Forward, err, tc.want)
		}
	}

	// Files and variables are read when the node starts: their errors then.
	c := DefaultConfig()
	c.Forward, c.ForwardHeaders = "127.0.0.1:4317", []string{"x-api-key=${env:TAILSIFT_TEST_UNSET}"}
	if _, _, _, _, err := c.forwardClient(); err == nil || !strings.Contains(err.Error(), "TAILSIFT_TEST_UNSET") {
		t.Errorf("an unset variable: %v", err)
	}
	c.ForwardHeaders = []string{"x-api-key=${file:/nonexistent/key}"}
	if _, _, _, _, err := c.forwardClient(); err == nil || !strings.Contains(err.Error(), "/nonexistent/key") {
		t.Errorf("a missing file: %v", err)
	}
}

// FuzzParseHeader: any forward_headers entry is parsed or refused, never
// a panic, and a parsed one has a name and exactly one source.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{"a=b", "x-api-key=${env:K}", "k=${file:/p}", "=", "k=${", "k=${env:}", "k=${}x}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, src, err := parseHeader(s)
		if err != nil {
			return
		}
		n := 0
		for _, v := range []string{src.env, src.file} {
			if v != "" {
				n++
			}
		}
		if name == "" || n > 1 || (n == 1 && src.literal != "") {
			t.Fatalf("parseHeader(%q) = %q, %+v", s, name, src)
		}
	})
}
