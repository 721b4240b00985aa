package otlpclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// CompressionGzip compresses request bodies with gzip (gRPC's "gzip"
// encoding; HTTP Content-Encoding: gzip).
const CompressionGzip = "gzip"

// Config configures a Client. Only Endpoint is required: the zero value of
// every other field is plaintext (or Go's TLS defaults for an https URL),
// no extra headers, no compression. New copies what it keeps and never
// modifies the caller's Config.
type Config struct {
	// Endpoint is the destination. An http:// or https:// URL means
	// OTLP/HTTP: a protobuf POST to exactly that URL (OTLP's default path,
	// /v1/traces, is the caller's to add). Anything else is a gRPC target
	// as grpc.NewClient takes it, usually host:port.
	Endpoint string
	// TLS, if set, secures the connection: gRPC over TLS with this
	// configuration, or this configuration for an https URL. nil means
	// plaintext gRPC, and Go's defaults (the system's roots) for https. An
	// http:// URL with TLS set is an error: the URL asks for plaintext.
	TLS *tls.Config
	// Headers are sent with every call: as gRPC metadata (names
	// lower-cased, as HTTP/2 requires) or as HTTP header fields. Names are
	// HTTP tokens (for gRPC only letters, digits, '-', '_' and '.') and
	// must not start with "grpc-" (reserved by gRPC); values must not
	// contain CR, LF or NUL.
	Headers map[string]string
	// Compression of request bodies: "" (none) or "gzip".
	Compression string
	// MaxIdleConns is how many idle OTLP/HTTP connections are kept for
	// reuse: the number of calls expected at once. 0 means Go's default
	// per host (2). gRPC multiplexes every call over one connection.
	MaxIdleConns int
	// Dialer, if set, opens connections instead of the system's dialer:
	// addr is host:port (tests serve over in-memory listeners).
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
}

// isHTTP reports whether endpoint is an OTLP/HTTP URL.
func isHTTP(endpoint string) bool {
	return strings.HasPrefix(endpoint, "http://") || strings.HasPrefix(endpoint, "https://")
}

// Validate reports every problem of c, each naming the field to fix.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.Endpoint == "":
		errs = append(errs, errors.New("otlpclient: Endpoint is empty"))
	case isHTTP(c.Endpoint):
		u, err := url.Parse(c.Endpoint)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("otlpclient: Endpoint %q: %w", c.Endpoint, err))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("otlpclient: Endpoint %q: URL has no host", c.Endpoint))
		case u.Scheme == "http" && c.TLS != nil:
			errs = append(errs, fmt.Errorf("otlpclient: Endpoint %q is plaintext (http://) but TLS is set: use https://", c.Endpoint))
		}
	}
	grpc := c.Endpoint != "" && !isHTTP(c.Endpoint)
	for name, value := range c.Headers {
		if !isToken(name) || grpc && !isGRPCKey(name) {
			errs = append(errs, fmt.Errorf("otlpclient: Headers: %q is not a valid header name", name))
		} else if strings.HasPrefix(strings.ToLower(name), "grpc-") {
			errs = append(errs, fmt.Errorf("otlpclient: Headers: %q: names starting with grpc- are reserved", name))
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			errs = append(errs, fmt.Errorf("otlpclient: Headers: the value of %q contains CR, LF or NUL", name))
		}
	}
	switch c.Compression {
	case "", CompressionGzip:
	default:
		errs = append(errs, fmt.Errorf(`otlpclient: Compression %q: want "" or "gzip"`, c.Compression))
	}
	if c.MaxIdleConns < 0 {
		errs = append(errs, fmt.Errorf("otlpclient: MaxIdleConns is %d, must not be negative", c.MaxIdleConns))
	}
	return errors.Join(errs...)
}

// isToken reports whether s is an HTTP token (RFC 9110, section 5.6.2):
// what a header field name may be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isGRPCKey reports whether s is a valid gRPC metadata key once
// lower-cased; grpc-go fails calls that carry any other.
func isGRPCKey(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
