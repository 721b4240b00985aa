package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/tailsift/tailsift/internal/otlpclient"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// forwarder batches spans per peer and sends them as OTLP exports. Spans
// in its queues are reserved against a byte budget before the client gets
// its OK, so the queues are bounded and a full queue is a retryable error
// for the client, not a drop.
//
// A batch that cannot be delivered is never dropped while the node runs:
// once its peer has left the ring it is routed again with the current ring
// (usually to the trace's new owner); after RetryMaxElapsed it is kept
// locally. Either way the spans are counted (forward_requeued).
type forwarder struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	reinject func(body []byte, spans, hops int, keepLocal bool) // routes a batch again; see Router

	limit  int64
	budget atomic.Int64 // raw span bytes reserved by the router, queued or in flight

	// closing is set when close begins; the router then routes everything
	// locally, so nothing is queued after close took the barrier.
	closing atomic.Bool

	mu    sync.Mutex
	peers map[string]*peer

	stop chan struct{} // closed by close: stop the flusher, give up waiting
	wg   sync.WaitGroup
}

// peer is one destination: its batch being filled, its queue of built
// requests and its client (an OTLP export to the peer's ordinary
// receiver).
type peer struct {
	f       *forwarder
	member  Member
	client  *otlpclient.Client // nil if the address could not be used
	gone    atomic.Bool        // no longer in the ring: undelivered batches are routed again
	workers atomic.Int32       // running; the last to exit closes client

	mu         sync.Mutex
	b          otlpwire.Builder
	arena      []byte
	keys       map[int32]otlpwire.Group // group index of the request being added -> copied group
	resources  map[int32][]byte         // resource index of the request being added -> copied part
	batchBytes int64
	batchHops  int
	batchStart time.Time
	queue      []outbound
	wake       chan struct{} // 1 slot: queue has work
	stopped    bool          // retired: workers route the rest of the queue again and exit
}

// outbound is one built export request.
type outbound struct {
	body  []byte
	spans int
	bytes int64 // raw span bytes reserved in the budget
	hops  int
}

func newForwarder(cfg Config, log *slog.Logger, m *metrics) *forwarder {
	f := &forwarder{cfg: cfg, log: log, metrics: m, limit: int64(cfg.ForwardQueueBytes),
		peers: map[string]*peer{}, stop: make(chan struct{})}
	f.wg.Add(1)
	go f.flushLoop()
	return f
}

// reserve takes n bytes of budget for spans about to be queued, or reports
// that the queues are full.
func (f *forwarder) reserve(n int64) bool {
	if f.budget.Add(n) > f.limit {
		f.budget.Add(-n)
		return false
	}
	return true
}

func (f *forwarder) release(n int64) { f.budget.Add(-n) }

// pendingBytes returns the bytes queued or in flight.
func (f *forwarder) pendingBytes() int64 { return f.budget.Load() }

// peer returns the destination for m, starting it if needed.
func (f *forwarder) peer(m Member) *peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.peers[m.Name]; p != nil && p.member.Addr == m.Addr && !p.gone.Load() {
		return p
	}
	client, err := f.cfg.dialPeer(m.Addr)
	p := &peer{f: f, member: m, client: client, keys: map[int32]otlpwire.Group{}, resources: map[int32][]byte{}, wake: make(chan struct{}, 1)}
	if err != nil { // only for an unusable address: deliver fails and routes again
		f.log.Error("cannot connect to peer", "peer", m.Name, "addr", m.Addr, "err", err)
	}
	if old := f.peers[m.Name]; old != nil {
		old.retire()
	}
	f.peers[m.Name] = p
	p.workers.Store(int32(f.cfg.ForwardWorkers))
	for range f.cfg.ForwardWorkers {
		f.wg.Add(1)
		go p.worker()
	}
	return p
}

// setMembers retires the peers that left the ring: their queued batches
// are routed again.
func (f *forwarder) setMembers(ring *Ring) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, p := range f.peers {
		if i := ring.Index(name); i < 0 || ring.Members()[i].Addr != p.member.Addr {
			p.retire()
			delete(f.peers, name)
		}
	}
}

