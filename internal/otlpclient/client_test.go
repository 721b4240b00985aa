package otlpclient

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// partialSuccessCases are ExportTraceServiceResponses and what Export must
// make of them, over either transport.
func partialSuccessCases(t *testing.T) []struct {
	name string
	resp []byte
	want Result
} {
	partial := func(rejected int64, msg string) []byte {
		return marshal(t, &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{
			RejectedSpans: rejected, ErrorMessage: msg}})
	}
	// An unknown field of each wire type around the partial success: a
	// newer server's response.
	var unknown []byte
	unknown = protowire.AppendTag(unknown, 7, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 1)
	unknown = protowire.AppendTag(unknown, 8, protowire.Fixed32Type)
	unknown = protowire.AppendFixed32(unknown, 1)
	unknown = protowire.AppendTag(unknown, 9, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("x"))
	return []struct {
		name string
		resp []byte
		want Result
	}{
		{"empty", nil, Result{}},
		{"rejected", partial(7, "7 spans too old"), Result{RejectedSpans: 7, Message: "7 spans too old"}},
		{"warning", partial(0, "attribute limit reached"), Result{Message: "attribute limit reached"}},
		{"unknown fields", append(append(append([]byte(nil), unknown...), partial(3, "m")...), unknown...), Result{RejectedSpans: 3, Message: "m"}},
		// Two occurrences of a message field are merged (a protobuf parser's rule).
		{"merged", append(partial(3, ""), partial(0, "late")...), Result{RejectedSpans: 3, Message: "late"}},
		{"malformed", []byte{0x0a, 0x05, 0x08}, Result{Message: "malformed ExportTraceServiceResponse: field 1: unexpected EOF"}},
		{"malformed partial success", []byte{0x0a, 0x01, 0x08}, Result{Message: "malformed ExportTraceServiceResponse: partial_success: field 1: unexpected EOF"}},
	}
}

func TestGRPCPartialSuccess(t *testing.T) {
	for _, tc := range partialSuccessCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			srv := startGRPC(t, func(context.Context, []byte) ([]byte, error) { return tc.resp, nil })
			c := newClient(t, Config{Endpoint: srv.addr})
			res, err := c.Export(context.Background(), []byte{})
			if err != nil || res != tc.want {
				t.Errorf("Export = %+v, %v; want %+v", res, err, tc.want)
			}
		})
	}
}

