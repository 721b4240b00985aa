package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/tailsift/tailsift/internal/tlsconfig"
)

// Forward compression settings.
const (
	CompressionAuto = "auto" // gzip to any host but a loopback one
	CompressionGzip = "gzip"
	CompressionNone = "none"
)

// forwardTarget describes the forward destination for its client: its
// protocol, its host, and whether the host is this machine.
type forwardTarget struct {
	otlp, https, http bool // an OTLP destination; https:// or http:// (else gRPC)
	host              string
	loopback          bool
}

func (c Config) forwardTarget() forwardTarget {
	var t forwardTarget
	switch {
	case c.Forward == "stdout" || strings.HasPrefix(c.Forward, "file:"):
		return t
	case strings.HasPrefix(c.Forward, "https://"), strings.HasPrefix(c.Forward, "http://"):
		u, err := url.Parse(c.Forward)
		if err != nil {
			return t
		}
		t.host, t.https, t.http = u.Hostname(), u.Scheme == "https", u.Scheme == "http"
	default:
		host, _, err := net.SplitHostPort(c.Forward)
		if err != nil {
			return t
		}
		t.host = host
	}
	t.otlp = true
	ip := net.ParseIP(t.host)
	t.loopback = t.host == "localhost" || ip != nil && ip.IsLoopback()
	return t
}

// forwardTLSFiles is the client TLS the forward_tls_* settings give.
func (c Config) forwardTLSFiles() tlsconfig.Client {
	return tlsconfig.Client{CAFile: c.ForwardTLSCAFile, CertFile: c.ForwardTLSCertFile, KeyFile: c.ForwardTLSKeyFile,
		ServerName: c.ForwardTLSServerName}
}

func (c Config) forwardTLSSet() bool {
	return c.ForwardTLSCAFile != "" || c.ForwardTLSCertFile != "" || c.ForwardTLSKeyFile != "" || c.ForwardTLSServerName != ""
}

// validateForwardClient checks the forward_* client settings without
// reading any file.
func (c Config) validateForwardClient() error {
	var errs []error
	t := c.forwardTarget()
	if !t.otlp {
		if c.forwardTLSSet() || len(c.ForwardHeaders) > 0 {
			errs = append(errs, errors.New("forward_headers (--forward-headers) and forward_tls_ca_file, forward_tls_cert_file, forward_tls_key_file and forward_tls_server_name apply to OTLP destinations, not to stdout or file:"))
		}
	}
	if err := c.forwardTLSFiles().Validate("forward_tls_"); err != nil {
		errs = append(errs, err)
	}
	switch {
	case t.http && c.forwardTLSSet():
		errs = append(errs, fmt.Errorf("forward (--forward) to %s is plaintext (http://) but forward TLS settings are set: use https://", t.host))
	case t.http && !t.loopback && !c.ForwardInsecure:
		errs = append(errs, fmt.Errorf("forward (--forward) sends plaintext (http://) to %s: use https://, or set forward_insecure (--forward-insecure) to send in the clear", t.host))
	case c.ForwardInsecure && (t.https || c.forwardTLSSet()):
		errs = append(errs, errors.New("forward_insecure (--forward-insecure) asks for plaintext, but forward (--forward) is https:// or forward TLS settings are set"))
	}
	switch c.ForwardCompression {
	case CompressionAuto, CompressionGzip, CompressionNone:
	default:
		errs = append(errs, fmt.Errorf("forward_compression (--forward-compression) must be auto, gzip or none, got %q", c.ForwardCompression))
	}
	for _, h := range c.ForwardHeaders {
		if _, _, err := parseHeader(h); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// headerSource is where a forward_headers value comes from.
type headerSource struct {
	literal, env, file string
}

// parseHeader splits a forward_headers entry: name=value, where value is
// literal, ${env:VAR} or ${file:/path}.
func parseHeader(h string) (string, headerSource, error) {
	name, value, ok := strings.Cut(h, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return "", headerSource{}, fmt.Errorf("forward_headers (--forward-headers): %q is not name=value", h)
	}
	if inner, ok := strings.CutPrefix(value, "${"); ok && strings.HasSuffix(inner, "}") {
		inner = strings.TrimSuffix(inner, "}")
		switch kind, arg, _ := strings.Cut(inner, ":"); {
		case kind == "env" && arg != "":
			return name, headerSource{env: arg}, nil
		case kind == "file" && arg != "":
			return name, headerSource{file: arg}, nil
		default:
			return "", headerSource{}, fmt.Errorf("forward_headers (--forward-headers): %s: %q: want ${env:VAR} or ${file:/path}", name, value)
		}
	}
	return name, headerSource{literal: value}, nil
}

// forwardClient resolves the forward_* settings into the exporter's OTLP
// client options: TLS (nil: plaintext gRPC, or Go's defaults for
// https://), headers and compression. It reads the header and TLS files.
// Every header value is returned in secrets too, for the redactor.
func (c Config) forwardClient() (tlsCfg *tls.Config, headers map[string]string, compression string, secrets []string, err error) {
	t := c.forwardTarget()
	if !t.otlp {
		return nil, nil, "", nil, nil
	}
	for _, h := range c.ForwardHeaders {
		name, src, err := parseHeader(h)
		if err != nil {
			return nil, nil, "", nil, err
		}
		value := src.literal
		switch {
		case src.env != "":
			if value = os.Getenv(src.env); value == "" {
				return nil, nil, "", nil, fmt.Errorf("forward_headers (--forward-headers): %s: the environment variable %s is empty or unset", name, src.env)
			}
		case src.file != "":
			b, err := os.ReadFile(src.file)
			if err != nil {
				return nil, nil, "", nil, fmt.Errorf("forward_headers (--forward-headers): %s: %w", name, err)
			}
			if value = strings.TrimRight(string(b), "\r\n"); value == "" {
				return nil, nil, "", nil, fmt.Errorf("forward_headers (--forward-headers): %s: %s is empty", name, src.file)
			}
		}
		if headers == nil {
			headers = map[string]string{}
		}
		headers[name] = value
		secrets = append(secrets, value)
	}
	// gRPC has no scheme to ask for TLS: it is on unless the host is this
	// machine or forward_insecure says otherwise.
	if t.https || c.forwardTLSSet() || (!t.http && !t.loopback && !c.ForwardInsecure) {
		files, err := tlsconfig.LoadClient(c.forwardTLSFiles())
		if err != nil {
			return nil, nil, "", nil, fmt.Errorf("forward TLS files (forward_tls_ca_file, forward_tls_cert_file, forward_tls_key_file): %w", err)
		}
		tlsCfg = files.For(t.host)
	}
	compression = c.ForwardCompression
	if compression == CompressionAuto {
		compression = CompressionGzip
		if t.loopback {
			compression = CompressionNone
		}
	}
	if compression == CompressionNone {
		compression = ""
	}
	return tlsCfg, headers, compression, secrets, nil
}
