package export

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
)

// The batcher and the retry loop run on fake time here, over the stdout
// endpoint (no network), so their schedules can be checked exactly.

func newSyncExporter(t *testing.T, cfg Config) (*Exporter, *prometheus.Registry, *lineSink) {
	t.Helper()
	out := &lineSink{}
	cfg.Endpoint = "stdout"
	cfg.Writer = out
	e, reg := newTestExporter(t, cfg)
	return e, reg, out
}

func TestBatchTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 10, otlptest.Batch{Services: 2, Traces: 3, SpansPerTrace: 4, SpanDurationNs: 1})
		cfg := DefaultConfig()
		cfg.BatchTimeout = 200 * time.Millisecond
		e, reg, out := newSyncExporter(t, cfg)
		lines := func() int { synctest.Wait(); return len(out.attempts()) }

		start := time.Now()
		e.ExportTrace(f.traces[0], Keep{})
		time.Sleep(100 * time.Millisecond)
		e.ExportTrace(f.traces[1], Keep{}) // joins the open batch: due 200ms after its first span
		time.Sleep(99 * time.Millisecond)
		if n := lines(); n != 0 {
			t.Fatalf("%d requests after %v, want 0 before BatchTimeout", n, time.Since(start))
		}
		time.Sleep(time.Millisecond)
		if n := lines(); n != 1 {
			t.Fatalf("%d requests at BatchTimeout, want 1", n)
		}

		time.Sleep(time.Second) // idle: no requests, no timer spinning
		e.ExportTrace(f.traces[2], Keep{})
		time.Sleep(199 * time.Millisecond)
		if n := lines(); n != 1 {
			t.Fatalf("%d requests, want 1 before the second batch is due", n)
		}
		time.Sleep(time.Millisecond)
		if n := lines(); n != 2 {
			t.Fatalf("%d requests, want 2", n)
		}
		shutdown(t, e)
		checkDelivered(t, f, out.requests(t), true)
		checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: f.spans()}, map[string]int64{})
	})
}

func TestBatchSizeKeepsTracesWhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 11, otlptest.DefaultBatch())
		cfg := DefaultConfig()
		cfg.BatchMaxBytes = 3*f.traces[0].requestSize() + 100 // about three traces
		e, reg, out := newSyncExporter(t, cfg)
		for _, tr := range f.traces {
			e.ExportTrace(tr, Keep{})
		}
		synctest.Wait()
		// Full batches went out without waiting for the timeout.
		if n := len(out.attempts()); n < len(f.traces)/3-1 {
			t.Errorf("%d requests before BatchTimeout, want about %d", n, len(f.traces)/3)
		}
		shutdown(t, e)

		reqs := out.requests(t)
		checkDelivered(t, f, reqs, true)
		for i, r := range reqs {
			if n := proto.Size(r); n > cfg.BatchMaxBytes {
				t.Errorf("request %d has %d bytes, more than BatchMaxBytes %d", i, n, cfg.BatchMaxBytes)
			}
		}
		checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: f.spans()}, map[string]int64{})
	})
}

func TestOversizeTraceIsSplit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 12, otlptest.Batch{Services: 3, Traces: 2, SpansPerTrace: 40, AttrsPerSpan: 8, SpanDurationNs: 1})
		cfg := DefaultConfig()
		cfg.BatchMaxBytes = f.traces[0].requestSize() / 3
		e, reg, out := newSyncExporter(t, cfg)
		e.ExportTrace(f.traces[0], Keep{})
		e.ExportTrace(f.traces[1], Keep{})
		shutdown(t, e)

		reqs := out.requests(t)
		if len(reqs) < 6 {
			t.Errorf("%d requests, want at least 3 per trace", len(reqs))
		}
		checkDelivered(t, f, reqs, false)
		for i, r := range reqs {
			if n := proto.Size(r); n > cfg.BatchMaxBytes {
				t.Errorf("request %d has %d bytes, more than BatchMaxBytes %d", i, n, cfg.BatchMaxBytes)
			}
		}
		checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: f.spans()}, map[string]int64{})
	})
}

func TestRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 13, otlptest.Batch{Services: 1, Traces: 1, SpansPerTrace: 2, SpanDurationNs: 1})
		cfg := DefaultConfig() // 100ms doubling to 5s, for 5m
		e, reg, out := newSyncExporter(t, cfg)
		out.fail = errors.New("EAGAIN") // nothing written: retryable

		e.ExportTrace(f.traces[0], Keep{})
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		all := f.spans()
		checkAccounting(t, e, reg, Stats{Accepted: all, Failed: all}, map[string]int64{"retries_exhausted": all})

		at := out.attempts()
		if len(at) < 10 {
			t.Fatalf("%d attempts in 5m of backoff, want many", len(at))
		}
		step := cfg.RetryInitial
		for i := 1; i < len(at); i++ {
			if gap := at[i].Sub(at[i-1]); gap > step {
				t.Errorf("wait before attempt %d = %v, more than the backoff step %v", i+1, gap, step)
			}
			step = min(2*step, cfg.RetryMax)
		}
		if total := at[len(at)-1].Sub(at[0]); total > cfg.RetryMaxElapsed {
			t.Errorf("retried for %v, more than RetryMaxElapsed %v", total, cfg.RetryMaxElapsed)
		}
		if got, want := requests(t, reg, "retry"), len(at)-1; got != want {
			t.Errorf("requests{retry} = %d, want %d", got, want)
		}
		if got := requests(t, reg, "failed"); got != 1 {
			t.Errorf("requests{failed} = %d, want 1", got)
		}
		shutdown(t, e)
	})
}

func TestShutdownCancelsRetryWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 14, otlptest.Batch{Services: 1, Traces: 2, SpansPerTrace: 2, SpanDurationNs: 1})
		cfg := DefaultConfig()
		cfg.RetryInitial = time.Minute
		cfg.RetryMax = time.Minute
		e, reg, out := newSyncExporter(t, cfg)
		out.fail = errors.New("EAGAIN")
		e.ExportTrace(f.traces[0], Keep{})
		time.Sleep(cfg.BatchTimeout)
		synctest.Wait()                    // the worker waits to retry
		e.ExportTrace(f.traces[1], Keep{}) // pending in the batch

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		err := e.Shutdown(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("Shutdown took %v, want its 1s deadline", d)
		}
		all := f.spans()
		checkAccounting(t, e, reg, Stats{Accepted: all, Failed: all}, map[string]int64{"shutdown": all})
	})
}

func TestExportSpansCopies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 15, otlptest.Batch{Services: 1, Traces: 2, SpansPerTrace: 3, AttrsPerSpan: 2, SpanDurationNs: 1})
		e, reg, out := newSyncExporter(t, DefaultConfig())
		for _, tr := range f.traces {
			key := cloneGroup(tr.keys[0])
			spans := make([][]byte, len(tr.spans))
			for i, s := range tr.spans {
				spans[i] = bytes.Clone(s)
			}
			e.ExportSpans(key, spans, Keep{})
			wipeGroup(key) // the ingest request's bytes are reused
			for _, s := range spans {
				clear(s)
			}
		}
		shutdown(t, e)
		checkDelivered(t, f, out.requests(t), true)
		checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: f.spans()}, map[string]int64{})
	})
}

func TestConcurrentExportAndShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 17, otlptest.DefaultBatch())
		cfg := DefaultConfig()
		cfg.BatchMaxBytes = 4 << 10
		cfg.QueueSize = 2
		e, reg, _ := newSyncExporter(t, cfg)
		done := make(chan struct{}, 4)
		for g := range 4 {
			go func() {
				defer func() { done <- struct{}{} }()
				for i := g; i < len(f.traces); i += 4 {
					e.ExportTrace(f.traces[i], Keep{})
					if s := e.Stats(); s.Accepted != s.Sent+s.Failed+s.Pending || s.Pending < 0 {
						t.Errorf("Stats %+v do not add up", s)
					}
				}
			}()
		}
		for range 2 {
			<-done
		}
		shutdown(t, e)
		for range 2 {
			<-done
		}
		s := e.Stats()
		if s.Accepted != f.spans() || s.Pending != 0 || s.Sent+s.Failed != s.Accepted {
			t.Errorf("Stats = %+v, want all %d spans sent or failed", s, f.spans())
		}
		checkAccounting(t, e, reg, s, nil)
	})
}
