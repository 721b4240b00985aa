package cluster

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/tailsift/tailsift/internal/lograte"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// HopsKey is the gRPC metadata key that marks a forwarded export with the
// number of times its spans were forwarded.
const HopsKey = "tailsift-hops"

// MaxHops bounds forwarding. A node forwards spans it does not own once
// more (hop 2) because its ring is newer than the sender's, as during a
// join or leave; spans at the limit are taken locally, so no view of the
// ring, however stale, makes a loop.
const MaxHops = 2

// Router is the ingest consumer of a cluster node: it sends each trace's
// spans to the trace's owner. Safe for concurrent use.
type Router struct {
	self    string
	engine  Engine
	fwd     *forwarder
	log     *slog.Logger
	metrics *metrics

	state atomic.Pointer[ringState]
	// barrier is held shared by each request while it routes with a ring,
	// and exclusively by a ring change after the swap, so that hand-off
	// starts once no request is appending with the old ring.
	barrier sync.RWMutex
	scratch sync.Pool // *routeScratch
	// keptLog limits "owner did not acknowledge" lines: with a dead owner
	// every request would log one.
	keptLog lograte.Limiter
}

// ringState is a ring with this node's place in it.
type ringState struct {
	ring *Ring
	self int // index of this node in ring.Members(), -1 if not a member (leaving)
}

type routeScratch struct {
	local []int32
	peers map[int][]int32 // owner index -> trace indexes
	order []int           // owners with traces, in first-seen order
}

func (r *Router) current() *ringState { return r.state.Load() }

// Ring returns the ring the router routes with.
func (r *Router) Ring() *Ring { return r.current().ring }

// Consume routes the spans of one scanned request from a client
// (ingest.Consumer). It returns an error with RetryAfter when the forward
// queues are full, or the engine's error, and then has accepted none of
// the spans. A hops mark on the request is ignored: only the peer link
// takes spans as routed.
func (r *Router) Consume(ctx context.Context, req *otlpwire.Request) error {
	if err := r.route(ctx, req, 0, false); err != nil {
		return err
	}
	r.metrics.spansIn.client.Add(int64(len(req.Spans)))
	return nil
}

// consumeForwarded routes spans a peer forwarded after hops hops, as
// Consume does.
func (r *Router) consumeForwarded(ctx context.Context, req *otlpwire.Request, hops int) error {
	if err := r.route(ctx, req, max(hops, 1), false); err != nil {
		return err
	}
	r.metrics.spansIn.peer.Add(int64(len(req.Spans)))
	r.metrics.bytesIn.Add(int64(req.SpanBytes()))
	return nil
}

// hopsOf reads the hop count a peer put on a forwarded export.
func hopsOf(ctx context.Context) int {
	vs := metadata.ValueFromIncomingContext(ctx, HopsKey)
	if len(vs) == 0 {
		return 0
	}
	n, err := strconv.Atoi(vs[0])
	if err != nil || n < 0 {
		return MaxHops // unreadable: never forward it again
	}
	return n
}

// route groups req's traces by owner: the local ones go to the engine, the
// rest to their owners' queues. requeued means the spans come back from an
// undelivered batch whose bytes the caller releases afterwards: the
// budget is taken without the limit check, as the bytes only move.
func (r *Router) route(ctx context.Context, req *otlpwire.Request, hops int, requeued bool) error {
	req.GroupByTrace()
	r.barrier.RLock()
	defer r.barrier.RUnlock()
	st := r.current()
	if st.ring.Len() == 0 || (st.ring.Len() == 1 && st.self == 0) || hops >= MaxHops {
		return r.engine.Consume(ctx, req, Input{})
	}
	sc := r.scratch.Get().(*routeScratch)
	defer r.putScratch(sc)
	for t := range req.Traces {
		o := st.ring.Owner(&req.Traces[t].ID)
		if o == st.self {
			sc.local = append(sc.local, int32(t))
			continue
		}
		if len(sc.peers[o]) == 0 { // emptied, not deleted, after each request
			sc.order = append(sc.order, o)
		}
		sc.peers[o] = append(sc.peers[o], int32(t))
	}
	if len(sc.order) == 0 {
		return r.engine.Consume(ctx, req, Input{})
	}
	var remoteBytes int64
	for _, o := range sc.order {
		remoteBytes += tracesBytes(req, sc.peers[o])
	}
	if r.fwd.cfg.ForwardSync && !requeued && !r.fwd.closing.Load() {
		return r.forwardNow(ctx, req, sc, st.ring.Members(), hops)
	}
	if requeued {
		r.fwd.budget.Add(remoteBytes)
	} else if !r.fwd.reserve(remoteBytes) {
		return errQueueFull
	}
	if len(sc.local) > 0 {
		if err := r.engine.Consume(ctx, req, Input{Traces: sc.local}); err != nil {
			r.fwd.release(remoteBytes)
			return err
		}
	}
	members := st.ring.Members()
	for _, o := range sc.order {
		r.fwd.enqueue(members[o], req, sc.peers[o], hops+1)
	}
	return nil
}

