package export

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"
)

// maxResponseBytes bounds what is read of a response body; an
// ExportTraceServiceResponse is a few bytes.
const maxResponseBytes = 64 << 10

// httpSender POSTs requests as application/x-protobuf to one URL, over its
// own transport (so Shutdown can close its idle connections).
type httpSender struct {
	url       string
	client    *http.Client
	transport *http.Transport
}

func newHTTPSender(url string, cfg Config) *httpSender {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.Workers
	return &httpSender{
		url:       url,
		client:    &http.Client{Transport: tr, Timeout: cfg.Timeout},
		transport: tr,
	}
}

func (s *httpSender) send(ctx context.Context, body []byte) (result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return result{}, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := s.client.Do(req)
	if err != nil {
		return result{}, retryable(err) // transport error
	}
	defer resp.Body.Close()
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes)) // let the connection be reused

	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		if readErr != nil || !isProtobuf(resp.Header.Get("Content-Type")) {
			return result{}, nil // accepted; no partial success we can read
		}
		res, err := parseResponse(data)
		if err != nil {
			return result{message: err.Error()}, nil
		}
		return res, nil
	case code == http.StatusTooManyRequests, code == http.StatusBadGateway,
		code == http.StatusServiceUnavailable, code == http.StatusGatewayTimeout:
		err := fmt.Errorf("HTTP %s", resp.Status)
		if after, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return result{}, retryableAfter(err, after)
		}
		return result{}, retryable(err)
	default:
		return result{}, fmt.Errorf("HTTP %s", resp.Status)
	}
}

func (s *httpSender) close() error {
	s.transport.CloseIdleConnections()
	return nil
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
