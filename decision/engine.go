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
	"github.com/tailsift/tailsift/internal/traceview"
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
	// ExportSpans takes late spans of a kept trace, all under one group.
	// The slices belong to an ingest request: the exporter must copy what
	// it keeps before returning.
	ExportSpans(group otlpwire.Group, spans [][]byte, threshold uint64, rootAttrs []Attribute)
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
	policyMu sync.Mutex // serializes SetPolicies and SetShare
	share    float64    // guarded by policyMu: this node's share of the cluster
	kept     *cache[keptInfo]
	dropped  *cache[struct{}]
	recent   *recent        // the latest decisions, for Explain
	view     traceview.View // guarded by decideMu
	count    counters
	metrics  *metrics
	scratch  sync.Pool // *consumeScratch

	// inflight is held shared by each Consume and exclusively by Shutdown,
	// so no Consume appends after Shutdown's final TakeAll.
	inflight sync.RWMutex
	stopping bool // guarded by inflight
	// leaving is set as Shutdown begins, before it waits for inflight:
	// long work under inflight (recovery) checks it to end early.
	leaving  atomic.Bool
	stop     chan struct{}
	done     chan struct{}
	shutdown sync.Once
	decideMu sync.Mutex // the loop and Shutdown decide one at a time

	// Guarded by decideMu: decisions made since the last persistDecisions.
	decisionKeys, decisionValues [][]byte
	decisionBuf                  []byte
	decisionOffs                 []int
}

// keptInfo is what late spans of a kept trace need to be written like the
// rest of it.
type keptInfo struct {
	threshold uint64      // its sampling threshold, 0 for p=1
	attrs     []Attribute // root-span attributes (the rule name, if configured); shared, read-only
}

// Root-span attributes the engine writes.
const (
	AttrRule     = "tailsift.sampling.rule"     // the deciding rule (Config.RuleAttribute, and in shadow mode)
	AttrDecision = "tailsift.sampling.decision" // shadow mode: "keep" or "drop", what the policies decided
)

// policySet is a policy.Set with what each decision needs resolved once:
// metric children and root-span attributes per rule.
type policySet struct {
	set   *policy.Set
	rules map[string]*ruleOutputs
}

type ruleOutputs struct {
	kept, dropped prometheus.Counter
	keepAttrs     []Attribute // written on kept traces
	dropAttrs     []Attribute // shadow mode: written on traces the policies drop
}

// New returns a running engine over buf that sends kept traces to exp.
// Stop it with Shutdown.
func New(cfg Config, buf *buffer.Buffer, set *policy.Set, exp Exporter, reg prometheus.Registerer) (*Engine, error) {
	cfg = cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:     cfg,
		buf:     buf,
		exp:     exp,
		share:   1,
		kept:    newCache[keptInfo](cfg.KeptCacheSize),
		dropped: newCache[struct{}](cfg.DroppedCacheSize),
		recent:  newRecent(cfg.RecentDecisions),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	e.scratch.New = func() any { return new(consumeScratch) }
	e.metrics = newMetrics(reg, &e.count, e)
	e.SetPolicies(set)
	go e.loop()
	return e, nil
}

// SetPolicies swaps the policy set; decisions after the call use it. The
// learned state of adaptive and rate-limit rules that the new set shares
// with the old one carries over (policy.Set.AdoptState).
func (e *Engine) SetPolicies(set *policy.Set) {
	e.policyMu.Lock()
	defer e.policyMu.Unlock()
	if old := e.policies.Load(); old != nil {
		set.AdoptState(old.set)
	}
	set.SetShare(e.share)
	ps := &policySet{set: set, rules: map[string]*ruleOutputs{}}
	for _, name := range set.RuleNames() {
		out := &ruleOutputs{
			kept:    e.metrics.tracesByRule.WithLabelValues("kept", name),
			dropped: e.metrics.tracesByRule.WithLabelValues("dropped", name),
		}
		switch {
		case e.cfg.Shadow:
			out.keepAttrs = []Attribute{{AttrDecision, "keep"}, {AttrRule, name}}
			out.dropAttrs = []Attribute{{AttrDecision, "drop"}, {AttrRule, name}}
		case e.cfg.RuleAttribute:
			out.keepAttrs = []Attribute{{AttrRule, name}}
		}
		ps.rules[name] = out
	}
	e.policies.Store(ps)
}

