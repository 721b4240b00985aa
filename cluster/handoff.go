package cluster

import (
	"context"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tailsift/tailsift/internal/otlpclient"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/rawcodec"
)

// handoffMethod is the peer service's one method.
const handoffMethod = "/tailsift.cluster.v1.Peer/Handoff"

// registerPeer serves the peer service on s (a rawcodec server): Handoff
// takes a hand-off message, Explain answers the explain API for a trace ID
// (16 bytes) with JSON.
func registerPeer(s *grpc.Server, receive func(ctx context.Context, body []byte) error, explain func(body []byte) ([]byte, error)) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "tailsift.cluster.v1.Peer",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "Handoff", Handler: rawcodec.Unary(func(ctx context.Context, body []byte) ([]byte, error) {
				return []byte{}, receive(ctx, body)
			})},
			{MethodName: "Explain", Handler: rawcodec.Unary(func(_ context.Context, body []byte) ([]byte, error) { return explain(body) })},
		},
	}, struct{}{})
}

// receiveHandoff takes traces and decisions from a node that no longer
// owns them. Decisions first: a handed-off trace that was decided already
// follows the decision.
func (c *Cluster) receiveHandoff(ctx context.Context, body []byte) error {
	var h handoff
	if err := h.decode(body); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	var req otlpwire.Request
	if err := req.Scan(h.traces); err != nil {
		return status.Error(codes.InvalidArgument, "hand-off traces: "+err.Error())
	}
	if err := c.engine.AdoptDecisions(h.decisions); err != nil {
		return status.Error(codes.InvalidArgument, "hand-off decisions: "+err.Error())
	}
	now := time.Now().UnixNano()
	arrivals := make(map[[16]byte]Arrival, len(h.arrivals))
	for _, a := range h.arrivals {
		ar := Arrival{FirstSeen: now - a.firstAge}
		if a.hasRoot {
			ar.RootSeen = now - a.rootAge
		}
		arrivals[a.id] = ar
	}
	req.GroupByTrace()
	if len(req.Spans) > 0 {
		if err := c.engine.Consume(ctx, &req, Input{Arrivals: arrivals}); err != nil {
			st, _ := status.New(codes.ResourceExhausted, err.Error()).
				WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
			return st.Err()
		}
	}
	m := c.metrics
	m.handoff.tracesIn.Add(int64(len(req.Traces)))
	m.handoff.spansIn.Add(int64(len(req.Spans)))
	m.handoff.decisionsIn.Add(int64(len(h.decisions)))
	return nil
}

// handoffClient sends hand-off messages (and explain calls), one client
// per peer address.
type handoffClient struct {
	c       *Cluster
	mu      sync.Mutex
	clients map[string]*otlpclient.Client
}

func newHandoffClient(c *Cluster) *handoffClient {
	return &handoffClient{c: c, clients: map[string]*otlpclient.Client{}}
}

func (h *handoffClient) client(addr string) (*otlpclient.Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cl := h.clients[addr]; cl != nil {
		return cl, nil
	}
	cl, err := h.c.cfg.dialPeer(addr)
	if err != nil {
		return nil, err
	}
	h.clients[addr] = cl
	return cl, nil
}

func (h *handoffClient) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for addr, cl := range h.clients {
		cl.Close()
		delete(h.clients, addr)
	}
}

// outgoing is what one new owner gets.
type outgoing struct {
	member    Member
	traces    []MovedTrace
	decisions []Decision
}

