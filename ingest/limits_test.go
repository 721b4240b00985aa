package ingest_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/ingest"
	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlpserver"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/rawcodec"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// gate is a Consumer that holds each request until the test lets one
// through (a token) or all (close).
type gate struct {
	in     atomic.Int64 // requests that reached Consume
	spans  atomic.Int64 // spans let through
	tokens chan struct{}
	once   sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{tokens: make(chan struct{}, 1000)}
	t.Cleanup(g.open)
	return g
}

func (g *gate) Consume(ctx context.Context, req *otlpwire.Request) error {
	g.in.Add(1)
	select {
	case <-g.tokens:
		g.spans.Add(int64(len(req.Spans)))
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// open lets every request through from now on.
func (g *gate) open() { g.once.Do(func() { close(g.tokens) }) }

// limited is a receiver with a registry to read its metrics from.
type limited struct {
	recv *ingest.Receiver
	reg  *prometheus.Registry
}

func startLimited(t *testing.T, cfg ingest.Config, c ingest.Consumer) *limited {
	t.Helper()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	reg := prometheus.NewRegistry()
	recv, err := ingest.New(cfg, c, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the gate's cleanup, so it runs first: requests
	// still held fail with their context, and Shutdown does not wait.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		recv.Shutdown(ctx)
	})
	return &limited{recv: recv, reg: reg}
}

func (l *limited) value(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return metricstest.Value(t, l.reg, name, labels)
}

func (l *limited) inflight(t *testing.T) (bytes, requests float64) {
	t.Helper()
	return l.value(t, "tailsift_ingest_inflight_bytes", nil), l.value(t, "tailsift_ingest_inflight_requests", nil)
}

// waitInflight waits until the in-flight gauges read bytes and requests.
func (l *limited) waitInflight(t *testing.T, bytes, requests float64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%.0f bytes and %.0f requests in flight", bytes, requests), func() bool {
		b, r := l.inflight(t)
		return b == bytes && r == requests
	})
}

// waitFor polls cond for a bounded time, for a busy machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// stalledExport starts an Export of body over a connection of its own
// that stalls after sending after bytes of it; leave closes the
// connection, as a client that disconnects mid-upload. The call's error
// is sent on done. A proven connection first had an ordinary request
// accepted: its uploads are not limited to the half of the budget that
// new connections share.
func stalledExport(t *testing.T, addr string, body []byte, after int, proven bool) (leave func(), done <-chan error) {
	t.Helper()
	conns := make(chan *otlptest.StallingConn, 1)
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			sc := otlptest.NewStallingConn(c, 1<<30)
			select {
			case conns <- sc:
			default: // a reconnection after leave
			}
			return sc, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	if proven {
		_, raw := validRequest(t, 77)
		if err := exportRaw(context.Background(), cc, raw); err != nil {
			t.Fatalf("proving the connection: %v", err)
		}
	} else {
		cc.Connect()
	}
	sc := <-conns
	sc.StallAfter(after)
	errs := make(chan error, 1)
	go func() {
		var resp []byte
		errs <- cc.Invoke(context.Background(), otlpserver.ExportMethod, &body, &resp,
			grpc.ForceCodecV2(rawcodec.Codec{}), grpc.WaitForReady(false))
	}()
	var once sync.Once
	leave = func() { once.Do(func() { sc.Close(); cc.Close() }) }
	t.Cleanup(leave)
	return leave, errs
}

func exportRaw(ctx context.Context, cc *grpc.ClientConn, body []byte) error {
	var resp []byte
	return cc.Invoke(ctx, otlpserver.ExportMethod, &body, &resp, grpc.ForceCodecV2(rawcodec.Codec{}))
}

