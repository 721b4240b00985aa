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
	gz := func(b []byte) []byte {
		var out bytes.Buffer
		zw := gzip.NewWriter(&out)
		zw.Write(b)
		zw.Close()
		return out.Bytes()
	}
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