// pass hands every buffered trace and remembered decision this node does
// not own under st to its owner, in parallel per owner. Traces that cannot
// be delivered stay here.
func (h *handoffClient) pass(st *ringState) {
	c := h.c
	if st.ring.Len() == 0 {
		return
	}
	moved := func(id *[16]byte) bool { return st.ring.Owner(id) != st.self }
	traces := c.engine.TakeMoved(moved, nil)
	decisions := c.engine.Decisions(moved, nil)
	if len(traces) == 0 && len(decisions) == 0 {
		return
	}
	byOwner := map[int]*outgoing{}
	get := func(o int) *outgoing {
		if byOwner[o] == nil {
			byOwner[o] = &outgoing{member: st.ring.Members()[o]}
		}
		return byOwner[o]
	}
	var spans int64
	for _, t := range traces {
		id := t.TraceID()
		g := get(st.ring.Owner(&id))
		g.traces = append(g.traces, t)
		spans += int64(t.SpanCount())
	}
	c.metrics.handoff.pendingSpans.Add(spans)
	for i := range decisions {
		g := get(st.ring.Owner(&decisions[i].ID))
		g.decisions = append(g.decisions, decisions[i])
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, g := range byOwner {
		wg.Go(func() { h.send(g) })
	}
	wg.Wait()
	c.log.Info("hand-off done", "traces", len(traces), "spans", spans, "decisions", len(decisions),
		"owners", len(byOwner), "took", time.Since(start).Round(time.Millisecond))
}

// send delivers g in messages of at most HandoffBatchBytes.
func (h *handoffClient) send(g *outgoing) {
	c := h.c
	var b otlpwire.Builder
	var msg handoff
	var batch []MovedTrace
	flush := func() {
		if len(batch) == 0 && len(msg.decisions) == 0 {
			return
		}
		msg.traces = b.AppendRequest(nil)
		body := msg.appendTo(nil)
		var spans int64
		for _, t := range batch {
			spans += int64(t.SpanCount())
		}
		if err := h.deliver(g.member, body); err != nil {
			c.metrics.handoff.failures.Add(1)
			c.log.Warn("hand-off failed, keeping the traces here", "peer", g.member.Name, "traces", len(batch), "spans", spans, "err", err)
			h.keep(msg, batch)
		} else {
			c.metrics.handoff.tracesOut.Add(int64(len(batch)))
			c.metrics.handoff.spansOut.Add(spans)
			c.metrics.handoff.decisionsOut.Add(int64(len(msg.decisions)))
		}
		c.metrics.handoff.pendingSpans.Add(-spans)
		b.Reset()
		msg, batch = handoff{}, batch[:0]
	}
	now := time.Now().UnixNano()
	for _, t := range g.traces {
		for key, span := range t.Spans() {
			b.Add(key, span)
		}
		seen := t.Arrival()
		a := arrivalAge{id: t.TraceID(), firstAge: max(0, now-seen.FirstSeen)}
		if seen.RootSeen != 0 {
			a.rootAge, a.hasRoot = max(0, now-seen.RootSeen), true
		}
		msg.arrivals = append(msg.arrivals, a)
		batch = append(batch, t)
		if b.Size() >= c.cfg.HandoffBatchBytes {
			flush()
		}
	}
	for _, d := range g.decisions {
		msg.decisions = append(msg.decisions, d.Record)
		if len(msg.decisions) >= 20_000 { // about 1 MiB
			flush()
		}
	}
	flush()
}

// deliver sends one message, retrying what OTLP calls transient with
// backoff (otlpclient). A refusal for good (a message the new owner cannot
// read, say) ends it at once: the traces stay here.
func (h *handoffClient) deliver(m Member, body []byte) error {
	c := h.c
	cl, err := h.client(m.Addr)
	if err != nil {
		return err
	}
	start := time.Now()
	bo := otlpclient.Backoff{Initial: c.cfg.ForwardRetryInitial, Max: c.cfg.ForwardRetryMax}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ForwardTimeout)
		var resp []byte
		err = cl.Invoke(ctx, handoffMethod, body, &resp)
		cancel()
		if err == nil {
			return nil
		}
		retry, hint := otlpclient.Classify(err)
		if !retry || time.Since(start) > c.cfg.HandoffRetryMaxElapsed {
			return err
		}
		time.Sleep(bo.Next(hint))
	}
}

// keep gives undeliverable traces back to the local engine, with their
// arrival times (decisions stay remembered here anyway).
func (h *handoffClient) keep(msg handoff, batch []MovedTrace) {
	c := h.c
	var spans int
	arrivals := make(map[[16]byte]Arrival, len(batch))
	for _, t := range batch {
		spans += t.SpanCount()
		arrivals[t.TraceID()] = t.Arrival()
	}
	if spans == 0 {
		return
	}
	var req otlpwire.Request
	if err := req.Scan(msg.traces); err != nil { // we built it from buffered spans
		c.router.lose(spans, "BUG: cannot rescan a hand-off batch", err)
		return
	}
	req.GroupByTrace()
	if c.router.retryLocal(spans, "traces that could not be handed off", func() error {
		return c.engine.Consume(context.Background(), &req, Input{Arrivals: arrivals})
	}) {
		c.metrics.handoff.givenBack.Add(int64(spans))
	}
}
