package otlpclient

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// maxResponseBytes bounds what is read of a response body; an
// ExportTraceServiceResponse is a few bytes.
const maxResponseBytes = 64 << 10

// newHTTP makes an OTLP/HTTP client with its own transport, so that Close
// can close its idle connections.
func newHTTP(cfg Config) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.MaxIdleConns > 0 {
		tr.MaxIdleConnsPerHost = cfg.MaxIdleConns
	}
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS.Clone()
	}
	if dial := cfg.Dialer; dial != nil {
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }
	}
	c := &Client{
		url:       cfg.Endpoint,
		http:      &http.Client{Transport: tr}, // the caller's context bounds each call
		transport: tr,
		headers:   http.Header{},
		gzip:      cfg.Compression == CompressionGzip,
	}
	for k, v := range cfg.Headers {
		c.headers.Set(k, v)
	}
	return c
}

func (c *Client) exportHTTP(ctx context.Context, body []byte) (Result, error) {
	if c.gzip {
		body = compress(body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return Result{}, &Error{Err: err}
	}
	for k, v := range c.headers {
		req.Header[k] = v
	}
	// Set after the caller's headers: these describe the body.
	req.Header.Set("Content-Type", "application/x-protobuf")
	if c.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// The server could not be reached or hung up without an answer:
		// OTLP says to retry with backoff.
		return Result{}, &Error{Err: err, Retryable: true}
	}
	defer resp.Body.Close()
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes)) // let the connection be reused

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if readErr != nil || !isProtobuf(resp.Header.Get("Content-Type")) {
			return Result{}, nil // accepted; no partial success we can read
		}
		return readResponse(data), nil
	}
	return Result{}, classifyHTTP(resp.StatusCode, resp.Status, resp.Header.Get("Retry-After"))
}

// classifyHTTP classifies a failed response by OTLP/HTTP's table of
// retryable status codes: 429, 502, 503 and 504, with the Retry-After
// header as the hint; every other status is permanent (400 bad data, 413
// too large, and any other 4xx or 5xx).
func classifyHTTP(code int, status, retryAfterHeader string) *Error {
	err := fmt.Errorf("HTTP %s", status)
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		hint, _ := retryAfter(retryAfterHeader)
		return &Error{Err: err, Retryable: true, Hint: hint}
	}
	return &Error{Err: err}
}

// isProtobuf reports whether a response's Content-Type is protobuf (or
// unset, which OTLP servers answering a protobuf request may leave).
func isProtobuf(contentType string) bool {
	if contentType == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/x-protobuf"
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// gzipWriters are reused: a gzip.Writer holds about a megabyte of
// compressor state.
var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

// compress returns body gzipped, in a new buffer: the transport may still
// read a request's body after Do returns (a server that answered before
// reading it all), so the buffer is never reused.
func compress(body []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(body)/4 + 64)
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&buf)
	_, _ = zw.Write(body) // a bytes.Buffer does not fail
	_ = zw.Close()
	zw.Reset(nil)
	gzipWriters.Put(zw)
	return buf.Bytes()
}