func dialGRPC(t *testing.T, l *limited) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(l.recv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// retryInfo returns err's RetryInfo delay if it is ResourceExhausted.
func retryInfo(t *testing.T, err error) time.Duration {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	t.Fatalf("ResourceExhausted without RetryInfo: OTLP clients would not retry (%v)", err)
	return 0
}

// TestGRPCInflightBudget fills the in-flight budget with two stalled
// uploads (on connections that had a request accepted, which may use all
// of it): each holds max_request_size from the moment its stream opened,
// a third request is refused retryably, and every byte comes back when
// the stalled clients leave mid-upload.
func TestGRPCInflightBudget(t *testing.T) {
	cfg := ingest.DefaultConfig()
	cfg.MaxRequestBytes = 256 << 10
	perStream := float64(cfg.MaxRequestBytes + ingest.StreamOverhead)
	cfg.MaxInflightBytes = int64(2 * perStream)
	g := newGate(t)
	l := startLimited(t, cfg, g)
	addr := l.recv.GRPCAddr().String()

	g.tokens <- struct{}{} // for the requests that prove the two connections
	g.tokens <- struct{}{}
	big := make([]byte, 200<<10) // more than the 64 KiB stream window: the upload stops midway
	leave1, done1 := stalledExport(t, addr, big, 100<<10, true)
	leave2, done2 := stalledExport(t, addr, big, 100<<10, true)
	l.waitInflight(t, 2*perStream, 2)

	_, raw := validRequest(t, 1)
	cc := dialGRPC(t, l)
	err := exportRaw(context.Background(), cc, raw)
	if d := retryInfo(t, err); d <= 0 || !strings.Contains(err.Error(), "max_inflight_bytes") {
		t.Fatalf("refusal %v (retry after %v): want a retry delay and the setting's name", err, d)
	}
	if got := l.value(t, "tailsift_ingest_requests_refused_total", map[string]string{"protocol": "grpc", "reason": "inflight_bytes"}); got != 1 {
		t.Fatalf("refused{inflight_bytes} = %v, want 1", got)
	}
	if got := l.value(t, "tailsift_ingest_requests_total", map[string]string{"protocol": "grpc", "outcome": "overloaded"}); got != 1 {
		t.Fatalf("requests{overloaded} = %v, want 1", got)
	}

	leave1()
	if err := <-done1; err == nil {
		t.Fatal("a client that left mid-upload got OK")
	}
	l.waitInflight(t, perStream, 1)
	g.tokens <- struct{}{}
	if err := exportRaw(context.Background(), cc, raw); err != nil {
		t.Fatalf("with room again: %v", err)
	}
	leave2()
	<-done2
	l.waitInflight(t, 0, 0)
	if g.spans.Load() != 3*50 {
		t.Fatalf("consumer took %d spans, want 150", g.spans.Load())
	}
}

// TestFreshConnectionsShareHalf: uploads on connections that have had no
// request accepted share half the budget, so a flood of new connections
// that stall cannot keep out a client that was already sending.
func TestFreshConnectionsShareHalf(t *testing.T) {
	cfg := ingest.DefaultConfig()
	cfg.MaxRequestBytes = 256 << 10
	perStream := float64(cfg.MaxRequestBytes + ingest.StreamOverhead)
	cfg.MaxInflightBytes = int64(4 * perStream)
	g := newGate(t)
	g.open()
	l := startLimited(t, cfg, g)
	addr := l.recv.GRPCAddr().String()
	_, raw := validRequest(t, 1)
	sending := dialGRPC(t, l)
	if err := exportRaw(context.Background(), sending, raw); err != nil {
		t.Fatal(err)
	}

	big := make([]byte, 200<<10)
	stalledExport(t, addr, big, 100<<10, false)
	stalledExport(t, addr, big, 100<<10, false)
	l.waitInflight(t, 2*perStream, 2) // the half new connections share
	_, third := stalledExport(t, addr, big, 100<<10, false)
	if d := retryInfo(t, <-third); d <= 0 {
		t.Fatalf("a third new connection's upload: retry after %v", d)
	}
	for range 3 { // room for two more uploads: the other half
		if err := exportRaw(context.Background(), sending, raw); err != nil {
			t.Fatalf("the client already sending: %v", err)
		}
	}
}

// TestGRPCRequestTimeout: a gRPC upload that has taken longer than
// request_timeout is cancelled when the next stream comes, even with room
// to spare, and gives its budget back.
func TestGRPCRequestTimeout(t *testing.T) {
	cfg := ingest.DefaultConfig()
	cfg.RequestTimeout = 300 * time.Millisecond
	g := newGate(t)
	g.open()
	l := startLimited(t, cfg, g)
	_, done := stalledExport(t, l.recv.GRPCAddr().String(), make([]byte, 200<<10), 100<<10, false)
	waitFor(t, "the stalled upload admitted", func() bool { _, r := l.inflight(t); return r == 1 })
	time.Sleep(cfg.RequestTimeout)
	_, raw := validRequest(t, 1)
	if err := exportRaw(context.Background(), dialGRPC(t, l), raw); err != nil {
		t.Fatal(err)
	}
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("upload stalled past request_timeout: %v, want Canceled", err)
	}
	l.waitInflight(t, 0, 0)
}

