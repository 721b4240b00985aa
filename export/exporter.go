package export

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailsift/tailsift/internal/lograte"
	"github.com/tailsift/tailsift/internal/otlpclient"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// Trace is one kept trace, as the caller's buffer holds it.
type Trace interface {
	// Spans yields (group, rawSpan) for each span of the trace: the
	// resource and scope parts as made by otlpwire.Request.Scan, and the
	// encoded Span message without its tag and length. ExportTrace ranges
	// over it once, on the caller's goroutine.
	Spans() iter.Seq2[otlpwire.Group, []byte]
}

// Delivered is implemented by a Trace that wants to know when the exporter
// is done with it: every span of it was sent (acknowledged by the
// destination) or counted failed, so the caller may forget it (delete it
// from a write-ahead log, say). ExportTrace checks for it; ExportSpans does
// not report.
type Delivered interface {
	// Delivered is called once, after every span of the trace was sent or
	// counted failed. sent reports whether all of them were sent. It is
	// called from an exporter goroutine and must not block for long or
	// call the exporter. It may also be called inside a call to
	// ExportTrace, ExportSpans or Shutdown, on the caller's goroutine: for
	// a trace that fails at once (no spans, only malformed keys or
	// oversize spans, exported after Shutdown began), for a batch dropped
	// on a full queue (any trace in it), and for what Shutdown gives up
	// on. So the caller must not hold, around those calls, a lock that
	// Delivered takes.
	Delivered(sent bool)
}

// Exporter batches kept spans into OTLP requests and sends them to one
// destination. Its methods are safe for concurrent use.
type Exporter struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	sender sender
	counts

	mu         sync.Mutex
	b          otlpwire.Builder // the batch being filled
	arena      []byte           // copies made by ExportSpans for the batch
	batchSeq   uint64           // incremented when a batch is taken
	batchStart time.Time        // when the batch got its first span
	closed     bool             // Shutdown has begun: Export* fail their spans
	traces     *traceList       // Delivered traces with spans in the batch; nil if none
	dropped    *traceList       // traces of batches dropped (queue full), told after unlock

	scratch  sync.Pool     // *collector
	lists    sync.Pool     // *traceList
	doorbell chan struct{} // 1 slot: a batch got its first span
	queue    chan request  // built requests, bounded

	ctx       context.Context // cancelled when Shutdown gives up: aborts sends and waits
	cancel    context.CancelFunc
	stopFlush chan struct{}
	flushWG   sync.WaitGroup
	workWG    sync.WaitGroup

	shutdownOnce sync.Once
	shutdownDone chan struct{}
	shutdownErr  error

	shutdownFailed                     atomic.Int64 // spans failed by Shutdown's deadline
	queueFullLog, failLog, oversizeLog lograte.Limiter
}

// request is one built ExportTraceServiceRequest, owned by the queue.
type request struct {
	buf    []byte
	spans  int64
	traces *traceList // told when the request is done; nil if none
}

// New validates cfg, connects nothing yet (gRPC connects on first use),
// registers the metrics with reg (nil: unregistered) and starts the flusher
// and the workers. log nil discards log output.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Exporter, error) {
	cfg = cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ep, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	var s sender
	switch ep.kind {
	case endpointGRPC, endpointHTTP:
		// One idle HTTP connection per worker; gRPC multiplexes them all.
		s, err = newOTLPSender(otlpclient.Config{Endpoint: ep.target, MaxIdleConns: cfg.Workers,
			TLS: cfg.TLS, Headers: cfg.Headers, Compression: cfg.Compression})
	default:
		w := cfg.Writer
		if w == nil {
			w = os.Stdout
		}
		s = newStdoutSender(w)
	}
	if err != nil {
		return nil, err
	}
	e, err := newExporter(cfg, reg, log, s)
	if err != nil {
		return nil, errors.Join(err, s.close())
	}
	return e, nil
}