// reinject routes an undelivered forward batch of spans spans again, or
// keeps it here.
func (r *Router) reinject(body []byte, spans, hops int, keepLocal bool) {
	var req otlpwire.Request
	if err := req.Scan(body); err != nil { // we built it from scanned spans
		r.lose(spans, "BUG: cannot rescan a forward batch", err)
		return
	}
	if keepLocal {
		hops = MaxHops
	}
	r.retryLocal(len(req.Spans), "spans that could not be forwarded", func() error {
		return r.route(context.Background(), &req, hops, true)
	})
}

// retryLocal calls take until this node accepts the spans (its buffer may
// be full for a while); after about 10 s they are counted lost.
func (r *Router) retryLocal(spans int, what string, take func() error) bool {
	for attempt := 0; ; attempt++ {
		err := take()
		if err == nil {
			return true
		}
		if attempt == 100 {
			r.lose(spans, what+" could not be kept here either: dropped", err)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lose counts spans the cluster layer had to drop.
func (r *Router) lose(spans int, msg string, err error) {
	r.metrics.lost.Add(int64(spans))
	r.log.Error(msg, "spans", spans, "err", err)
}

func (r *Router) putScratch(sc *routeScratch) {
	sc.local = sc.local[:0]
	for _, o := range sc.order {
		sc.peers[o] = sc.peers[o][:0]
	}
	sc.order = sc.order[:0]
	if len(sc.peers) > 64 { // do not pin a large map after a big cluster shrank
		sc.peers = map[int][]int32{}
	}
	r.scratch.Put(sc)
}

func tracesBytes(req *otlpwire.Request, traces []int32) int64 {
	var n int64
	for _, t := range traces {
		for _, si := range req.TraceSpans(int(t)) {
			n += int64(len(req.Spans[si].Raw))
		}
	}
	return n
}

// errQueueFull asks the client to retry: the forward queues are full
// because peers are slow or unreachable.
var errQueueFull = &queueFullError{}

type queueFullError struct{}

func (*queueFullError) Error() string {
	return "cluster: forward queues full (peers slow or unreachable), try again later"
}
func (*queueFullError) RetryAfter() time.Duration { return time.Second }

// forwardNow is route for Config.ForwardSync: the local traces go to the
// engine, and each owner's traces are sent to it now, all owners at once;
// the call returns when every owner acknowledged, and traces whose owner
// did not (one attempt) are taken here instead, so that a span
// acknowledged to the client is in some node's write-ahead log.
func (r *Router) forwardNow(ctx context.Context, req *otlpwire.Request, sc *routeScratch, members []Member, hops int) error {
	if len(sc.local) > 0 {
		if err := r.engine.Consume(ctx, req, Input{Traces: sc.local}); err != nil {
			return err
		}
	}
	errs := make([]error, len(sc.order))
	var wg sync.WaitGroup
	for i, o := range sc.order {
		var b otlpwire.Builder
		var bytes int64
		for _, t := range sc.peers[o] {
			for _, si := range req.TraceSpans(int(t)) {
				s := &req.Spans[si]
				b.Add(req.Groups[s.Group], s.Raw)
				bytes += int64(len(s.Raw))
			}
		}
		out := outbound{body: b.AppendRequest(nil), spans: b.Spans(), bytes: bytes, hops: hops + 1}
		p := r.fwd.peer(members[o])
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = p.send(out); errs[i] == nil {
				r.fwd.metrics.spansOut.Add(int64(out.spans))
				r.fwd.metrics.bytesOut.Add(out.bytes)
			} else {
				r.fwd.metrics.forwardFailures.Add(1)
			}
		}()
	}
	wg.Wait()
	var kept int
	for i, o := range sc.order {
		if errs[i] == nil {
			continue
		}
		// Spans already acknowledged by other owners stay there: if this
		// fails too, the client's retry sends them again (at least once).
		if err := r.engine.Consume(ctx, req, Input{Traces: sc.peers[o]}); err != nil {
			return err
		}
		for _, t := range sc.peers[o] {
			kept += len(req.TraceSpans(int(t)))
		}
		if ok, suppressed := r.keptLog.Allow(); ok {
			r.log.Warn("owner did not acknowledge forwarded spans, keeping them here", "peer", members[o].Name,
				"err", errs[i], "similar_lines_suppressed", suppressed)
		}
	}
	r.fwd.metrics.requeued.keptLocal.Add(int64(kept))
	return nil
}
