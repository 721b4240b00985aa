package export

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
)

// deliveredTrace is a kept trace that wants to know when the exporter is
// done with it, as the buffer's write-ahead log does. A second call fails
// the test; check, if set, runs inside Delivered.
type deliveredTrace struct {
	*testTrace
	t     *testing.T
	check func(d *deliveredTrace, sent bool)
	calls atomic.Int32
	sent  atomic.Bool
}

func (d *deliveredTrace) Delivered(sent bool) {
	if n := d.calls.Add(1); n > 1 {
		d.t.Errorf("trace %x: Delivered called %d times", d.id, n)
		return
	}
	d.sent.Store(sent)
	if d.check != nil {
		d.check(d, sent)
	}
}

func deliveredTraces(t *testing.T, traces []*testTrace, check func(*deliveredTrace, bool)) []*deliveredTrace {
	ds := make([]*deliveredTrace, len(traces))
	for i, tr := range traces {
		ds[i] = &deliveredTrace{testTrace: tr, t: t, check: check}
	}
	return ds
}

// checkTold checks that each of ds was told exactly once, sent == want.
func checkTold(t *testing.T, ds []*deliveredTrace, want bool) {
	t.Helper()
	for _, d := range ds {
		if n := d.calls.Load(); n != 1 {
			t.Errorf("trace %x: Delivered called %d times, want 1", d.id, n)
		} else if d.sent.Load() != want {
			t.Errorf("trace %x: Delivered(%v), want %v", d.id, d.sent.Load(), want)
		}
	}
}

// spansByTrace counts the spans of each trace in reqs.
func spansByTrace(reqs []*coltracepb.ExportTraceServiceRequest) map[[16]byte]int {
	n := map[[16]byte]int{}
	for _, req := range reqs {
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					n[[16]byte(sp.TraceId)]++
				}
			}
		}
	}
	return n
}

// spansOf counts the spans of trace id the sink has accepted.
func (s *grpcSink) spansOf(id [16]byte) int {
	_, reqs := s.received()
	return spansByTrace(reqs)[id]
}

// requestsOf counts the accepted requests holding spans of trace id.
func (s *grpcSink) requestsOf(id [16]byte) int {
	_, reqs := s.received()
	n := 0
	for _, req := range reqs {
		if spansByTrace([]*coltracepb.ExportTraceServiceRequest{req})[id] > 0 {
			n++
		}
	}
	return n
}

func TestDeliveredAfterSent(t *testing.T) {
	f := newFixture(t, 30, otlptest.DefaultBatch())
	sink := startGRPCSink(t, nil)
	cfg := fastRetries(DefaultConfig())
	cfg.Endpoint = sink.addr
	cfg.BatchMaxBytes = 16 << 10 // several requests, sent by several workers
	e, reg := newTestExporter(t, cfg)
	// The sink records a request before it answers: every span of a trace
	// must be there when the trace is told.
	ds := deliveredTraces(t, f.traces, func(d *deliveredTrace, sent bool) {
		if got := sink.spansOf(d.id); got != len(d.spans) {
			d.t.Errorf("trace %x told Delivered(%v) when the sink had %d of its %d spans", d.id, sent, got, len(d.spans))
		}
	})
	var told, plain []*deliveredTrace
	for i, d := range ds {
		if i%3 == 2 { // traces that do not ask are exported as before
			e.ExportTrace(d.testTrace, Keep{})
			plain = append(plain, d)
			continue
		}
		e.ExportTrace(d, Keep{Threshold: 1 << 52})
		told = append(told, d)
	}
	// Told as their requests finish (BatchTimeout at the latest), not
	// when Shutdown drains.
	waitFor(t, "every trace told", func() bool {
		for _, d := range told {
			if d.calls.Load() == 0 {
				return false
			}
		}
		return true
	})
	shutdown(t, e)

	checkTold(t, told, true)
	for _, d := range plain {
		if d.calls.Load() != 0 {
			t.Errorf("trace %x was exported as a plain Trace but told", d.id)
		}
	}
	_, reqs := sink.received()
	if len(reqs) < 2 {
		t.Errorf("sink got %d requests, want several", len(reqs))
	}
	checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: f.spans()}, map[string]int64{})
}