// consumeScratch is Consume's per-call working memory, pooled.
type consumeScratch struct {
	verdict []verdict
	kept    []keptInfo // per trace: how a kept trace was written, for its late spans
	groups  buffer.Interner
	traces  []int32 // every trace index, when the caller selects all
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
	req.GroupByTrace()
	return e.ConsumeGrouped(ctx, req, Input{})
}

// Input is what ConsumeGrouped takes beside the request.
type Input struct {
	// Traces lists the indexes in req.Traces to take; nil takes them all.
	Traces []int32
	// Arrivals holds, for traces handed off by another node, when they
	// first arrived (and their root, if any), so their decision timing
	// does not restart. Traces not in it arrive now.
	Arrivals map[[16]byte]Arrival
}

// Arrival is when a trace's first span and first root span arrived, in
// unix nanoseconds on this node's clock; RootSeen 0 means no root yet.
type Arrival struct {
	FirstSeen, RootSeen int64
}

// ConsumeGrouped is Consume for a request on which GroupByTrace has been
// called, taking only the traces in.Traces.
func (e *Engine) ConsumeGrouped(ctx context.Context, req *otlpwire.Request, in Input) error {
	e.inflight.RLock()
	defer e.inflight.RUnlock()
	if e.stopping {
		return ErrStopped
	}
	sc := e.scratch.Get().(*consumeScratch)
	defer e.scratch.Put(sc)
	sc.verdict = sc.verdict[:0]
	clear(sc.kept)
	sc.kept = sc.kept[:0]
	sc.traces = sc.traces[:0]
	sc.groups.Reset(e.buf, req)
	defer sc.groups.Release()
	sc.batch.Reset()
	selected := in.Traces
	if selected == nil {
		for t := range req.Traces {
			sc.traces = append(sc.traces, int32(t))
		}
		selected = sc.traces
	}

	// Late spans follow the cached decision; the rest go to the buffer. In
	// shadow mode late spans of dropped traces are forwarded too.
	var spans, lateKept, lateDropped int
	durable := e.buf.WriteAhead()
	for _, t := range selected {
		id := req.Traces[t].ID
		n := len(req.TraceSpans(int(t)))
		spans += n
		a := in.Arrivals[id]
		v, info := e.follow(&id, &a, nil, durable)
		switch {
		case v == undecided:
			sc.batch.StartTraceSeen(id, a.FirstSeen, a.RootSeen)
			if err := sc.batch.AddRequestSpans(req, req.TraceSpans(int(t)), &sc.groups); err != nil {
				sc.batch.Reset()
				return err // nothing was taken: interning ran out of memory
			}
		case e.forwards(v):
			lateKept += n
		default:
			lateDropped += n
		}
		sc.verdict = append(sc.verdict, v)
		sc.kept = append(sc.kept, info)
	}
	_, err := e.buf.Append(&sc.batch, time.Now().UnixNano())
	sc.batch.Reset()
	if err != nil {
		return err
	}
	if lateKept > 0 {
		e.forwardLate(req, selected, sc)
	}
	e.count.accepted.Add(int64(spans))
	e.count.kept.Add(int64(lateKept))
	e.count.lateKept.Add(int64(lateKept))
	e.count.droppedLate.Add(int64(lateDropped))
	return nil
}

