package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/internal/rawcodec"
)

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// sendStats is what the sender did, updated live for the progress display.
type sendStats struct {
	spansSent      atomic.Int64 // accepted by the sampler
	requestsSent   atomic.Int64
	spansRefused   atomic.Int64 // in requests finally refused (undelivered)
	spansUnsent    atomic.Int64 // in requests not sent: the send was cut short
	retries        atomic.Int64
	maxLagNanos    atomic.Int64 // worst delay of a send behind its schedule
	firstSend      atomic.Int64 // unix nanos
	lastSendFinish atomic.Int64
}

// latencies collects ingest RPC latencies: a total histogram and one per
// second of the run, for the plot.
type latencies struct {
	mu        sync.Mutex
	total     *hdrhistogram.Histogram
	perSecond []*hdrhistogram.Histogram
	start     time.Time
}

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3) // microseconds
}

func newLatencies(start time.Time) *latencies {
	return &latencies{total: newHistogram(), start: start}
}

func (l *latencies) record(at time.Time, d time.Duration) {
	us := max(1, d.Microseconds())
	sec := int(at.Sub(l.start) / time.Second)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total.RecordValue(us)
	for len(l.perSecond) <= sec {
		l.perSecond = append(l.perSecond, newHistogram())
	}
	if sec >= 0 {
		l.perSecond[sec].RecordValue(us)
	}
}

// client sends raw OTLP requests over one connection.
type client interface {
	// export returns nil, a retryable error (errRetry), or a final error.
	export(ctx context.Context, body []byte) error
	close()
}

var errRetry = errors.New("retryable")

type grpcClient struct{ conn *grpc.ClientConn }

func newGRPCClient(addr string, tc *tls.Config) (*grpcClient, error) {
	creds := insecure.NewCredentials()
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	return &grpcClient{conn: conn}, nil
}

func (c *grpcClient) export(ctx context.Context, body []byte) error {
	var resp []byte
	err := c.conn.Invoke(ctx, exportMethod, &body, &resp, grpc.ForceCodecV2(rawcodec.Codec{}))
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted:
		return fmt.Errorf("%w: %v", errRetry, err)
	}
	return err
}

func (c *grpcClient) close() { c.conn.Close() }

type httpClient struct {
	url string
	hc  *http.Client
}

func newHTTPClient(addr string, tc *tls.Config) *httpClient {
	// One transport per connection, so load spreads like separate SDKs.
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, IdleConnTimeout: time.Minute, TLSClientConfig: tc}
	scheme := "http://"
	if tc != nil {
		scheme = "https://"
	}
	return &httpClient{url: scheme + addr + "/v1/traces", hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (c *httpClient) export(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", errRetry, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("%w: HTTP %d", errRetry, resp.StatusCode)
	}
	return fmt.Errorf("HTTP %d", resp.StatusCode)
}

func (c *httpClient) close() { c.hc.CloseIdleConnections() }

// sender replays a schedule over Connections connections, spread over the
// targets round-robin. Each connection sends its requests in order; in
// fixed-rate mode each at its scheduled time, in max-rate mode at once.
type sender struct {
	sched    *workload.Schedule
	clients  []client
	targets  []string      // per client
	down     []atomic.Bool // per client: its target left; send elsewhere
	maxRate  bool
	retryFor time.Duration // give a request up after retrying this long
	stats    *sendStats
	lat      *latencies

	cutOnce sync.Once
	cutCh   chan struct{} // closed by cut
}

func newSender(sched *workload.Schedule, targets []string, protocol string, connections int, tc *tls.Config) (*sender, error) {
	s := &sender{sched: sched, stats: &sendStats{}, retryFor: 10 * time.Second, cutCh: make(chan struct{})}
	for i := range connections {
		addr := targets[i%len(targets)]
		var c client
		switch protocol {
		case "grpc":
			gc, err := newGRPCClient(addr, tc)
			if err != nil {
				s.close()
				return nil, err
			}
			c = gc
		case "http":
			c = newHTTPClient(addr, tc)
		default:
			return nil, fmt.Errorf("protocol must be grpc or http, got %q", protocol)
		}
		s.clients = append(s.clients, c)
		s.targets = append(s.targets, addr)
	}
	s.down = make([]atomic.Bool, len(s.clients))
	return s, nil
}