// enqueue copies the spans of req's traces into m's batch. Their bytes are
// already reserved.
func (f *forwarder) enqueue(m Member, req *otlpwire.Request, traces []int32, hops int) {
	p := f.peer(m)
	p.mu.Lock()
	for p.stopped { // retired since we looked it up: peer starts a new one
		p.mu.Unlock()
		p = f.peer(m)
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	if p.b.Spans() > 0 && p.batchHops != hops {
		p.flushLocked()
	}
	if p.b.Spans() == 0 {
		p.batchStart, p.batchHops = time.Now(), hops
	}
	clear(p.keys)
	clear(p.resources)
	var spans, bytes int64
	for _, t := range traces {
		for _, si := range req.TraceSpans(int(t)) {
			s := &req.Spans[si]
			key, ok := p.keys[s.Group]
			if !ok {
				// Each resource part is copied once per request, however
				// many of its scopes the peer's traces use.
				ri := req.ResourceIndex(s.Group)
				res, ok := p.resources[ri]
				if !ok {
					res = p.copyBytes(req.Groups[s.Group].Resource)
					p.resources[ri] = res
				}
				key = otlpwire.Group{Resource: res, Scope: p.copyBytes(req.Groups[s.Group].Scope)}
				p.keys[s.Group] = key
			}
			p.b.Add(key, p.copyBytes(s.Raw))
			spans++
			bytes += int64(len(s.Raw))
		}
	}
	p.batchBytes += bytes
	f.metrics.queuedSpans.Add(spans)
	if p.b.Size() >= f.cfg.ForwardBatchBytes {
		p.flushLocked()
	}
}

func (p *peer) copyBytes(b []byte) []byte {
	start := len(p.arena)
	p.arena = append(p.arena, b...)
	return p.arena[start:len(p.arena):len(p.arena)]
}

// flushLocked builds the batch and queues it for the workers.
func (p *peer) flushLocked() {
	if p.b.Spans() == 0 {
		return
	}
	out := outbound{body: p.b.AppendRequest(nil), spans: p.b.Spans(), bytes: p.batchBytes, hops: p.batchHops}
	p.b.Reset()
	p.batchBytes = 0
	if cap(p.arena) > 2*p.f.cfg.ForwardBatchBytes {
		p.arena = nil
	}
	p.arena = p.arena[:0]
	p.queue = append(p.queue, out)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// flushLoop sends batches that waited ForwardBatchTimeout.
func (f *forwarder) flushLoop() {
	defer f.wg.Done()
	t := time.NewTicker(f.cfg.ForwardBatchTimeout / 2)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case now := <-t.C:
			f.flushOlder(now.Add(-f.cfg.ForwardBatchTimeout))
		}
	}
}

// flushOlder flushes every batch started before cutoff (all, for the zero
// time's successor: flushAll).
func (f *forwarder) flushOlder(cutoff time.Time) {
	f.mu.Lock()
	peers := make([]*peer, 0, len(f.peers))
	for _, p := range f.peers {
		peers = append(peers, p)
	}
	f.mu.Unlock()
	for _, p := range peers {
		p.mu.Lock()
		if p.b.Spans() > 0 && !p.batchStart.After(cutoff) {
			p.flushLocked()
		}
		p.mu.Unlock()
	}
}

