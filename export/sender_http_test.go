package export

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
)

// httpSink is a real OTLP/HTTP receiver on loopback: it decodes each body
// and answers with what respond says (status 0: 200 with an empty response).
// A body over maxBody (if not 0) is answered 413, as backends do.
type httpSink struct {
	srv     *httptest.Server
	respond func(call int, w http.ResponseWriter) (status int)
	maxBody int64

	mu    sync.Mutex
	calls int
	paths []string
	reqs  []*coltracepb.ExportTraceServiceRequest
	sizes []int // of the bodies of reqs
}

func startHTTPSink(t *testing.T, respond func(call int, w http.ResponseWriter) int) *httpSink {
	t.Helper()
	return startHTTPSinkMax(t, 0, respond)
}

func startHTTPSinkMax(t *testing.T, maxBody int64, respond func(call int, w http.ResponseWriter) int) *httpSink {
	t.Helper()
	s := &httpSink{respond: respond, maxBody: maxBody}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *httpSink) serve(w http.ResponseWriter, r *http.Request) {
	if s.maxBody > 0 {
		r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
	}
	body, err := io.ReadAll(r.Body)
	s.mu.Lock()
	s.calls++
	call := s.calls
	s.paths = append(s.paths, r.URL.Path)
	s.mu.Unlock()
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
		return
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	if err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, req) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	status := 0
	if s.respond != nil {
		status = s.respond(call, w)
	}
	if status < 0 { // the connection was hijacked and closed
		return
	}
	if status != 0 && status != http.StatusOK {
		w.WriteHeader(status)
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.sizes = append(s.sizes, len(body))
	s.mu.Unlock()
	if status == 0 {
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(nil) // an empty ExportTraceServiceResponse
	}
}

func (s *httpSink) received() (calls int, paths []string, reqs []*coltracepb.ExportTraceServiceRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, append([]string(nil), s.paths...), append([]*coltracepb.ExportTraceServiceRequest(nil), s.reqs...)
}

func TestHTTP(t *testing.T) {
	f := newFixture(t, 6, otlptest.Batch{Services: 3, Traces: 5, SpansPerTrace: 4, AttrsPerSpan: 4, ErrorEvery: 2, SpanDurationNs: 1e6})
	all := f.spans()
	partial := func(w http.ResponseWriter) int {
		b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 3}})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(b)
		return http.StatusOK
	}
	for _, tc := range []struct {
		name     string
		path     string // appended to the server URL
		wantPath string
		respond  func(call int, w http.ResponseWriter) int
		calls    int
		sent     int64
		failed   map[string]int64
		retries  int
	}{
		{name: "no path means /v1/traces", wantPath: "/v1/traces", calls: 1, sent: all},
		{name: "slash means /v1/traces", path: "/", wantPath: "/v1/traces", calls: 1, sent: all},
		{name: "explicit path kept", path: "/otlp/v1/traces", wantPath: "/otlp/v1/traces", calls: 1, sent: all},
		{
			name: "503 with Retry-After then 200", wantPath: "/v1/traces",
			respond: func(call int, w http.ResponseWriter) int {
				if call == 1 {
					w.Header().Set("Retry-After", "0")
					return http.StatusServiceUnavailable
				}
				return 0
			},
			calls: 2, sent: all, retries: 1,
		},
		{
			name: "429 then 502 then 504 then 200", wantPath: "/v1/traces",
			respond: func(call int, w http.ResponseWriter) int {
				return [...]int{http.StatusTooManyRequests, http.StatusBadGateway, http.StatusGatewayTimeout, 0}[min(call-1, 3)]
			},
			calls: 4, sent: all, retries: 3,
		},
		{
			name: "transport error then 200", wantPath: "/v1/traces",
			respond: func(call int, w http.ResponseWriter) int {
				if call > 1 {
					return 0
				}
				conn, _, err := w.(http.Hijacker).Hijack()
				if err != nil {
					panic(err)
				}
				conn.Close()
				return -1
			},
			calls: 2, sent: all, retries: 1,
		},
		{
			name: "Retry-After beyond max elapsed", wantPath: "/v1/traces",
			respond: func(call int, w http.ResponseWriter) int {
				w.Header().Set("Retry-After", "3600")
				return http.StatusTooManyRequests
			},
			calls: 1, failed: map[string]int64{"retries_exhausted": all},
		},
		{
			name: "400 is rejected", wantPath: "/v1/traces",
			respond: func(int, http.ResponseWriter) int { return http.StatusBadRequest },
			calls:   1, failed: map[string]int64{"rejected": all},
		},
		{
			name: "partial success", wantPath: "/v1/traces",
			respond: func(_ int, w http.ResponseWriter) int { return partial(w) },
			calls:   1, sent: all - 3, failed: map[string]int64{"rejected": 3},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := startHTTPSink(t, tc.respond)
			cfg := fastRetries(DefaultConfig())
			cfg.Endpoint = sink.srv.URL + tc.path
			cfg.Workers = 1
			cfg.RetryMaxElapsed = 5 * time.Second
			e, reg := newTestExporter(t, cfg)
			for _, tr := range f.traces {
				e.ExportTrace(tr, Keep{})
			}
			shutdown(t, e)

			calls, paths, reqs := sink.received()
			if calls != tc.calls {
				t.Errorf("sink calls = %d, want %d", calls, tc.calls)
			}
			for _, p := range paths {
				if p != tc.wantPath {
					t.Errorf("POST to %q, want %q", p, tc.wantPath)
				}
			}
			if tc.sent > 0 {
				checkDelivered(t, f, reqs, true)
			}
			failed := int64(0)
			for _, n := range tc.failed {
				failed += n
			}
			if tc.failed == nil {
				tc.failed = map[string]int64{}
			}
			checkAccounting(t, e, reg, Stats{Accepted: all, Sent: tc.sent, Failed: failed}, tc.failed)
			if got := requests(t, reg, "retry"); got != tc.retries {
				t.Errorf("requests{retry} = %d, want %d", got, tc.retries)
			}
		})
	}
}
