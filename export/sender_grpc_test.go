package export

import (
	"context"
	"errors"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tailsift/tailsift/internal/otlptest"
)

func TestGRPCExportsWholeTraces(t *testing.T) {
	f := newFixture(t, 1, otlptest.DefaultBatch())
	sink := startGRPCSink(t, nil)
	cfg := fastRetries(DefaultConfig())
	cfg.Endpoint = sink.addr
	cfg.BatchMaxBytes = 16 << 10 // several requests, each holding whole traces
	e, reg := newTestExporter(t, cfg)
	for _, tr := range f.traces {
		e.ExportTrace(tr, Keep{})
	}
	shutdown(t, e)

	calls, reqs := sink.received()
	if len(reqs) < 2 {
		t.Errorf("got %d requests, want several (BatchMaxBytes %d, %d bytes of spans)", len(reqs), cfg.BatchMaxBytes, len(f.raw))
	}
	checkDelivered(t, f, reqs, true)
	checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: f.spans()}, map[string]int64{})
	if ok := requests(t, reg, "ok"); ok != calls || requests(t, reg, "retry") != 0 || requests(t, reg, "failed") != 0 {
		t.Errorf("requests ok=%d retry=%d failed=%d, want ok=%d (sink calls) and no others",
			ok, requests(t, reg, "retry"), requests(t, reg, "failed"), calls)
	}
}

func TestGRPCOutcomes(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "backend restarting")
	retryInfo := func(d time.Duration) error {
		st, err := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	f := newFixture(t, 2, otlptest.Batch{Services: 2, Traces: 4, SpansPerTrace: 5, AttrsPerSpan: 3, SpanDurationNs: 1e6})
	all := f.spans()
	for _, tc := range []struct {
		name    string
		cfg     func(*Config)
		handle  func(ctx context.Context, call int) (*coltracepb.ExportTraceServiceResponse, error)
		calls   int // 0: more than one
		sent    int64
		failed  map[string]int64
		retries int // -1: at least one
		ok      int
		rejects int
	}{
		{
			name: "unavailable then ok",
			handle: func(_ context.Context, call int) (*coltracepb.ExportTraceServiceResponse, error) {
				if call <= 3 {
					return nil, unavailable
				}
				return nil, nil
			},
			calls: 4, sent: all, failed: map[string]int64{}, retries: 3, ok: 1,
		},
		{
			name: "retry info honoured",
			handle: func(_ context.Context, call int) (*coltracepb.ExportTraceServiceResponse, error) {
				if call == 1 {
					return nil, retryInfo(time.Millisecond)
				}
				return nil, nil
			},
			calls: 2, sent: all, failed: map[string]int64{}, retries: 1, ok: 1,
		},
		{
			// A hint beyond RetryMaxElapsed gives up at once, not after a
			// backoff that ignored it.
			name: "retry info beyond max elapsed",
			handle: func(context.Context, int) (*coltracepb.ExportTraceServiceResponse, error) {
				return nil, retryInfo(time.Hour)
			},
			calls: 1, failed: map[string]int64{"retries_exhausted": all}, rejects: 1,
		},
		{
			// Without RetryInfo the server says it cannot recover (a
			// request over its size limit, say): retrying would only
			// hold back the requests behind it.
			name: "resource exhausted without retry info is rejected",
			handle: func(context.Context, int) (*coltracepb.ExportTraceServiceResponse, error) {
				return nil, status.Error(codes.ResourceExhausted, "grpc: received message larger than max")
			},
			calls: 1, failed: map[string]int64{"rejected": all}, rejects: 1,
		},
		{
			name: "resource exhausted with retry info 0s then ok",
			handle: func(_ context.Context, call int) (*coltracepb.ExportTraceServiceResponse, error) {
				if call <= 3 {
					return nil, retryInfo(0)
				}
				return nil, nil
			},
			calls: 4, sent: all, failed: map[string]int64{}, retries: 3, ok: 1,
		},
		{
			name: "cancelled then ok",
			handle: func(_ context.Context, call int) (*coltracepb.ExportTraceServiceResponse, error) {
				if call == 1 {
					return nil, status.Error(codes.Canceled, "server cancelled")
				}
				return nil, nil
			},
			calls: 2, sent: all, failed: map[string]int64{}, retries: 1, ok: 1,
		},
		{
			name: "invalid argument is rejected",
			handle: func(context.Context, int) (*coltracepb.ExportTraceServiceResponse, error) {
				return nil, status.Error(codes.InvalidArgument, "bad span")
			},
			calls: 1, failed: map[string]int64{"rejected": all}, rejects: 1,
		},
		{
			name: "partial success",
			handle: func(context.Context, int) (*coltracepb.ExportTraceServiceResponse, error) {
				return &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{
					RejectedSpans: 7, ErrorMessage: "7 spans too old"}}, nil
			},
			calls: 1, sent: all - 7, failed: map[string]int64{"rejected": 7}, ok: 1,
		},
		{
			name: "always unavailable exhausts retries",
			cfg:  func(c *Config) { c.RetryMaxElapsed = 50 * time.Millisecond },
			handle: func(context.Context, int) (*coltracepb.ExportTraceServiceResponse, error) {
				return nil, unavailable
			},
			failed: map[string]int64{"retries_exhausted": all}, retries: -1, rejects: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := startGRPCSink(t, tc.handle)
			cfg := fastRetries(DefaultConfig())
			cfg.Endpoint = sink.addr
			cfg.Workers = 1
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			e, reg := newTestExporter(t, cfg)
			for _, tr := range f.traces {
				e.ExportTrace(tr, Keep{})
			}
			shutdown(t, e) // one request: the batch flushed by Shutdown

			calls, reqs := sink.received()
			if tc.calls > 0 && calls != tc.calls {
				t.Errorf("sink calls = %d, want %d", calls, tc.calls)
			}
			if tc.calls == 0 && calls < 2 {
				t.Errorf("sink calls = %d, want retries", calls)
			}
			if tc.sent > 0 {
				checkDelivered(t, f, reqs, true)
			}
			var failed int64
			for _, n := range tc.failed {
				failed += n
			}
			checkAccounting(t, e, reg, Stats{Accepted: all, Sent: tc.sent, Failed: failed}, tc.failed)
			if got := requests(t, reg, "retry"); tc.retries >= 0 && got != tc.retries || tc.retries < 0 && got < 1 {
				t.Errorf("requests{retry} = %d, want %d", got, tc.retries)
			}
			if got := requests(t, reg, "ok"); got != tc.ok {
				t.Errorf("requests{ok} = %d, want %d", got, tc.ok)
			}
			if got := requests(t, reg, "failed"); got != tc.rejects {
				t.Errorf("requests{failed} = %d, want %d", got, tc.rejects)
			}
		})
	}
}