// httpRoom sets cfg's budget so that HTTP requests may hold n bytes: the
// budget less the room kept for one gRPC upload.
func httpRoom(cfg *ingest.Config, n int) {
	cfg.MaxInflightBytes = int64(cfg.MaxRequestBytes + ingest.StreamOverhead + n)
}

// TestHTTPInflightBudget: an HTTP request holds room for what it has
// sent (in doubling steps, never past its Content-Length), so a client
// that announces much and stalls holds little; one that does not fit is
// refused mid-upload with 429 and Retry-After; and a client that leaves
// mid-upload gives everything back.
func TestHTTPInflightBudget(t *testing.T) {
	cfg := ingest.DefaultConfig()
	cfg.MaxRequestBytes = 256 << 10
	httpRoom(&cfg, 352<<10)
	g := newGate(t)
	l := startLimited(t, cfg, g)
	addr := l.recv.HTTPAddr().String()

	announcer := partialPost(t, addr, 250<<10, 1000)
	l.waitInflight(t, 64<<10, 1) // the first step, not the 250 KiB announced
	stalled := partialPost(t, addr, 250<<10, 200<<10)
	l.waitInflight(t, 64<<10+250<<10+1, 2) // 64+64+122 KiB+1: up to the Content-Length
	announcer.Close()
	l.waitInflight(t, 250<<10+1, 1)

	// 64 KiB fits beside the stalled request, 128 KiB does not.
	second := partialPost(t, addr, 200<<10, 150<<10)
	resp, err := http.ReadResponse(bufio.NewReader(second), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "max_inflight_bytes") {
		t.Fatalf("over the budget: %d Retry-After=%q %q, want 429 with Retry-After naming max_inflight_bytes", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	second.Close()

	stalled.Close() // leaves mid-upload
	l.waitInflight(t, 0, 0)
	_, raw := validRequest(t, 1)
	g.tokens <- struct{}{}
	if resp, body := post(t, &pipeline{recv: l.recv}, "application/x-protobuf", "", raw); resp.StatusCode != 200 {
		t.Fatalf("with room again: %d %s", resp.StatusCode, body)
	}
	l.waitInflight(t, 0, 0)
	if got := l.value(t, "tailsift_ingest_requests_refused_total", map[string]string{"protocol": "http", "reason": "inflight_bytes"}); got != 1 {
		t.Fatalf("refused{inflight_bytes} = %v, want 1", got)
	}
}

// TestGRPCStalledUploadCancelled: a gRPC upload holds max_request_size
// whatever it has sent, so one that stalls while others wait for room is
// cancelled once it has taken longer than max_request_size at 1 MiB/s
// (at least a second): ordinary requests get through with retries, long
// before request_timeout.
func TestGRPCStalledUploadCancelled(t *testing.T) {
	cfg := ingest.DefaultConfig()
	cfg.MaxRequestBytes = 256 << 10
	cfg.MaxInflightBytes = cfg.MinInflightBytes() // one gRPC upload at a time
	g := newGate(t)
	g.open()
	l := startLimited(t, cfg, g)
	_, stalledDone := stalledExport(t, l.recv.GRPCAddr().String(), make([]byte, 200<<10), 100<<10, false)
	l.waitInflight(t, float64(cfg.MaxRequestBytes+ingest.StreamOverhead), 1)

	_, raw := validRequest(t, 1)
	cc := dialGRPC(t, l)
	refusals := 0
	for deadline := time.Now().Add(30 * time.Second); ; refusals++ {
		err := exportRaw(context.Background(), cc, raw)
		if err == nil {
			break
		}
		if d := retryInfo(t, err); time.Now().Add(d).After(deadline) {
			t.Fatalf("still refused after %d tries: %v", refusals+1, err)
		}
		time.Sleep(100 * time.Millisecond) // a client would wait the RetryInfo delay; no need here
	}
	if err := <-stalledDone; status.Code(err) != codes.Canceled {
		t.Fatalf("the stalled upload: %v, want Canceled", err)
	}
	if refusals == 0 {
		t.Fatal("the ordinary request was never refused: the test did not test the stall")
	}
	if got := l.value(t, "tailsift_ingest_requests_refused_total", map[string]string{"protocol": "grpc", "reason": "stalled"}); got != 1 {
		t.Fatalf("refused{stalled} = %v, want 1", got)
	}
	l.waitInflight(t, 0, 0)
}

// TestHTTPStalledUploadStopped: HTTP clients that send part of a body
// and stop hold what they sent; when others need the room, the oldest one
// slower than 1 MiB/s (after a second) is stopped and told 429, and
// ordinary requests get through with retries, long before
// request_timeout.
func TestHTTPStalledUploadStopped(t *testing.T) {
	cfg := ingest.DefaultConfig()
	cfg.MaxRequestBytes = 256 << 10
	httpRoom(&cfg, 352<<10)
	g := newGate(t)
	g.open()
	l := startLimited(t, cfg, g)
	addr := l.recv.HTTPAddr().String()
	oldest := partialPost(t, addr, 250<<10, 240<<10) // holds 250 KiB+1
	l.waitInflight(t, 250<<10+1, 1)
	partialPost(t, addr, 80<<10, 75<<10) // holds 80 KiB+1: 22 KiB left, less than an ordinary request
	l.waitInflight(t, 330<<10+2, 2)

	_, raw := validRequest(t, 1)
	p := &pipeline{recv: l.recv}
	refusals := 0
	for deadline := time.Now().Add(30 * time.Second); ; refusals++ {
		resp, body := post(t, p, "application/x-protobuf", "", raw)
		if resp.StatusCode == 200 {
			break
		}
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after %d refusals: %d %s", refusals, resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if refusals == 0 {
		t.Fatal("the ordinary request was never refused: the test did not test the stall")
	}
	oldest.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(oldest), nil); err != nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the stalled upload: %v %v, want 429", resp, err)
	}
	if got := l.value(t, "tailsift_ingest_requests_refused_total", map[string]string{"protocol": "http", "reason": "stalled"}); got != 1 {
		t.Fatalf("refused{stalled} = %v, want 1", got)
	}
	l.waitInflight(t, 80<<10+1, 1) // the younger one still holds its room
}