// retire stops the peer: its workers route what is queued again.
func (p *peer) retire() {
	p.gone.Store(true)
	p.mu.Lock()
	p.flushLocked()
	p.stopped = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// next waits for a queued request; ok is false once the peer is retired
// and its queue is empty.
func (p *peer) next() (outbound, bool) {
	for {
		p.mu.Lock()
		if len(p.queue) > 0 {
			out := p.queue[0]
			p.queue[0] = outbound{}
			p.queue = p.queue[1:]
			if len(p.queue) > 0 { // more work: wake a sibling worker
				select {
				case p.wake <- struct{}{}:
				default:
				}
			}
			p.mu.Unlock()
			return out, true
		}
		if p.stopped {
			p.mu.Unlock()
			select { // let sibling workers see the stop too
			case p.wake <- struct{}{}:
			default:
			}
			return outbound{}, false
		}
		p.mu.Unlock()
		<-p.wake
	}
}

func (p *peer) worker() {
	defer p.f.wg.Done()
	for {
		out, ok := p.next()
		if !ok {
			// The last worker out closes the connection: closing it under
			// a sibling's call in flight would fail a request the peer may
			// have taken, and routing it again would duplicate its spans.
			if p.workers.Add(-1) == 0 && p.client != nil {
				p.client.Close()
			}
			return
		}
		p.deliver(out)
	}
}

// deliver sends out until it is accepted, the peer leaves the ring (route
// it again), or the peer refuses it for good or RetryMaxElapsed passes
// (keep it here). What is worth retrying is OTLP's call (otlpclient): a
// peer that refused the bytes as they are (INVALID_ARGUMENT for a
// malformed forward, a request over its size limit) will refuse them
// again, and retrying would only hold the budget and the peer's queue.
func (p *peer) deliver(out outbound) {
	f := p.f
	start := time.Now()
	bo := otlpclient.Backoff{Initial: f.cfg.ForwardRetryInitial, Max: f.cfg.ForwardRetryMax}
	for {
		if p.gone.Load() {
			f.requeue(out, false)
			return
		}
		err := p.send(out)
		if err == nil {
			f.release(out.bytes)
			f.metrics.queuedSpans.Add(-int64(out.spans))
			f.metrics.spansOut.Add(int64(out.spans))
			f.metrics.bytesOut.Add(out.bytes)
			return
		}
		f.metrics.forwardFailures.Add(1)
		retry, hint := otlpclient.Classify(err)
		if !retry || time.Since(start) > f.cfg.ForwardRetryMaxElapsed {
			f.logFailure(p, out, err)
			f.requeue(out, true)
			return
		}
		select {
		case <-time.After(bo.Next(hint)):
		case <-f.stop:
			// Stopping: whatever is still undelivered stays here.
			f.requeue(out, true)
			return
		}
	}
}

func (f *forwarder) logFailure(p *peer, out outbound, err error) {
	f.log.Warn("peer unreachable, keeping its spans on this node", "peer", p.member.Name, "addr", p.member.Addr,
		"spans", out.spans, "err", err)
}

// errNoClient fails sends to a peer whose address could not be used;
// retryable, so that the batch is routed again once the peer leaves the
// ring.
var errNoClient = &otlpclient.Error{Err: errors.New("no connection"), Retryable: true}

// send makes one attempt. A peer's receiver accepts a request whole or
// not at all, so there is no partial success to read.
func (p *peer) send(out outbound) error {
	if p.client == nil {
		return errNoClient
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.f.cfg.ForwardTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, HopsKey, hopsValue(out.hops))
	_, err := p.client.Export(ctx, out.body)
	return err
}

func hopsValue(h int) string {
	if h >= 0 && h < 10 {
		return string(rune('0' + h))
	}
	return "9"
}

// requeue hands an undelivered batch back to the router: routed again with
// the current ring, or kept locally.
func (f *forwarder) requeue(out outbound, keepLocal bool) {
	f.metrics.queuedSpans.Add(-int64(out.spans))
	keepLocal = keepLocal || f.closing.Load()
	if keepLocal {
		f.metrics.requeued.keptLocal.Add(int64(out.spans))
	} else {
		f.metrics.requeued.rerouted.Add(int64(out.spans))
	}
	f.reinject(out.body, out.spans, out.hops-1, keepLocal)
	f.release(out.bytes)
}

// close flushes every batch, waits until the queues are delivered or ctx
// ends (then the rest is kept locally), and stops the workers.
//
// The caller must have set closing and waited for routes in progress.
func (f *forwarder) close(ctx context.Context) error {
	f.flushOlder(time.Now().Add(time.Hour))
	for f.pendingBytes() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(f.stop) // retry waits end: undelivered batches are kept locally
	f.mu.Lock()
	for name, p := range f.peers {
		p.retire()
		delete(f.peers, name)
	}
	f.mu.Unlock()
	f.wg.Wait()
	if n := f.pendingBytes(); n != 0 {
		return errors.New("cluster: forward budget not returned after close") // a bug, not a condition
	}
	return nil
}