// markDown stops sending to target, as a load balancer does once a node
// fails its readiness check: its connections' requests go to the next
// target.
func (s *sender) markDown(target string) {
	for i, t := range s.targets {
		if t == target {
			s.down[i].Store(true)
		}
	}
}

// pick returns client c, or the next one whose target is up.
func (s *sender) pick(c int) int {
	for i := range s.clients {
		if j := (c + i) % len(s.clients); !s.down[j].Load() {
			return j
		}
	}
	return c
}

func (s *sender) close() {
	for _, c := range s.clients {
		c.close()
	}
}

// cut ends the send early: requests already started finish (with their
// retries), the others are not sent, and their traces are marked
// undelivered (see unsent). Safe to call more than once, from any
// goroutine.
func (s *sender) cut() { s.cutOnce.Do(func() { close(s.cutCh) }) }

// unsent counts the requests that cut kept from being sent, and marks
// their traces undelivered: a trace with spans among them cannot arrive
// whole, and one with none sent at all cannot arrive, through no fault of
// the engine.
func (s *sender) unsent(reqs []*workload.Request) {
	for _, r := range reqs {
		s.stats.spansUnsent.Add(int64(r.Spans))
		for _, t := range r.Traces {
			s.sched.Manifest.Traces[t].Undelivered.Store(true)
		}
	}
}

// run sends the whole schedule, starting now. It returns when every
// request is sent, given up or cut, or ctx is done.
func (s *sender) run(ctx context.Context, start time.Time) {
	s.lat = newLatencies(start)
	byConn := make([][]*workload.Request, len(s.clients))
	for i := range s.sched.Requests {
		r := &s.sched.Requests[i]
		c := r.Conn % len(s.clients)
		byConn[c] = append(byConn[c], r)
	}
	s.stats.firstSend.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	for c, reqs := range byConn {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runConn(ctx, start, c, reqs)
		}()
	}
	wg.Wait()
	s.stats.lastSendFinish.Store(time.Now().UnixNano())
}

func (s *sender) runConn(ctx context.Context, start time.Time, c int, reqs []*workload.Request) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i, r := range reqs {
		if !s.maxRate {
			if wait := time.Until(start.Add(r.At)); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-s.cutCh:
				case <-ctx.Done():
					return
				}
			} else if lag := -wait; lag > time.Duration(s.stats.maxLagNanos.Load()) {
				s.stats.maxLagNanos.Store(int64(lag)) // one writer per connection; a rare lost max is harmless
			}
		}
		if ctx.Err() != nil {
			return
		}
		select {
		case <-s.cutCh:
			s.unsent(reqs[i:])
			return
		default:
		}
		s.sendOne(ctx, c, r)
	}
}

// sendOne sends a request on connection c, retrying retryable refusals
// with backoff as an SDK would, on the next connection (any node takes any
// span; a node may be leaving); a request still refused after retryFor
// marks its traces undelivered, so the sink does not blame the engine for
// them.
func (s *sender) sendOne(ctx context.Context, c int, r *workload.Request) {
	deadline := time.Now().Add(s.retryFor)
	backoff := 50 * time.Millisecond
	c = s.pick(c)
	for {
		t0 := time.Now()
		err := s.clients[c].export(ctx, r.Body)
		s.lat.record(t0, time.Since(t0))
		if err == nil {
			s.stats.spansSent.Add(int64(r.Spans))
			s.stats.requestsSent.Add(1)
			return
		}
		if !errors.Is(err, errRetry) || time.Now().Add(backoff).After(deadline) || ctx.Err() != nil {
			s.stats.spansRefused.Add(int64(r.Spans))
			for _, t := range r.Traces {
				s.sched.Manifest.Traces[t].Undelivered.Store(true)
			}
			return
		}
		s.stats.retries.Add(1)
		c = s.pick((c + 1) % len(s.clients))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, time.Second)
	}
}
