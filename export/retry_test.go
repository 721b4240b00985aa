package export

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tailsift/tailsift/internal/otlpclient"
	"github.com/tailsift/tailsift/internal/otlptest"
)

// The retry loop against real gRPC and HTTP servers on fake time: the
// servers listen on in-memory connections (bufconn), whose blocking a
// synctest bubble sees as durable, where loopback sockets would stop its
// clock. Only the transport is in memory; the client and server code is
// what runs over TCP.

// memGRPCSink serves a grpcSink in memory and returns a gRPC sender dialing
// it. Call it inside the bubble.
func memGRPCSink(t *testing.T, handle func(ctx context.Context, call int) (*coltracepb.ExportTraceServiceResponse, error)) (*grpcSink, sender) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	sink := serveGRPCSink(t, lis, handle)
	s, err := newOTLPSender(otlpclient.Config{Endpoint: "passthrough:///sink", Dialer: func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	}})
	if err != nil {
		t.Fatal(err)
	}
	return sink, s
}

// memHTTPSink serves an httpSink in memory and returns an HTTP sender
// posting to it. Call it inside the bubble.
func memHTTPSink(t *testing.T, cfg Config, respond func(call int, w http.ResponseWriter) int) (*httpSink, sender) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	sink := &httpSink{respond: respond}
	srv := &http.Server{Handler: http.HandlerFunc(sink.serve)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	s, err := newOTLPSender(otlpclient.Config{Endpoint: "http://sink/v1/traces", MaxIdleConns: cfg.Workers,
		Dialer: func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }})
	if err != nil {
		t.Fatal(err)
	}
	return sink, s
}

func retryInfoErr(t *testing.T, code codes.Code, d time.Duration) error {
	t.Helper()
	st, err := status.New(code, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// TestRetryHintIsAFloor: a server that answers "retry after 0s" (HTTP 429
// or 503 with Retry-After: 0, gRPC RetryInfo 0s) for 30 s, then accepts,
// gets the backoff schedule, not a tight loop; so does a negative or
// malformed hint. A positive hint lengthens each wait to at least itself.
// Each wait, measured at the sink on fake time, lies between the hint and
// the larger of the hint and the backoff step, and the number of attempts
// stays within what the backoff allows in 30 s.
func TestRetryHintIsAFloor(t *testing.T) {
	const (
		window = 30 * time.Second
		cap    = 1000 // attempts let through to end a tight loop
		// Backoff of 100ms doubling to 5s, each wait uniform in [0, step]:
		// 17 attempts in 30 s on average. More than 40 would take 33 waits
		// summing under 30 s where their mean is 82 s: odds below 1e-11.
		maxAttempts = 40
	)
	httpAnswer := func(status int, retryAfter string) func(*testing.T, Config, *otlptest.Attempts) (sender, func() int) {
		return func(t *testing.T, cfg Config, log *otlptest.Attempts) (sender, func() int) {
			sink, s := memHTTPSink(t, cfg, func(_ int, w http.ResponseWriter) int {
				if !log.Failing(window, cap) {
					return 0
				}
				w.Header().Set("Retry-After", retryAfter)
				return status
			})
			return s, func() int { calls, _, _ := sink.received(); return calls }
		}
	}
	grpcAnswer := func(code codes.Code, hint time.Duration) func(*testing.T, Config, *otlptest.Attempts) (sender, func() int) {
		return func(t *testing.T, _ Config, log *otlptest.Attempts) (sender, func() int) {
			fail := retryInfoErr(t, code, hint)
			sink, s := memGRPCSink(t, func(context.Context, int) (*coltracepb.ExportTraceServiceResponse, error) {
				if log.Failing(window, cap) {
					return nil, fail
				}
				return nil, nil
			})
			return s, func() int { calls, _ := sink.received(); return calls }
		}
	}
	f := newFixture(t, 50, otlptest.Batch{Services: 1, Traces: 2, SpansPerTrace: 3, SpanDurationNs: 1})
	all := f.spans()
	for _, tc := range []struct {
		name  string
		hint  time.Duration // every wait is at least this
		start func(*testing.T, Config, *otlptest.Attempts) (sender, func() int)
	}{
		{"HTTP 503 Retry-After 0", 0, httpAnswer(http.StatusServiceUnavailable, "0")},
		{"HTTP 429 Retry-After 0", 0, httpAnswer(http.StatusTooManyRequests, "0")},
		{"HTTP 429 Retry-After -1", 0, httpAnswer(http.StatusTooManyRequests, "-1")},
		{"HTTP 503 Retry-After garbage", 0, httpAnswer(http.StatusServiceUnavailable, "soon")},
		{"HTTP 429 Retry-After 2", 2 * time.Second, httpAnswer(http.StatusTooManyRequests, strconv.Itoa(2))},
		{"gRPC UNAVAILABLE RetryInfo 0s", 0, grpcAnswer(codes.Unavailable, 0)},
		{"gRPC RESOURCE_EXHAUSTED RetryInfo 0s", 0, grpcAnswer(codes.ResourceExhausted, 0)},
		{"gRPC UNAVAILABLE RetryInfo -1s", 0, grpcAnswer(codes.Unavailable, -time.Second)},
		{"gRPC RESOURCE_EXHAUSTED RetryInfo 2s", 2 * time.Second, grpcAnswer(codes.ResourceExhausted, 2*time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := DefaultConfig().EnsureDefaults() // 100ms doubling to 5s, for 5m
				log := &otlptest.Attempts{}
				s, calls := tc.start(t, cfg, log)
				reg := prometheus.NewRegistry()
				e, err := newExporter(cfg, reg, nil, s)
				if err != nil {
					t.Fatal(err)
				}
				ds := deliveredTraces(t, f.traces, nil)
				for _, d := range ds {
					e.ExportTrace(d, Keep{})
				}
				time.Sleep(window + 10*time.Second) // the first attempt is at BatchTimeout
				synctest.Wait()
				shutdown(t, e)

				at := log.All()
				if n := len(at); n > maxAttempts || n < 2 {
					t.Errorf("%d attempts in %v, want 2 to %d (backoff, not a tight loop)", n, at[len(at)-1].Sub(at[0]), maxAttempts)
				}
				if n := calls(); n != len(at) {
					t.Errorf("sink counted %d calls, the log %d", n, len(at))
				}
				step := cfg.RetryInitial
				for i := 1; i < len(at); i++ {
					gap := at[i].Sub(at[i-1])
					if gap < tc.hint || gap > max(step, tc.hint) {
						t.Errorf("wait before attempt %d = %v, want between the hint %v and max(step %v, hint)", i+1, gap, tc.hint, step)
					}
					step = min(2*step, cfg.RetryMax)
				}
				checkTold(t, ds, true)
				checkAccounting(t, e, reg, Stats{Accepted: all, Sent: all}, map[string]int64{})
				if got := requests(t, reg, "retry"); got != len(at)-1 {
					t.Errorf("requests{retry} = %d, want %d (attempts - 1)", got, len(at)-1)
				}
			})
		})
	}
}
