package decision

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/policy"
)

// ErrStopped is returned by Consume after Shutdown began.
var ErrStopped = errors.New("decision: engine is shutting down")

// Exporter receives what the engine keeps. Its methods are called from the
// engine's loop and from ingest goroutines, concurrently, and must not block
// for long.
//
// threshold is the consistent-sampling rejection threshold the trace was
// kept at (as policy.Threshold), to be written into the spans' tracestate;
// 0 means kept with probability 1: the tracestate stays as it came.
// rootAttrs are added to the trace's root span. The exporter does not
// retain rootAttrs.
type Exporter interface {
	// ExportTrace takes a kept trace. The trace's bytes are immutable; the
	// exporter may keep references to them.
	ExportTrace(t *buffer.Trace, threshold uint64, rootAttrs []Attribute)
	// ExportSpans takes late spans of a kept trace, all under one group key.
	// The slices belong to an ingest request: the exporter must copy what
	// it keeps before returning.
	ExportSpans(groupKey []byte, spans [][]byte, threshold uint64, rootAttrs []Attribute)
}

// Attribute is a string attribute the exporter adds to a kept trace's root
// span (the deciding rule, shadow-mode marks).
type Attribute struct{ Key, Value string }

// Engine decides buffered traces. See the package documentation.
type Engine struct {
	cfg      Config
	buf      *buffer.Buffer
	exp      Exporter
	policies atomic.Pointer[policySet]
	kept     *cache
	dropped  *cache
	count    counters
	metrics  *metrics
	scratch  sync.Pool // *consumeScratch

	// inflight is held shared by each Consume and exclusively by Shutdown,
	// so no Consume appends after Shutdown's final TakeAll.
	inflight sync.RWMutex
	stopping bool // guarded by inflight
	stop     chan struct{}
	done     chan struct{}
	shutdown sync.Once
	decideMu sync.Mutex // the loop and Shutdown decide one at a time
}

// policySet is a policy.Set with its metric children resolved once.
type policySet struct {
	set     *policy.Set
	kept    map[string]prometheus.Counter
	dropped map[string]prometheus.Counter
}

// New returns a running engine over buf that sends kept traces to exp.
// Stop it with Shutdown.
func New(cfg Config, buf *buffer.Buffer, set *policy.Set, exp Exporter, reg prometheus.Registerer) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:     cfg,
		buf:     buf,
		exp:     exp,
		kept:    newCache(cfg.KeptCacheSize),
		dropped: newCache(cfg.DroppedCacheSize),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	e.scratch.New = func() any { return new(consumeScratch) }
	e.metrics = newMetrics(reg, &e.count, e)
	e.SetPolicies(set)
	go e.loop()
	return e, nil
}

// SetPolicies swaps the policy set; decisions after the call use it.
func (e *Engine) SetPolicies(set *policy.Set) {
	ps := &policySet{set: set, kept: map[string]prometheus.Counter{}, dropped: map[string]prometheus.Counter{}}
	for _, name := range set.RuleNames() {
		ps.kept[name] = e.metrics.tracesByRule.WithLabelValues("kept", name)
		ps.dropped[name] = e.metrics.tracesByRule.WithLabelValues("dropped", name)
	}
	e.policies.Store(ps)
}

// consumeScratch is Consume's per-call working memory, pooled.
type consumeScratch struct {
	verdict []verdict
	groups  []*buffer.Group // acquired group per request group, nil if unused
	batch   buffer.Batch
	late    [][]byte
}

type verdict uint8

const (
	undecided verdict = iota
	decidedKept
	decidedDropped
)

// Consume accepts the spans of one scanned request. It returns
// buffer.ErrFull (retry later) or ErrStopped and then changes nothing.
// Consume calls req.GroupByTrace; it does not retain req.
func (e *Engine) Consume(ctx context.Context, req *otlpwire.Request) error {
	e.inflight.RLock()
	defer e.inflight.RUnlock()
	if e.stopping {
		return ErrStopped
	}
	req.GroupByTrace()
	sc := e.scratch.Get().(*consumeScratch)
	defer e.scratch.Put(sc)
	sc.verdict = sc.verdict[:0]
	if cap(sc.groups) < len(req.Groups) {
		sc.groups = make([]*buffer.Group, len(req.Groups))
	}
	sc.groups = sc.groups[:len(req.Groups)] // all nil: cleared after each use
	sc.batch.Reset()

	// Late spans follow the cached decision; the rest go to the buffer.
	var lateKept, lateDropped int
	for t := range req.Traces {
		id := req.Traces[t].ID
		v := undecided
		switch {
		case e.kept.contains(id):
			v = decidedKept
			lateKept += len(req.TraceSpans(t))
		case e.dropped.contains(id):
			v = decidedDropped
			lateDropped += len(req.TraceSpans(t))
		default:
			sc.batch.StartTrace(id)
			for _, si := range req.TraceSpans(t) {
				s := &req.Spans[si]
				g := sc.groups[s.Group]
				if g == nil {
					g = e.buf.Acquire(req.Groups[s.Group].Key)
					sc.groups[s.Group] = g
				}
				sc.batch.AddSpan(buffer.Span{Group: g, Raw: s.Raw, StartUnixNano: s.StartUnixNano,
					EndUnixNano: s.EndUnixNano, Root: s.IsRoot(), Error: s.IsError()})
			}
		}
		sc.verdict = append(sc.verdict, v)
	}
	_, err := e.buf.Append(&sc.batch, time.Now().UnixNano())
	for i, g := range sc.groups {
		if g != nil {
			e.buf.Release(g)
			sc.groups[i] = nil
		}
	}
	sc.batch.Reset()
	if err != nil {
		return err
	}
	if lateKept > 0 {
		e.forwardLate(req, sc)
	}
	e.count.accepted.Add(int64(len(req.Spans)))
	e.count.kept.Add(int64(lateKept))
	e.count.lateKept.Add(int64(lateKept))
	e.count.droppedLate.Add(int64(lateDropped))
	return nil
}

