package otlpserver

import (
	"bytes"
	"compress/gzip"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestReadBodyLimits(t *testing.T) {
	cases := []struct {
		name     string
		body     []byte
		encoding string
		chunked  bool
		want     error // nil, ErrTooLarge, ErrUnsupportedEncoding, or errBad for another error
		wantLen  int
	}{
		{"exactly at the limit", make([]byte, 100), "", false, nil, 100},
		{"one over", make([]byte, 101), "", false, ErrTooLarge, 0},
		{"one over, no Content-Length", make([]byte, 101), "", true, ErrTooLarge, 0},
		{"gzip within", gz(make([]byte, 100)), "gzip", false, nil, 100},
		{"gzip expands past the limit", gz(make([]byte, 5000)), "gzip", false, ErrTooLarge, 0},
		{"not gzip", []byte("plain"), "gzip", false, errBad, 0},
		{"brotli", []byte("x"), "br", false, ErrUnsupportedEncoding, 0},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(c.body))
		if c.chunked {
			r.ContentLength = -1
		}
		if c.encoding != "" {
			r.Header.Set("Content-Encoding", c.encoding)
		}
		out, err := ReadBody(httptest.NewRecorder(), r, make([]byte, 0, 8), 100)
		switch {
		case c.want == errBad && (err == nil || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrUnsupportedEncoding)):
			t.Errorf("%s: err %v, want a malformed-body error", c.name, err)
		case c.want != errBad && !errors.Is(err, c.want) && !(c.want == nil && err == nil):
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		case c.want == nil && len(out) != c.wantLen:
			t.Errorf("%s: read %d bytes, want %d", c.name, len(out), c.wantLen)
		}
	}
}

var errBad = errors.New("bad")

// gz is b gzipped.
func gz(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

// TestReadBodyBudget checks that ReadBodyBudget reads no byte it has not
// reserved, reserves in doubling steps as bytes arrive (never past the
// Content-Length), and stops when refused.
func TestReadBodyBudget(t *testing.T) {
	cases := []struct {
		name        string
		body        []byte
		encoding    string
		chunked     bool
		budget      int64
		want        error
		maxReserved int64 // most reserved in all when read whole
		reserveCall int   // calls to reserve, when read whole
	}{
		{"doubling steps up to the content-length", make([]byte, 300<<10), "", false, 1 << 20, nil, 300<<10 + 1, 4},
		{"chunked in doubling steps", make([]byte, 300<<10), "", true, 1 << 20, nil, 512 << 10, 4},
		{"gzip in doubling steps", gz(make([]byte, 300<<10)), "gzip", false, 1 << 20, nil, 512 << 10, 4},
		{"content-length over the budget", make([]byte, 300<<10), "", false, 200 << 10, ErrOverBudget, 0, 0},
		{"chunked over the budget", make([]byte, 300<<10), "", true, 200 << 10, ErrOverBudget, 0, 0},
		{"gzip expands over the budget", gz(make([]byte, 300<<10)), "gzip", false, 200 << 10, ErrOverBudget, 0, 0},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(c.body))
		if c.chunked {
			r.ContentLength = -1
		}
		if c.encoding != "" {
			r.Header.Set("Content-Encoding", c.encoding)
		}
		var reserved int64
		calls := 0
		out, err := ReadBodyBudget(httptest.NewRecorder(), r, nil, 1<<20, func(n int64) bool {
			if reserved+n > c.budget {
				return false
			}
			reserved += n
			calls++
			return true
		})
		if int64(len(out)) > reserved {
			t.Errorf("%s: read %d bytes with %d reserved", c.name, len(out), reserved)
		}
		if !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
			continue
		}
		if c.want == nil && (len(out) != 300<<10 || reserved != c.maxReserved || calls != c.reserveCall) {
			t.Errorf("%s: read %d bytes, reserved %d in %d calls; want %d bytes, %d in %d calls",
				c.name, len(out), reserved, calls, 300<<10, c.maxReserved, c.reserveCall)
		}
	}
}