func TestQueueFull(t *testing.T) {
	f, sink, cfg, entered, release := blockedQueueSetup(t, 3)
	for _, tr := range f.traces {
		if tr.requestSize() != cfg.BatchMaxBytes {
			t.Fatalf("traces differ in size: %d and %d", tr.requestSize(), cfg.BatchMaxBytes)
		}
	}
	e, reg := newTestExporter(t, cfg)
	per := int64(len(f.traces[0].spans))

	e.ExportTrace(f.traces[0], Keep{}) // taken by the worker, which blocks in the sink
	<-entered
	checkAccounting(t, e, reg, Stats{Accepted: per, Pending: per}, map[string]int64{})

	e.ExportTrace(f.traces[1], Keep{}) // waits in the queue
	checkAccounting(t, e, reg, Stats{Accepted: 2 * per, Pending: 2 * per}, map[string]int64{})
	if q := metric(t, reg, "tailsift_export_queue_requests"); q != 1 {
		t.Errorf("queue_requests = %v, want 1", q)
	}

	for _, tr := range f.traces[2:] { // the queue is full: counted, not blocking
		e.ExportTrace(tr, Keep{})
	}
	dropped := int64(len(f.traces)-2) * per
	all := f.spans()
	checkAccounting(t, e, reg, Stats{Accepted: all, Failed: dropped, Pending: 2 * per},
		map[string]int64{"queue_full": dropped})

	close(release)
	shutdown(t, e)
	checkAccounting(t, e, reg, Stats{Accepted: all, Sent: 2 * per, Failed: dropped},
		map[string]int64{"queue_full": dropped})
	if _, reqs := sink.received(); len(reqs) != 2 {
		t.Errorf("sink got %d requests, want 2", len(reqs))
	}
}

func TestShutdownExpiredWhileSinkDown(t *testing.T) {
	f := newFixture(t, 4, otlptest.DefaultBatch())
	sink := startGRPCSink(t, func(context.Context, int) (*coltracepb.ExportTraceServiceResponse, error) {
		return nil, status.Error(codes.Unavailable, "down")
	})
	cfg := fastRetries(DefaultConfig())
	cfg.Endpoint = sink.addr
	cfg.Workers = 2
	cfg.BatchMaxBytes = 8 << 10 // many requests: two retrying, the rest queued
	e, reg := newTestExporter(t, cfg)
	for _, tr := range f.traces {
		e.ExportTrace(tr, Keep{})
	}
	waitFor(t, "a failed attempt", func() bool { calls, _ := sink.received(); return calls > 0 })

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := e.Shutdown(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want an error wrapping context.Canceled", err)
	}
	all := f.spans()
	checkAccounting(t, e, reg, Stats{Accepted: all, Failed: all}, map[string]int64{"shutdown": all})

	// Idempotent, and Export after Shutdown counts instead of panicking.
	if err2 := e.Shutdown(context.Background()); err2 != err {
		t.Errorf("second Shutdown = %v, want the first result %v", err2, err)
	}
	e.ExportTrace(f.traces[0], Keep{})
	e.ExportSpans(f.traces[0].keys[0], f.traces[0].spans[:1], Keep{})
	late := int64(len(f.traces[0].spans) + 1)
	checkAccounting(t, e, reg, Stats{Accepted: all + late, Failed: all + late}, map[string]int64{"shutdown": all + late})
}

func TestGRPCUnreachable(t *testing.T) {
	// Nothing listens: connection refused is Unavailable, retried until
	// RetryMaxElapsed, then counted.
	f := newFixture(t, 5, otlptest.Batch{Services: 1, Traces: 2, SpansPerTrace: 2, SpanDurationNs: 1})
	cfg := fastRetries(DefaultConfig())
	cfg.Endpoint = "127.0.0.1:1" // reserved port, nothing listens
	cfg.RetryMaxElapsed = 30 * time.Millisecond
	e, reg := newTestExporter(t, cfg)
	for _, tr := range f.traces {
		e.ExportTrace(tr, Keep{})
	}
	shutdown(t, e)
	all := f.spans()
	checkAccounting(t, e, reg, Stats{Accepted: all, Failed: all}, map[string]int64{"retries_exhausted": all})
}