func TestDeliveredSplitTrace(t *testing.T) {
	f := newFixture(t, 31, otlptest.Batch{Services: 3, Traces: 2, SpansPerTrace: 40, AttrsPerSpan: 8, SpanDurationNs: 1})
	max := f.traces[0].requestSize() / 3

	t.Run("sent", func(t *testing.T) {
		sink := startGRPCSink(t, nil)
		cfg := fastRetries(DefaultConfig())
		cfg.Endpoint = sink.addr
		cfg.BatchMaxBytes = max // parts sent in parallel by the workers
		e, reg := newTestExporter(t, cfg)
		ds := deliveredTraces(t, f.traces, func(d *deliveredTrace, sent bool) {
			if got := sink.spansOf(d.id); got != len(d.spans) {
				d.t.Errorf("trace %x told Delivered(%v) when the sink had %d of its %d spans", d.id, sent, got, len(d.spans))
			}
		})
		for _, d := range ds {
			e.ExportTrace(d, Keep{})
		}
		shutdown(t, e)
		checkTold(t, ds, true)
		for _, d := range ds {
			if n := sink.requestsOf(d.id); n < 3 {
				t.Errorf("trace %x went in %d requests, want at least 3", d.id, n)
			}
		}
		checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: f.spans()}, map[string]int64{})
	})

	t.Run("one part rejected", func(t *testing.T) {
		sink := startGRPCSink(t, func(_ context.Context, call int) (*coltracepb.ExportTraceServiceResponse, error) {
			if call == 2 {
				return nil, status.Error(codes.InvalidArgument, "bad span")
			}
			return nil, nil
		})
		cfg := fastRetries(DefaultConfig())
		cfg.Endpoint = sink.addr
		cfg.BatchMaxBytes = max
		e, reg := newTestExporter(t, cfg)
		var parts atomic.Int32 // requests the sink answered when d was told
		ds := deliveredTraces(t, f.traces[:1], func(d *deliveredTrace, sent bool) {
			// The only trace: told after every part of it is counted.
			// (Stats takes no lock: safe to call from Delivered.)
			if s := e.Stats(); s.Pending != 0 {
				d.t.Errorf("trace told Delivered(%v) with Stats %+v: parts pending", sent, s)
			}
			calls, _ := sink.received()
			parts.Store(int32(calls))
		})
		e.ExportTrace(ds[0], Keep{})
		shutdown(t, e)
		checkTold(t, ds, false)
		calls, _ := sink.received()
		if calls < 3 || int(parts.Load()) != calls {
			t.Errorf("told after %d of %d requests, want after all (at least 3)", parts.Load(), calls)
		}
		s := e.Stats()
		if s.Failed == 0 || s.Sent == 0 || s.Sent+s.Failed != int64(len(f.traces[0].spans)) {
			t.Errorf("Stats = %+v, want one part failed and the others sent", s)
		}
		checkAccounting(t, e, reg, s, nil)
	})
}