// follow tells where the spans of trace id go: after a remembered
// decision (they are late), or into the buffer, arriving at a. Spans that
// follow a decision are not buffered, so the write-ahead records that
// hold them already (logged: recovered spans) go. With a write-ahead log,
// late spans of a kept trace are buffered all the same and logged like
// any span, due at once (a.FirstSeen = 1, exported by the next tick): a
// crash cannot lose them between the client's OK and the exporter.
func (e *Engine) follow(id *[16]byte, a *Arrival, logged []buffer.Record, durable bool) (verdict, keptInfo) {
	info, wasKept := e.kept.get(*id)
	switch {
	case wasKept && !durable:
		e.buf.ForgetRecords(logged) // exported by the caller
		return decidedKept, info
	case !wasKept && e.dropped.contains(*id):
		e.buf.ForgetRecords(logged)
		return decidedDropped, info
	case wasKept:
		a.FirstSeen = 1
	}
	return undecided, info
}

// forwards reports whether spans that follow decision v go to the
// exporter: those of kept traces, and in shadow mode of dropped ones.
func (e *Engine) forwards(v verdict) bool {
	return v == decidedKept || (v == decidedDropped && e.cfg.Shadow)
}

// forwardLate hands late spans of kept traces (in shadow mode, of every
// decided trace) to the exporter, written like the rest of their trace, one
// call per run of spans under the same group.
func (e *Engine) forwardLate(req *otlpwire.Request, selected []int32, sc *consumeScratch) {
	for i, v := range sc.verdict {
		if !e.forwards(v) {
			continue
		}
		info := sc.kept[i] // zero for a dropped trace in shadow mode
		sc.late = sc.late[:0]
		group := int32(-1)
		for _, si := range req.TraceSpans(int(selected[i])) {
			s := &req.Spans[si]
			if s.Group != group && len(sc.late) > 0 {
				e.exp.ExportSpans(req.Groups[group], sc.late, info.threshold, info.attrs)
				sc.late = sc.late[:0]
			}
			group = s.Group
			sc.late = append(sc.late, s.Raw)
		}
		e.exp.ExportSpans(req.Groups[group], sc.late, info.threshold, info.attrs)
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
			due = e.relieve(due)
			e.decideAll(due, now)
			e.persistDecisions()
			e.decideMu.Unlock()
			clear(due)
		}
	}
}

// decideAll decides taken traces at now and updates the counters once.
func (e *Engine) decideAll(traces []*buffer.Trace, now time.Time) {
	if len(traces) == 0 {
		return
	}
	ps := e.policies.Load()
	e.recent.mu.Lock() // one lock per tick for the explain ring
	defer e.recent.mu.Unlock()
	var keptSpans, droppedSpans, shadowSpans, lateKept, lateDropped, keptTraces, droppedTraces, lost int64
	var limitedTraces, limitedSpans int64
	for _, t := range traces {
		n := int64(t.SpanCount)
		if err := e.buf.Load(t); err != nil {
			lost += n // counted, and the records go: a bad disk must not replay it forever
			e.buf.Forget(t)
			continue
		}
		// A trace decided while this incarnation was buffering (its spans
		// raced the decision) follows the decision already made.
		if info, ok := e.kept.get(t.ID); ok {
			e.exp.ExportTrace(t, info.threshold, info.attrs)
			lateKept += n
			continue
		}
		if e.dropped.contains(t.ID) {
			if e.cfg.Shadow {
				e.exp.ExportTrace(t, 0, nil)
				lateKept += n
			} else {
				lateDropped += n
				e.buf.Forget(t)
			}
			continue
		}
		if t.Limited {
			limitedTraces++
			limitedSpans += n
		}
		pt := e.view.Trace(t)
		d := ps.set.Evaluate(&pt, now)
		out := ps.rules[d.Rule]
		e.recent.add(t, d.Keep, d.Rule, d.Probability, now.UnixNano())
		if d.Keep {
			info := keptInfo{threshold: uint64(d.Threshold), attrs: out.keepAttrs}
			if e.cfg.Shadow {
				info.threshold = 0 // everything is forwarded: no sampling weight
			}
			e.kept.add(t.ID, info)
			e.recordDecision(&t.ID, true, info.threshold, d.Rule)
			e.metrics.observe(true, now.Sub(time.Unix(0, t.FirstSeen)), t)
			e.exp.ExportTrace(t, info.threshold, info.attrs)
			keptSpans += n
			keptTraces++
			out.kept.Inc()
			continue
		}
		e.dropped.add(t.ID, struct{}{})
		e.recordDecision(&t.ID, false, 0, d.Rule)
		e.metrics.observe(false, now.Sub(time.Unix(0, t.FirstSeen)), t)
		if e.cfg.Shadow {
			e.exp.ExportTrace(t, 0, out.dropAttrs)
			shadowSpans += n
		} else {
			droppedSpans += n
			e.buf.Forget(t)
		}
		droppedTraces++
		out.dropped.Inc()
	}
	e.count.limitedTraces.Add(limitedTraces)
	e.count.limitedSpans.Add(limitedSpans)
	e.count.kept.Add(keptSpans + lateKept + shadowSpans)
	e.count.shadowForwarded.Add(shadowSpans)
	e.count.lateKept.Add(lateKept)
	e.count.droppedPolicy.Add(droppedSpans)
	e.count.droppedLate.Add(lateDropped)
	e.count.tracesKept.Add(keptTraces)
	e.count.tracesDropped.Add(droppedTraces)
	e.count.droppedStorage.Add(lost)
}