func TestHTTPPartialSuccess(t *testing.T) {
	for _, tc := range partialSuccessCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/x-protobuf")
				w.Write(tc.resp)
			}))
			defer srv.Close()
			c := newClient(t, Config{Endpoint: srv.URL + "/v1/traces"})
			res, err := c.Export(context.Background(), []byte{})
			if err != nil || res != tc.want {
				t.Errorf("Export = %+v, %v; want %+v", res, err, tc.want)
			}
		})
	}
	// Accepted with a body that is not protobuf, or any 2xx: no partial
	// success to read.
	for name, h := range map[string]http.HandlerFunc{
		"json": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"partialSuccess":{"rejectedSpans":"3"}}`))
		},
		"202": func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) },
	} {
		srv := httptest.NewServer(h)
		c := newClient(t, Config{Endpoint: srv.URL})
		if res, err := c.Export(context.Background(), []byte{}); err != nil || res != (Result{}) {
			t.Errorf("%s: Export = %+v, %v; want accepted", name, res, err)
		}
		srv.Close()
	}
}

// TestHTTPRequest: the request is a protobuf POST of the body to the URL
// as given.
func TestHTTPRequest(t *testing.T) {
	body := []byte("request bytes")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/otlp/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" ||
			r.Header.Get("Content-Encoding") != "" || !bytes.Equal(got, body) {
			t.Errorf("got %s %s, Content-Type %q, Content-Encoding %q, body %q", r.Method, r.URL.Path,
				r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"), got)
		}
	}))
	defer srv.Close()
	c := newClient(t, Config{Endpoint: srv.URL + "/otlp/v1/traces"})
	if _, err := c.Export(context.Background(), body); err != nil {
		t.Fatal(err)
	}
}

// TestHeadersAndGzip: Config.Headers reach the server with every call,
// and gzip shrinks what goes over the wire while the server reads the
// same request.
func TestHeadersAndGzip(t *testing.T) {
	headers := map[string]string{"Authorization": "Bearer secret", "x-tenant": "acme"}
	body := bytes.Repeat([]byte("span "), 200_000) // 1 MB that compresses well
	t.Run("grpc", func(t *testing.T) {
		for _, compression := range []string{"", CompressionGzip} {
			type call struct {
				req []byte
				md  metadata.MD
			}
			calls := make(chan call, 1)
			srv := startGRPC(t, func(ctx context.Context, req []byte) ([]byte, error) {
				md, _ := metadata.FromIncomingContext(ctx)
				calls <- call{bytes.Clone(req), md}
				return nil, nil
			})
			c := newClient(t, Config{Endpoint: srv.addr, Headers: headers, Compression: compression})
			if _, err := c.Export(context.Background(), body); err != nil {
				t.Fatal(err)
			}
			got, md := func() ([]byte, metadata.MD) { c := <-calls; return c.req, c.md }()
			if !bytes.Equal(got, body) {
				t.Errorf("compression %q: the server read %d bytes, want the %d sent", compression, len(got), len(body))
			}
			if a, tn := md.Get("authorization"), md.Get("x-tenant"); len(a) != 1 || a[0] != "Bearer secret" || len(tn) != 1 || tn[0] != "acme" {
				t.Errorf("compression %q: metadata %v, want the headers", compression, md)
			}
			wire := srv.read.Load()
			if compression == "" && wire < int64(len(body)) || compression == CompressionGzip && wire > int64(len(body))/10 {
				t.Errorf("compression %q: %d bytes on the wire for a %d-byte request", compression, wire, len(body))
			}
		}
	})
	t.Run("http", func(t *testing.T) {
		for _, compression := range []string{"", CompressionGzip} {
			var got []byte
			var h http.Header
			var wire int
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h = r.Header.Clone()
				raw, _ := io.ReadAll(r.Body)
				wire = len(raw)
				got = raw
				if r.Header.Get("Content-Encoding") == "gzip" {
					zr, err := gzip.NewReader(bytes.NewReader(raw))
					if err != nil {
						t.Errorf("bad gzip: %v", err)
						return
					}
					got, _ = io.ReadAll(zr)
				}
			}))
			c := newClient(t, Config{Endpoint: srv.URL, Headers: headers, Compression: compression})
			if _, err := c.Export(context.Background(), body); err != nil {
				t.Fatal(err)
			}
			srv.Close()
			if !bytes.Equal(got, body) {
				t.Errorf("compression %q: the server read %d bytes, want the %d sent", compression, len(got), len(body))
			}
			if h.Get("Authorization") != "Bearer secret" || h.Get("X-Tenant") != "acme" || h.Get("Content-Type") != "application/x-protobuf" {
				t.Errorf("compression %q: headers %v", compression, h)
			}
			if compression == CompressionGzip && (h.Get("Content-Encoding") != "gzip" || wire > len(body)/10) {
				t.Errorf("gzip: Content-Encoding %q, %d bytes for %d", h.Get("Content-Encoding"), wire, len(body))
			}
		}
	})
}

// TestTLS: with Config.TLS the client verifies the server with it, over
// either transport.
func TestTLS(t *testing.T) {
	httpsSrv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer httpsSrv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(httpsSrv.Certificate())
	trusting := &tls.Config{RootCAs: roots}

	grpcSrv := startGRPC(t, func(context.Context, []byte) ([]byte, error) { return nil, nil },
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: httpsSrv.TLS.Certificates})))
	for name, cfg := range map[string]Config{
		"grpc":  {Endpoint: grpcSrv.addr, TLS: trusting},
		"https": {Endpoint: httpsSrv.URL + "/v1/traces", TLS: trusting},
	} {
		c := newClient(t, cfg)
		if _, err := c.Export(context.Background(), []byte{}); err != nil {
			t.Errorf("%s with the server's root: %v", name, err)
		}
		cfg.TLS = &tls.Config{RootCAs: x509.NewCertPool()} // trusts nothing
		c = newClient(t, cfg)
		if _, err := c.Export(context.Background(), []byte{}); err == nil {
			t.Errorf("%s: a client that trusts no root reached the server", name)
		}
	}
}

func TestInvoke(t *testing.T) {
	srv := startGRPC(t, func(context.Context, []byte) ([]byte, error) { return nil, nil })
	c := newClient(t, Config{Endpoint: srv.addr})
	resp := make([]byte, 0, 64)
	if err := c.Invoke(context.Background(), echoMethod, []byte("ping"), &resp); err != nil || string(resp) != "ping" {
		t.Fatalf("Invoke = %q, %v", resp, err)
	}
	if err := c.Invoke(context.Background(), "/otlpclient.test.Echo/Missing", nil, &resp); err == nil || isRetryable(err) {
		t.Errorf("Invoke of an unknown method: %v, want a permanent error (UNIMPLEMENTED)", err)
	}
	h := newClient(t, Config{Endpoint: "http://127.0.0.1:1/v1/traces"})
	if err := h.Invoke(context.Background(), echoMethod, nil, &resp); err == nil || isRetryable(err) {
		t.Errorf("Invoke on an HTTP client: %v, want a permanent error", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		errs []string // substrings of the error; none: valid
	}{
		{cfg: Config{Endpoint: "collector:4317"}},
		{cfg: Config{Endpoint: "passthrough:///sink", Compression: "gzip", Headers: map[string]string{"X-Token": "t"}}},
		{cfg: Config{Endpoint: "https://collector/v1/traces", TLS: &tls.Config{}, Headers: map[string]string{"X-Key!": "v"}}},
		{cfg: Config{}, errs: []string{"Endpoint is empty"}},
		{cfg: Config{Endpoint: "http:///v1/traces"}, errs: []string{"no host"}},
		{cfg: Config{Endpoint: "http://collector/v1/traces", TLS: &tls.Config{}}, errs: []string{"use https://"}},
		{cfg: Config{Endpoint: "collector:4317", Compression: "zstd"}, errs: []string{`Compression "zstd"`}},
		{cfg: Config{Endpoint: "collector:4317", MaxIdleConns: -1}, errs: []string{"MaxIdleConns"}},
		{
			cfg: Config{Endpoint: "collector:4317", Headers: map[string]string{"": "v", "x-key!": "v", "grpc-timeout": "1", "ok": "a\nb"}},
			errs: []string{`"" is not a valid header name`, `"x-key!" is not a valid header name`,
				"grpc- are reserved", `the value of "ok"`},
		},
	} {
		err := tc.cfg.Validate()
		if len(tc.errs) == 0 {
			if err != nil {
				t.Errorf("%+v: %v", tc.cfg, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%+v: valid, want errors %q", tc.cfg, tc.errs)
			continue
		}
		for _, want := range tc.errs {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%+v: error %q does not mention %q", tc.cfg, err, want)
			}
		}
		if _, nerr := New(tc.cfg); nerr == nil {
			t.Errorf("%+v: New accepted an invalid config", tc.cfg)
		}
	}
}