func TestDeliveredFailures(t *testing.T) {
	f := newFixture(t, 32, otlptest.Batch{Services: 2, Traces: 4, SpansPerTrace: 5, AttrsPerSpan: 3, SpanDurationNs: 1e6})
	all := f.spans()
	grpcAnswering := func(resp *coltracepb.ExportTraceServiceResponse, err error) func(*testing.T) string {
		return func(t *testing.T) string {
			return startGRPCSink(t, func(context.Context, int) (*coltracepb.ExportTraceServiceResponse, error) {
				return resp, err
			}).addr
		}
	}
	for _, tc := range []struct {
		name     string
		endpoint func(*testing.T) string
		sent     int64
		failed   map[string]int64
	}{
		{
			name:     "rejected",
			endpoint: grpcAnswering(nil, status.Error(codes.InvalidArgument, "bad span")),
			failed:   map[string]int64{"rejected": all},
		},
		{
			name:     "unavailable until retries are exhausted",
			endpoint: grpcAnswering(nil, status.Error(codes.Unavailable, "down")),
			failed:   map[string]int64{"retries_exhausted": all},
		},
		{
			name:     "unreachable",
			endpoint: func(*testing.T) string { return "127.0.0.1:1" }, // reserved port, nothing listens
			failed:   map[string]int64{"retries_exhausted": all},
		},
		{
			name: "partial success over gRPC",
			endpoint: grpcAnswering(&coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{
				RejectedSpans: 1, ErrorMessage: "1 span too old"}}, nil),
			sent: all - 1, failed: map[string]int64{"rejected": 1},
		},
		{
			name: "partial success over HTTP",
			endpoint: func(t *testing.T) string {
				return startHTTPSink(t, func(_ int, w http.ResponseWriter) int {
					b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 2}})
					w.Header().Set("Content-Type", "application/x-protobuf")
					_, _ = w.Write(b)
					return http.StatusOK
				}).srv.URL
			},
			sent: all - 2, failed: map[string]int64{"rejected": 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fastRetries(DefaultConfig())
			cfg.Endpoint = tc.endpoint(t)
			cfg.Workers = 1
			cfg.RetryMaxElapsed = 50 * time.Millisecond
			e, reg := newTestExporter(t, cfg)
			// One request holds every trace: each is told after all of
			// its spans are counted (Stats takes no lock).
			ds := deliveredTraces(t, f.traces, func(d *deliveredTrace, sent bool) {
				if s := e.Stats(); s.Pending != 0 {
					d.t.Errorf("trace %x told Delivered(%v) with Stats %+v", d.id, sent, s)
				}
			})
			for _, d := range ds {
				e.ExportTrace(d, Keep{})
			}
			shutdown(t, e)
			checkTold(t, ds, false)
			checkAccounting(t, e, reg, Stats{Accepted: all, Sent: tc.sent, Failed: all - tc.sent}, tc.failed)
		})
	}
}

func TestDeliveredQueueFull(t *testing.T) {
	f, _, cfg, entered, release := blockedQueueSetup(t, 33)
	e, reg := newTestExporter(t, cfg)
	ds := deliveredTraces(t, f.traces, nil)

	e.ExportTrace(ds[0], Keep{}) // taken by the worker, which blocks in the sink
	<-entered
	e.ExportTrace(ds[1], Keep{}) // waits in the queue
	for _, d := range ds[2:] {   // dropped: told before ExportTrace returns
		e.ExportTrace(d, Keep{})
		if d.calls.Load() != 1 || d.sent.Load() {
			t.Errorf("trace %x dropped on a full queue: %d calls, sent %v; want Delivered(false) at once",
				d.id, d.calls.Load(), d.sent.Load())
		}
	}
	for _, d := range ds[:2] {
		if n := d.calls.Load(); n != 0 {
			t.Errorf("trace %x told %d times before its request was answered", d.id, n)
		}
	}
	close(release)
	shutdown(t, e)
	checkTold(t, ds[:2], true)
	checkTold(t, ds[2:], false)
	per := int64(len(f.traces[0].spans))
	dropped := int64(len(f.traces)-2) * per
	checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: 2 * per, Failed: dropped},
		map[string]int64{"queue_full": dropped})
}

func TestDeliveredAtOnce(t *testing.T) {
	f := newFixture(t, 34, otlptest.Batch{Services: 2, Traces: 2, SpansPerTrace: 4, SpanDurationNs: 1})
	sink := startGRPCSink(t, nil)
	cfg := fastRetries(DefaultConfig())
	cfg.Endpoint = sink.addr
	e, reg := newTestExporter(t, cfg)

	empty := &deliveredTrace{testTrace: &testTrace{}, t: t}
	e.ExportTrace(empty, Keep{})
	checkTold(t, []*deliveredTrace{empty}, true) // nothing to send: done at once

	tr := f.traces[1]
	sent := &deliveredTrace{testTrace: tr, t: t}
	e.ExportTrace(sent, Keep{})
	shutdown(t, e)
	checkTold(t, []*deliveredTrace{sent}, true)

	late := &deliveredTrace{testTrace: f.traces[0], t: t}
	e.ExportTrace(late, Keep{}) // after Shutdown
	checkTold(t, []*deliveredTrace{late}, false)

	n := int64(len(tr.spans))
	checkAccounting(t, e, reg, Stats{Accepted: n + 4, Sent: n, Failed: 4},
		map[string]int64{"shutdown": 4})
}