// partialPost sends an OTLP/HTTP request's headers announcing size bytes
// and the first part of them, and returns the connection.
func partialPost(t *testing.T, addr string, size, part int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", size)
	if _, err := c.Write(make([]byte, part)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConcurrentRequests: past max_concurrent_requests (requests whose
// body is in, handed to the consumer), requests of both protocols are
// refused retryably, and served again once some finish.
func TestConcurrentRequests(t *testing.T) {
	cfg := ingest.DefaultConfig()
	cfg.MaxConcurrentRequests = 2
	g := newGate(t)
	l := startLimited(t, cfg, g)
	p := &pipeline{recv: l.recv}
	cc := dialGRPC(t, l)
	_, raw := validRequest(t, 1)

	held := make(chan error, 2)
	for range 2 {
		go func() { held <- exportRaw(context.Background(), cc, raw) }()
	}
	waitFor(t, "two requests in the consumer", func() bool { return g.in.Load() == 2 })

	err := exportRaw(context.Background(), cc, raw)
	if d := retryInfo(t, err); d <= 0 || !strings.Contains(err.Error(), "max_concurrent_requests") {
		t.Fatalf("refusal %v: want a retry delay and the setting's name", err)
	}
	resp, body := post(t, p, "application/x-protobuf", "", raw)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "max_concurrent_requests") {
		t.Fatalf("HTTP past the cap: %d Retry-After=%q %q", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	for _, proto := range []string{"grpc", "http"} {
		if got := l.value(t, "tailsift_ingest_requests_refused_total", map[string]string{"protocol": proto, "reason": "concurrent_requests"}); got != 1 {
			t.Errorf("%s refused{concurrent_requests} = %v, want 1", proto, got)
		}
	}
	g.open()
	for range 2 {
		if err := <-held; err != nil {
			t.Fatal(err)
		}
	}
	if resp, body := post(t, p, "application/x-protobuf", "", raw); resp.StatusCode != 200 {
		t.Fatalf("after the cap cleared: %d %s", resp.StatusCode, body)
	}
	l.waitInflight(t, 0, 0)
}

// TestMaxStreamsPerConnection: the server tells clients how many streams
// a connection may have, and a connection has no more in progress.
func TestMaxStreamsPerConnection(t *testing.T) {
	cfg := ingest.DefaultConfig()
	cfg.MaxStreamsPerConnection = 3
	g := newGate(t)
	l := startLimited(t, cfg, g)

	if got := serverSettings(t, l.recv.GRPCAddr().String())[settingMaxConcurrentStreams]; got != 3 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want 3", got)
	}
	cc := dialGRPC(t, l)
	_, raw := validRequest(t, 1)
	errs := make(chan error, 5)
	for range 5 {
		go func() { errs <- exportRaw(context.Background(), cc, raw) }()
	}
	waitFor(t, "three streams in the consumer", func() bool { return g.in.Load() == 3 })
	g.tokens <- struct{}{} // one finishes: a waiting call takes its stream
	waitFor(t, "a fourth stream once one finished", func() bool { return g.in.Load() == 4 })
	if _, r := l.inflight(t); r != 3 {
		t.Fatalf("%v requests in progress on one connection, want 3", r)
	}
	g.open()
	for range 5 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

const settingMaxConcurrentStreams = 0x3

// serverSettings speaks the HTTP/2 client preface and returns the
// settings of the server's first SETTINGS frame.
func serverSettings(t *testing.T, addr string) map[uint16]uint32 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00") // preface, empty SETTINGS
	var hdr [9]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatal(err)
	}
	if hdr[3] != 0x4 {
		t.Fatalf("first frame of type %d, want SETTINGS", hdr[3])
	}
	payload := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
	if _, err := io.ReadFull(c, payload); err != nil {
		t.Fatal(err)
	}
	settings := map[uint16]uint32{}
	for ; len(payload) >= 6; payload = payload[6:] {
		settings[binary.BigEndian.Uint16(payload)] = binary.BigEndian.Uint32(payload[2:])
	}
	return settings
}

// TestConnectionLimit: past max_connections a connection waits until one
// closes, then is served.
func TestConnectionLimit(t *testing.T) {
	cfg := ingest.DefaultConfig()
	cfg.MaxConnections = 2
	g := newGate(t)
	g.open()
	l := startLimited(t, cfg, g)
	addr := l.recv.HTTPAddr().String()
	var first []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		first = append(first, c)
	}
	waitFor(t, "two open connections", func() bool {
		return l.value(t, "tailsift_ingest_connections", map[string]string{"protocol": "http"}) == 2
	})
	// The third connects (the kernel completes the handshake) and sends
	// its request; it is answered only once a slot is free.
	_, raw := validRequest(t, 1)
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	fmt.Fprintf(third, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n%s", len(raw), raw)
	waitFor(t, "the listener full", func() bool {
		return l.value(t, "tailsift_ingest_connection_limit_reached_total", map[string]string{"protocol": "http"}) >= 1
	})
	first[0].Close()
	third.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the waiting connection once a slot was free: %v %v", resp, err)
	}
	if got := l.value(t, "tailsift_ingest_connections", map[string]string{"protocol": "http"}); got != 2 {
		t.Fatalf("%v open connections, want 2", got)
	}
}

// tinySpans is a request of n spans with nothing but their IDs: about 30
// bytes each on the wire, while the scan index holds far more per span.
func tinySpans(t *testing.T, n int) []byte {
	t.Helper()
	var spans []*tracepb.Span
	for i := range n {
		spans = append(spans, &tracepb.Span{TraceId: []byte{15: byte(i), 0: 1}, SpanId: []byte{7: byte(i), 0: 1}})
	}
	raw, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestScanIndexCounted: a request's scan index counts against the
// budget. One whose index the budget could never hold is refused for good
// (413, ResourceExhausted without RetryInfo); one that does not fit while
// others hold the room is refused retryably, and taken once they left.
func TestScanIndexCounted(t *testing.T) {
	cfg := ingest.DefaultConfig()
	cfg.MaxRequestBytes = 128 << 10
	perStream := cfg.MaxRequestBytes + ingest.StreamOverhead

	t.Run("never fits", func(t *testing.T) {
		raw := tinySpans(t, 4000) // about 120 KB, an index of about 620 KB
		cfg := cfg
		cfg.MaxInflightBytes = cfg.MinInflightBytes() // 352 KiB, 128 KiB of it for HTTP
		g := newGate(t)
		g.open()
		l := startLimited(t, cfg, g)
		err := exportRaw(context.Background(), dialGRPC(t, l), raw)
		if st := status.Convert(err); st.Code() != codes.ResourceExhausted || len(st.Details()) != 0 || !strings.Contains(err.Error(), "max_inflight_bytes") {
			t.Fatalf("gRPC: %v (details %v), want ResourceExhausted without RetryInfo naming max_inflight_bytes", err, st.Details())
		}
		if resp, body := post(t, &pipeline{recv: l.recv}, "application/x-protobuf", "", raw); resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("HTTP: %d %s, want 413", resp.StatusCode, body)
		}
		if g.spans.Load() != 0 {
			t.Fatalf("the consumer took %d spans of refused requests", g.spans.Load())
		}
		l.waitInflight(t, 0, 0)
	})
	t.Run("fits later", func(t *testing.T) {
		raw := tinySpans(t, 2000) // about 60 KB, an index of about 310 KB
		cfg := cfg
		cfg.MaxInflightBytes = 650 << 10 // 426 KiB of it for HTTP
		g := newGate(t)
		g.open()
		l := startLimited(t, cfg, g)
		// One stalled upload holds 224 KiB: then neither request's index
		// fits (gRPC 224+60+96+310 KiB > 650, HTTP 224+60+310 > 426),
		// though the body does.
		leave, _ := stalledExport(t, l.recv.GRPCAddr().String(), make([]byte, 100<<10), 80<<10, true)
		l.waitInflight(t, float64(perStream), 1)
		cc := dialGRPC(t, l)
		if d := retryInfo(t, exportRaw(context.Background(), cc, raw)); d <= 0 {
			t.Fatalf("gRPC: retry after %v", d)
		}
		p := &pipeline{recv: l.recv}
		if resp, body := post(t, p, "application/x-protobuf", "", raw); resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("HTTP: %d %s, want 429", resp.StatusCode, body)
		}
		for _, proto := range []string{"grpc", "http"} {
			if got := l.value(t, "tailsift_ingest_spans_refused_total", map[string]string{"protocol": proto, "reason": "overloaded"}); got != 2000 {
				t.Errorf("%s spans refused as overloaded: %v, want 2000", proto, got)
			}
		}
		leave()
		l.waitInflight(t, 0, 0)
		if err := exportRaw(context.Background(), cc, raw); err != nil {
			t.Fatalf("gRPC with room: %v", err)
		}
		if resp, body := post(t, p, "application/x-protobuf", "", raw); resp.StatusCode != 200 {
			t.Fatalf("HTTP with room: %d %s", resp.StatusCode, body)
		}
		l.waitInflight(t, 0, 0)
		if g.spans.Load() != 4050 { // and the request that proved the stalled upload's connection
			t.Fatalf("consumer took %d spans, want 4050", g.spans.Load())
		}
	})
}