// forwardLate hands late spans of kept traces to the exporter, one call per
// run of spans under the same group.
func (e *Engine) forwardLate(req *otlpwire.Request, sc *consumeScratch) {
	for t, v := range sc.verdict {
		if v != decidedKept {
			continue
		}
		sc.late = sc.late[:0]
		group := int32(-1)
		for _, si := range req.TraceSpans(t) {
			s := &req.Spans[si]
			if s.Group != group && len(sc.late) > 0 {
				e.exp.ExportSpans(req.Groups[group].Key, sc.late, 0, nil)
				sc.late = sc.late[:0]
			}
			group = s.Group
			sc.late = append(sc.late, s.Raw)
		}
		e.exp.ExportSpans(req.Groups[group].Key, sc.late, 0, nil)
	}
	clear(sc.late)
}

func (e *Engine) loop() {
	defer close(e.done)
	ticker := time.NewTicker(e.cfg.Tick)
	defer ticker.Stop()
	var due []*buffer.Trace
	for {
		select {
		case <-e.stop:
			return
		case now := <-ticker.C:
			first := now.Add(-e.cfg.firstSeenWait()).UnixNano()
			root := now.Add(-e.cfg.RootWait).UnixNano()
			e.decideMu.Lock()
			due = e.buf.TakeReady(first, root, due[:0])
			e.decideAll(due)
			e.decideMu.Unlock()
			clear(due)
		}
	}
}

// decideAll decides taken traces and updates the counters once.
func (e *Engine) decideAll(traces []*buffer.Trace) {
	if len(traces) == 0 {
		return
	}
	ps := e.policies.Load()
	var keptSpans, droppedSpans, lateKept, lateDropped, keptTraces, droppedTraces int64
	for _, t := range traces {
		n := int64(t.SpanCount)
		// A trace decided while this incarnation was buffering (its spans
		// raced the decision) follows the decision already made.
		if e.kept.contains(t.ID) {
			e.exp.ExportTrace(t, 0, nil)
			lateKept += n
			continue
		}
		if e.dropped.contains(t.ID) {
			lateDropped += n
			continue
		}
		view := policy.Trace{ID: t.ID, SpanCount: int(t.SpanCount), ErrorCount: int(t.ErrorCount),
			HasRoot: t.HasRoot(), StartUnixNano: t.MinStart, EndUnixNano: t.MaxEnd}
		d := ps.set.Evaluate(&view, time.Now())
		if d.Keep {
			e.kept.add(t.ID)
			e.exp.ExportTrace(t, 0, nil)
			keptSpans += n
			keptTraces++
			ps.kept[d.Rule].Inc()
		} else {
			e.dropped.add(t.ID)
			droppedSpans += n
			droppedTraces++
			ps.dropped[d.Rule].Inc()
		}
	}
	e.count.kept.Add(keptSpans + lateKept)
	e.count.lateKept.Add(lateKept)
	e.count.droppedPolicy.Add(droppedSpans)
	e.count.droppedLate.Add(lateDropped)
	e.count.tracesKept.Add(keptTraces)
	e.count.tracesDropped.Add(droppedTraces)
}

// Shutdown stops accepting spans, stops the loop and decides every buffered
// trace now, with what has arrived. Call it after ingest has stopped and
// before the exporter is flushed. It is idempotent.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.shutdown.Do(func() {
		e.inflight.Lock() // waits for Consume calls in progress
		e.stopping = true
		e.inflight.Unlock()
		close(e.stop)
	})
	select {
	case <-e.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	e.decideMu.Lock()
	defer e.decideMu.Unlock()
	e.decideAll(e.buf.TakeAll(nil))
	return nil
}

// Stats is the engine's span accounting. Accepted == Kept + DroppedPolicy +
// DroppedLate + Buffered, up to requests in progress.
type Stats struct {
	Accepted      int64
	Kept          int64 // handed to the exporter, including LateKept
	LateKept      int64
	DroppedPolicy int64
	DroppedLate   int64
	Buffered      int64
	TracesKept    int64
	TracesDropped int64
}

// Stats returns the current accounting.
func (e *Engine) Stats() Stats {
	return Stats{
		Accepted:      e.count.accepted.Load(),
		Kept:          e.count.kept.Load(),
		LateKept:      e.count.lateKept.Load(),
		DroppedPolicy: e.count.droppedPolicy.Load(),
		DroppedLate:   e.count.droppedLate.Load(),
		Buffered:      e.buf.Stats().Spans,
		TracesKept:    e.count.tracesKept.Load(),
		TracesDropped: e.count.tracesDropped.Load(),
	}
}
