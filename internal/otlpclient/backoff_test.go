package otlpclient

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tailsift/tailsift/internal/otlptest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestBackoffSchedule: the step starts at Initial and doubles to Max; each
// wait lies in [hint, max(step, hint)].
func TestBackoffSchedule(t *testing.T) {
	for _, hint := range []time.Duration{0, 50 * time.Millisecond, 10 * time.Second} {
		b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
		step := b.Initial
		for i := range 30 {
			if w := b.Next(hint); w < hint || w > max(step, hint) {
				t.Fatalf("hint %v, wait %d: %v, want between %v and %v", hint, i, w, hint, max(step, hint))
			}
			step = min(2*step, b.Max)
		}
	}
	// Unset bounds never make a tight loop.
	var b Backoff
	for range 10 {
		if w := b.Next(0); w < 0 || w > minStep {
			t.Fatalf("zero Backoff: wait %v, want within [0, %v]", w, minStep)
		}
	}
	if b.step != minStep {
		t.Fatalf("zero Backoff: step %v, want %v", b.step, minStep)
	}
}

// TestBackoffFullJitter: the first wait is uniform over [0, Initial], not
// bunched near the step (equal jitter) or at it (no jitter).
func TestBackoffFullJitter(t *testing.T) {
	const n, initial = 4000, 100 * time.Millisecond
	var sum, lo, hi time.Duration
	lo = initial
	for range n {
		b := Backoff{Initial: initial, Max: time.Second}
		w := b.Next(0)
		sum += w
		lo, hi = min(lo, w), max(hi, w)
	}
	// The mean of n uniform draws has a standard deviation of 0.46ms:
	// 7ms off 50ms is no accident. Neither is a draw-free 5ms at either end.
	if mean := sum / n; mean < 43*time.Millisecond || mean > 57*time.Millisecond || lo > 5*time.Millisecond || hi < 95*time.Millisecond {
		t.Fatalf("first waits: mean %v, range %v to %v; want uniform over [0, %v]", mean, lo, hi, initial)
	}
}

// TestRetryLoopOnFakeClock runs the loop every caller writes (Export,
// Classify, wait Backoff.Next(hint)) against real gRPC and HTTP servers
// that throttle for 30s, on synctest's clock. The servers listen on
// in-memory connections (bufconn), whose blocking the bubble sees as
// durable, where loopback sockets would stop its clock. Each wait,
// measured at the server, lies between the hint and the larger of the
// hint and the step, and the attempts stay within what the backoff allows.
func TestRetryLoopOnFakeClock(t *testing.T) {
	const (
		window = 30 * time.Second
		limit  = 1000 // attempts let through to end a tight loop
		// Backoff of 100ms doubling to 5s, each wait uniform in [0, step]:
		// 17 attempts in 30s on average. More than 40 would take 33 waits
		// summing under 30s where their mean is 82s: odds below 1e-11.
		maxAttempts = 40
	)
	type server func(t *testing.T, lis *bufconn.Listener, a *otlptest.Attempts) string // returns the endpoint
	grpcServer := func(code codes.Code, hint time.Duration) server {
		return func(t *testing.T, lis *bufconn.Listener, a *otlptest.Attempts) string {
			st, err := status.New(code, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(hint)})
			if err != nil {
				t.Fatal(err)
			}
			serveGRPC(t, lis, func(context.Context, []byte) ([]byte, error) {
				if a.Failing(window, limit) {
					return nil, st.Err()
				}
				return nil, nil
			})
			return "passthrough:///sink"
		}
	}
	httpServer := func(code int, retryAfter string) server {
		return func(t *testing.T, lis *bufconn.Listener, a *otlptest.Attempts) string {
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if a.Failing(window, limit) {
					w.Header().Set("Retry-After", retryAfter)
					w.WriteHeader(code)
				}
			})}
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = srv.Serve(lis)
			}()
			t.Cleanup(func() {
				srv.Close()
				<-done
			})
			return "http://sink/v1/traces"
		}
	}
	for _, tc := range []struct {
		name  string
		hint  time.Duration // every wait is at least this
		serve server
	}{
		{"gRPC UNAVAILABLE RetryInfo 0s", 0, grpcServer(codes.Unavailable, 0)},
		{"gRPC RESOURCE_EXHAUSTED RetryInfo 0s", 0, grpcServer(codes.ResourceExhausted, 0)},
		{"gRPC RESOURCE_EXHAUSTED RetryInfo 2s", 2 * time.Second, grpcServer(codes.ResourceExhausted, 2*time.Second)},
		{"HTTP 429 Retry-After 0", 0, httpServer(http.StatusTooManyRequests, "0")},
		{"HTTP 503 Retry-After garbage", 0, httpServer(http.StatusServiceUnavailable, "soon")},
		{"HTTP 503 Retry-After 2", 2 * time.Second, httpServer(http.StatusServiceUnavailable, strconv.Itoa(2))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				lis := bufconn.Listen(1 << 20)
				a := &otlptest.Attempts{}
				endpoint := tc.serve(t, lis, a)
				c := newClient(t, Config{Endpoint: endpoint, Dialer: func(ctx context.Context, _ string) (net.Conn, error) {
					return lis.DialContext(ctx)
				}})
				b := Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second}
				for {
					_, err := c.Export(context.Background(), []byte{})
					if err == nil {
						break
					}
					retry, hint := Classify(err)
					if !retry {
						t.Fatalf("attempt %d: %v is not retryable", len(a.All()), err)
					}
					time.Sleep(b.Next(hint))
				}

				at := a.All()
				if n := len(at); n > maxAttempts || n < 2 {
					t.Errorf("%d attempts in %v, want 2 to %d (backoff, not a tight loop)", n, at[len(at)-1].Sub(at[0]), maxAttempts)
				}
				step := b.Initial
				for i := 1; i < len(at); i++ {
					if gap := at[i].Sub(at[i-1]); gap < tc.hint || gap > max(step, tc.hint) {
						t.Errorf("wait before attempt %d = %v, want between the hint %v and max(step %v, hint)", i+1, gap, tc.hint, step)
					}
					step = min(2*step, b.Max)
				}
			})
		})
	}
}