// newExporter starts an exporter over any sender; cfg has its defaults.
func newExporter(cfg Config, reg prometheus.Registerer, log *slog.Logger, s sender) (*Exporter, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{
		cfg:          cfg,
		log:          log.With("component", "export"),
		sender:       s,
		doorbell:     make(chan struct{}, 1),
		queue:        make(chan request, cfg.QueueSize),
		stopFlush:    make(chan struct{}),
		shutdownDone: make(chan struct{}),
		queueFullLog: lograte.Limiter{Every: 10 * time.Second},
		failLog:      lograte.Limiter{Every: 10 * time.Second},
		oversizeLog:  lograte.Limiter{Every: 10 * time.Second},
	}
	e.scratch.New = newCollector
	e.lists.New = func() any { return new(traceList) }
	m, err := newMetrics(reg,
		func() float64 { return float64(e.stats().Pending) },
		func() float64 { return float64(len(e.queue)) })
	if err != nil {
		return nil, fmt.Errorf("export: registering metrics: %w", err)
	}
	e.m = m
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.flushWG.Add(1)
	go e.flushLoop()
	e.workWG.Add(cfg.Workers)
	for range cfg.Workers {
		go e.worker()
	}
	return e, nil
}

// Stats returns the span counts.
func (e *Exporter) Stats() Stats { return e.stats() }

// Shutdown sends the pending batch and the queued requests until ctx is done,
// then fails whatever is left (reason shutdown), stops every goroutine and
// closes the connection. Export calls after Shutdown count their spans
// failed (reason shutdown). It is idempotent: later calls wait for the first
// to finish and return its result. The error wraps ctx's error if spans
// were failed because ctx ended.
func (e *Exporter) Shutdown(ctx context.Context) error {
	first := false
	e.shutdownOnce.Do(func() { first = true })
	if !first {
		select {
		case <-e.shutdownDone:
			return e.shutdownErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer close(e.shutdownDone)
	e.mu.Lock()
	e.closed = true
	var last request
	if e.b.Spans() > 0 {
		last = e.takeLocked()
	}
	e.mu.Unlock()
	close(e.stopFlush)
	e.flushWG.Wait() // no one else sends on the queue from here on

	if last.spans > 0 {
		if ctx.Err() != nil {
			e.giveUp(last, reasonShutdown, ctx.Err())
		} else {
			select {
			case e.queue <- last:
			case <-ctx.Done():
				e.giveUp(last, reasonShutdown, ctx.Err())
			}
		}
	}
	close(e.queue)

	done := make(chan struct{})
	go func() {
		e.workWG.Wait()
		close(done)
	}()
	if ctx.Err() != nil {
		e.cancel()
	}
	select {
	case <-done:
	case <-ctx.Done():
		e.cancel() // abort sends and retry waits; workers fail the rest
		<-done
	}
	e.cancel()

	var errs []error
	if n := e.shutdownFailed.Load(); n > 0 {
		e.log.Warn("export shutdown: spans not delivered", "spans", n, "err", ctx.Err())
		errs = append(errs, fmt.Errorf("export: shutdown: %d spans not delivered: %w", n, ctx.Err()))
	}
	if err := e.sender.close(); err != nil {
		errs = append(errs, fmt.Errorf("export: closing sender: %w", err))
	}
	e.shutdownErr = errors.Join(errs...)
	return e.shutdownErr
}

// fail counts n spans failed for reason r.
func (e *Exporter) fail(r reason, n int64, err error) {
	e.counts.failed.Add(n)
	e.m.spansFailed[r].Add(float64(n))
	if r == reasonShutdown { // only Shutdown's deadline fails spans so
		e.shutdownFailed.Add(n)
		return // logged once by Shutdown
	}
	if ok, suppressed := e.failLog.Allow(); ok {
		e.log.Warn("export failed", "reason", r.String(), "spans", n, "err", err,
			"similar_lines_suppressed", suppressed)
	}
}

// failClosed counts n spans passed to Export after Shutdown began.
func (e *Exporter) failClosed(n int64) {
	e.counts.failed.Add(n)
	e.m.spansFailed[reasonShutdown].Add(float64(n))
	if ok, suppressed := e.failLog.Allow(); ok {
		e.log.Warn("export after shutdown", "reason", reasonShutdown.String(), "spans", n,
			"similar_lines_suppressed", suppressed)
	}
}

// markSent counts n spans sent.
func (e *Exporter) markSent(n int64) {
	e.counts.sent.Add(n)
	e.m.spansSent.Add(float64(n))
}

func (e *Exporter) stats() Stats { return e.counts.stats() }