// Shutdown stops accepting spans, stops the loop and decides every buffered
// trace now, with what has arrived. Call it after ingest has stopped and
// before the exporter is flushed. It is idempotent.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.shutdown.Do(func() {
		e.leaving.Store(true)
		// Consume calls in progress may wait for a disk that hangs (at
		// most disk_timeout): wait for them apart, so ctx bounds Shutdown.
		go func() {
			e.inflight.Lock()
			e.stopping = true
			e.inflight.Unlock()
			close(e.stop)
		}()
	})
	select {
	case <-e.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	e.decideMu.Lock()
	defer e.decideMu.Unlock()
	e.decideAll(e.buf.TakeAll(nil), time.Now())
	e.persistDecisions()
	return nil
}

// Stats is the engine's span accounting. Accepted + Recovered == Kept +
// DroppedPolicy + DroppedLate + DroppedStorage + Buffered + HandedOff, up
// to requests in progress.
type Stats struct {
	Accepted int64
	Kept     int64 // handed to the exporter, including LateKept and ShadowForwarded
	// ShadowForwarded are spans of traces the policies dropped, forwarded
	// anyway because the engine runs in shadow mode.
	ShadowForwarded int64
	LateKept        int64
	DroppedPolicy   int64
	DroppedLate     int64
	// DroppedStorage are spans of traces whose spilled bytes could not be
	// read back from disk.
	DroppedStorage int64
	// Recovered are spans read back from the write-ahead log at start
	// (accepted by an earlier run of the node; not in Accepted).
	Recovered      int64
	RelievedTraces int64 // traces decided early by stress relief
	LimitedTraces  int64 // traces decided at once for reaching a trace limit
	Buffered       int64
	HandedOff      int64 // buffered spans given to another node (TakeMoved)
	TracesKept     int64
	TracesDropped  int64
}

// Stats returns the current accounting.
func (e *Engine) Stats() Stats {
	return Stats{
		Accepted:        e.count.accepted.Load(),
		Kept:            e.count.kept.Load(),
		ShadowForwarded: e.count.shadowForwarded.Load(),
		LateKept:        e.count.lateKept.Load(),
		DroppedPolicy:   e.count.droppedPolicy.Load(),
		DroppedLate:     e.count.droppedLate.Load(),
		DroppedStorage:  e.count.droppedStorage.Load(),
		Recovered:       e.count.recovered.Load(),
		RelievedTraces:  e.count.relievedTraces.Load(),
		LimitedTraces:   e.count.limitedTraces.Load(),
		Buffered:        e.buf.Stats().Spans,
		HandedOff:       e.count.handedOff.Load(),
		TracesKept:      e.count.tracesKept.Load(),
		TracesDropped:   e.count.tracesDropped.Load(),
	}
}
