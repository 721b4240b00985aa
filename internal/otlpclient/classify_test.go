package otlpclient

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The OTLP/gRPC table of retryable codes (opentelemetry-proto,
// docs/specification.md, "OTLP/gRPC Response", Failures).
var grpcRetryable = map[codes.Code]bool{
	codes.Canceled:         true,
	codes.DeadlineExceeded: true,
	codes.Aborted:          true,
	codes.OutOfRange:       true,
	codes.Unavailable:      true,
	codes.DataLoss:         true,
}

// TestGRPCClassification: every code a real server can answer, with and
// without RetryInfo. The request's two bytes tell the server what to
// answer: the code, and which RetryInfo to attach.
func TestGRPCClassification(t *testing.T) {
	const hint = 2 * time.Second
	infos := []struct {
		name string
		info *errdetails.RetryInfo // nil: none
		hint time.Duration         // the Error's hint when retryable
	}{
		{"no RetryInfo", nil, 0},
		{"RetryInfo 2s", &errdetails.RetryInfo{RetryDelay: durationpb.New(hint)}, hint},
		{"RetryInfo without delay", &errdetails.RetryInfo{}, 0},
		{"RetryInfo -1s", &errdetails.RetryInfo{RetryDelay: durationpb.New(-time.Second)}, 0},
	}
	srv := startGRPC(t, func(_ context.Context, req []byte) ([]byte, error) {
		st := status.New(codes.Code(req[0]), "answer")
		if info := infos[req[1]].info; info != nil {
			var err error
			if st, err = st.WithDetails(info); err != nil {
				return nil, err
			}
		}
		return nil, st.Err()
	})
	c := newClient(t, Config{Endpoint: srv.addr})
	for code := codes.Canceled; code <= codes.Unauthenticated; code++ {
		for i, info := range infos {
			_, err := c.Export(context.Background(), []byte{byte(code), byte(i)})
			wantRetry := grpcRetryable[code] || code == codes.ResourceExhausted && info.info != nil
			wantHint := time.Duration(0)
			if wantRetry {
				wantHint = info.hint
			}
			retry, hint := Classify(err)
			if retry != wantRetry || hint != wantHint {
				t.Errorf("%v with %s: Classify = %v, %v; want %v, %v", code, info.name, retry, hint, wantRetry, wantHint)
			}
			if _, ok := errors.AsType[*Error](err); !ok {
				t.Errorf("%v with %s: error %T is not an *Error", code, info.name, err)
			}
			if got := status.Code(err); got != code {
				t.Errorf("%v with %s: status.Code(err) = %v: the status is not unwrapped", code, info.name, got)
			}
		}
	}
	if res, err := c.Export(context.Background(), []byte{byte(codes.OK), 0}); err != nil || res != (Result{}) {
		t.Errorf("OK: %+v, %v", res, err)
	}
}

// TestGRPCUnreachable: a refused connection is UNAVAILABLE, retryable.
func TestGRPCUnreachable(t *testing.T) {
	c := newClient(t, Config{Endpoint: closedPort(t)})
	_, err := c.Export(context.Background(), []byte{})
	if retry, _ := Classify(err); !retry || status.Code(err) != codes.Unavailable {
		t.Fatalf("Export to a closed port: %v (%v), want retryable UNAVAILABLE", err, status.Code(err))
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// TestHTTPClassification: the statuses of OTLP/HTTP's tables from a real
// server, with each kind of Retry-After header.
func TestHTTPClassification(t *testing.T) {
	future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("status"))
		if ra := r.URL.Query().Get("retry_after"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(code)
	}))
	defer srv.Close()
	retryable := map[int]bool{429: true, 502: true, 503: true, 504: true}
	for _, code := range []int{200, 400, 413, 429, 500, 502, 503, 504} {
		for _, ra := range []struct {
			header   string
			min, max time.Duration // of the hint, when retryable
		}{
			{"", 0, 0},
			{"0", 0, 0},
			{"3", 3 * time.Second, 3 * time.Second},
			{"-1", 0, 0},
			{"soon", 0, 0},
			{future, 59 * time.Minute, time.Hour},
		} {
			u := srv.URL + "/v1/traces?status=" + strconv.Itoa(code) + "&retry_after=" + url.QueryEscape(ra.header)
			c := newClient(t, Config{Endpoint: u})
			_, err := c.Export(context.Background(), []byte{})
			retry, hint := Classify(err)
			switch {
			case code == 200:
				if err != nil {
					t.Errorf("200 (Retry-After %q): %v", ra.header, err)
				}
			case retry != retryable[code]:
				t.Errorf("%d (Retry-After %q): retryable = %v, want %v (%v)", code, ra.header, retry, retryable[code], err)
			case retry && (hint < ra.min || hint > ra.max):
				t.Errorf("%d (Retry-After %q): hint %v, want %v to %v", code, ra.header, hint, ra.min, ra.max)
			case !retry && hint != 0:
				t.Errorf("%d (Retry-After %q): a permanent error has hint %v", code, ra.header, hint)
			}
			if code != 200 {
				if want := "HTTP " + strconv.Itoa(code) + " " + http.StatusText(code); err == nil || err.Error() != want {
					t.Errorf("%d: error %v, want %q", code, err, want)
				}
			}
		}
	}
}

// TestHTTPTransportErrors: no answer at all is retryable, as OTLP says
// ("If the server disconnects without returning a response, the client
// SHOULD retry").
func TestHTTPTransportErrors(t *testing.T) {
	hangUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer hangUp.Close()
	for name, url := range map[string]string{
		"hang-up":            hangUp.URL + "/v1/traces",
		"connection refused": "http://" + closedPort(t) + "/v1/traces",
	} {
		c := newClient(t, Config{Endpoint: url})
		if _, err := c.Export(context.Background(), []byte{}); !isRetryable(err) {
			t.Errorf("%s: %v, want a retryable error", name, err)
		}
	}
}

func isRetryable(err error) bool {
	retry, _ := Classify(err)
	return retry
}

func TestClassifyForeignErrors(t *testing.T) {
	for _, err := range []error{nil, errors.New("plain"), context.Canceled, &Error{Err: errors.New("permanent")}} {
		if retry, hint := Classify(err); retry || hint != 0 {
			t.Errorf("Classify(%v) = %v, %v; want not retryable", err, retry, hint)
		}
	}
	wrapped := errors.Join(errors.New("context"), &Error{Err: errors.New("busy"), Retryable: true, Hint: -time.Second})
	if retry, hint := Classify(wrapped); !retry || hint != 0 {
		t.Errorf("Classify(wrapped retryable, negative hint) = %v, %v; want true, 0", retry, hint)
	}
}

// TestRetryAfter is the header parser's table (moved here from export
// with the parser).
func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"Mon, 02 Jan 2006 15:04:05 GMT", 0, true}, // in the past: now
	} {
		got, ok := retryAfter(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