func TestDeliveredShutdownCancelled(t *testing.T) {
	f := newFixture(t, 35, otlptest.DefaultBatch())
	split := newFixture(t, 36, otlptest.Batch{Services: 3, Traces: 2, SpansPerTrace: 40, AttrsPerSpan: 8, SpanDurationNs: 1})
	sink := startGRPCSink(t, func(context.Context, int) (*coltracepb.ExportTraceServiceResponse, error) {
		return nil, status.Error(codes.Unavailable, "down")
	})
	cfg := fastRetries(DefaultConfig())
	cfg.Endpoint = sink.addr
	cfg.Workers = 2
	cfg.BatchMaxBytes = 8 << 10 // many requests: two retrying, the rest queued, one open
	e, reg := newTestExporter(t, cfg)
	ds := deliveredTraces(t, append(split.traces, f.traces...), nil)
	for _, d := range ds {
		e.ExportTrace(d, Keep{})
	}
	waitFor(t, "a failed attempt", func() bool { calls, _ := sink.received(); return calls > 0 })
	if q := metric(t, reg, "tailsift_export_queue_requests"); q < 2 {
		t.Errorf("%v requests queued at Shutdown, want several", q)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want an error wrapping context.Canceled", err)
	}
	checkTold(t, ds, false)
	all := f.spans() + split.spans()
	checkAccounting(t, e, reg, Stats{Accepted: all, Failed: all}, map[string]int64{"shutdown": all})
}

func TestDeliveredConcurrent(t *testing.T) {
	const goroutines = 8
	sink := startGRPCSink(t, func(_ context.Context, call int) (*coltracepb.ExportTraceServiceResponse, error) {
		if call%5 == 0 {
			return nil, status.Error(codes.InvalidArgument, "bad span")
		}
		return nil, nil
	})
	cfg := fastRetries(DefaultConfig())
	cfg.Endpoint = sink.addr
	cfg.BatchMaxBytes = 8 << 10 // two usual traces a request; big ones split
	cfg.QueueSize = 128         // the burst still overflows it at times
	e, reg := newTestExporter(t, cfg)

	var ds [goroutines][]*deliveredTrace
	var all int64
	for g := range goroutines {
		b := otlptest.DefaultBatch()
		if g%2 == 1 {
			b = otlptest.Batch{Services: 3, Traces: 8, SpansPerTrace: 40, AttrsPerSpan: 8, SpanDurationNs: 1}
		}
		f := newFixture(t, 40+uint64(g), b)
		ds[g] = deliveredTraces(t, f.traces, nil)
		all += f.spans()
	}
	var wg sync.WaitGroup
	done := make(chan struct{}, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			defer func() { done <- struct{}{} }()
			for _, d := range ds[g] {
				e.ExportTrace(d, Keep{})
			}
		})
	}
	for range goroutines / 2 {
		<-done
	}
	shutdown(t, e) // the others race with it: some of their traces come late
	wg.Wait()

	var traces, sent int
	_, reqs := sink.received()
	atSink := spansByTrace(reqs)
	for g := range goroutines {
		for _, d := range ds[g] {
			traces++
			if n := d.calls.Load(); n != 1 {
				t.Errorf("trace %x: Delivered called %d times, want 1", d.id, n)
				continue
			}
			if d.sent.Load() {
				sent++
				if atSink[d.id] != len(d.spans) {
					t.Errorf("trace %x told sent, but the sink has %d of its %d spans", d.id, atSink[d.id], len(d.spans))
				}
			}
		}
	}
	s := e.Stats()
	if s.Accepted != all || s.Pending != 0 {
		t.Errorf("Stats = %+v, want all %d spans sent or failed", s, all)
	}
	if sent == 0 || sent == traces {
		t.Errorf("%d of %d traces sent, want some sent and some failed", sent, traces)
	}
	t.Logf("%d traces, %d sent; Stats %+v, failed %v", traces, sent, s, failedBy(t, reg))
	checkAccounting(t, e, reg, s, nil)
}
