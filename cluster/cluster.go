package cluster

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tailsift/tailsift/internal/lograte"
)

// Cluster is this node's membership in the cluster, its router and its
// hand-off. Create it with New, register its gRPC service on the OTLP
// server, then Start it once the OTLP receiver listens.
type Cluster struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	engine  Engine
	router  *Router
	fwd     *forwarder
	handoff *handoffClient

	transport *memberlist.NetTransport // gossip listeners, bound by New; nil when clustering is off
	ml        *memberlist.Memberlist   // nil when clustering is off, or before Start
	view      view                     // copies of the gossip members; read these, not ml.Members()
	gossip    string                   // this node's gossip address as advertised, set by Start
	peer      *peerLink                // the peer link; nil when clustering is off
	changed   chan struct{}            // 1 slot: membership changed
	stop      chan struct{}
	stopCtx   context.Context // cancelled with stop: ends a join round's DNS lookups
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	joined    atomic.Bool
	left      atomic.Bool // Leave has run: the ring excludes this node
	aborted   atomic.Bool
	closed    sync.Once

	// joinErr says why the last join round reached no peer, while the node
	// has not joined; nil once it has.
	joinErr atomic.Pointer[string]
	joinLog lograte.Limiter
	// conflict is the last claim on this node's name from another address.
	conflict struct {
		at    atomic.Int64           // unix nanoseconds; 0: never
		other atomic.Pointer[string] // the claimant's gossip address, stored before at
	}
	// Separate limiters: lines on other nodes' conflicts must not hold
	// back the one on this node's.
	conflictLog, otherConflictLog lograte.Limiter

	ringMu sync.Mutex // serializes ring changes and hand-off passes
}

// New prepares a cluster node over engine. Until Start it owns every trace.
func New(cfg Config, engine Engine, reg prometheus.Registerer, log *slog.Logger) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.EnsureDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{cfg: cfg, log: log, engine: engine, changed: make(chan struct{}, 1), stop: make(chan struct{}),
		joinLog: lograte.Limiter{Every: 10 * time.Second}, conflictLog: lograte.Limiter{Every: 10 * time.Second},
		otherConflictLog: lograte.Limiter{Every: 10 * time.Second}}
	c.stopCtx, c.cancel = context.WithCancel(context.Background())
	// Bind before anything reads the name: the default name includes the
	// gossip port, and the name is fixed from here on.
	if err := c.bind(); err != nil {
		return nil, err
	}
	if c.Enabled() {
		if err := c.listenPeer(); err != nil {
			closeUnused(c.transport)
			return nil, err
		}
	}
	cfg = c.cfg
	c.fwd = newForwarder(cfg, log, nil)
	c.metrics = newMetrics(reg, func() float64 { return float64(c.fwd.pendingBytes()) })
	c.fwd.metrics = c.metrics
	if c.peer != nil {
		c.peer.metrics = c.metrics // before Start serves the link
	}
	c.router = &Router{self: cfg.NodeName, engine: engine, fwd: c.fwd, log: log, metrics: c.metrics, keptLog: lograte.Limiter{Every: 10 * time.Second}}
	c.router.scratch.New = func() any { return &routeScratch{peers: map[int][]int32{}} }
	c.router.state.Store(&ringState{ring: NewRing([]Member{{Name: cfg.NodeName}}, cfg.VirtualNodes), self: 0})
	c.fwd.reinject = c.router.reinject
	c.handoff = newHandoffClient(c)
	c.metrics.members.Store(1)
	return c, nil
}

// bind opens the gossip listeners (clustering on) and settles the node
// name: NodeName, or its default (see Config.NodeName).
func (c *Cluster) bind() error {
	host, err := os.Hostname()
	if c.cfg.NodeName == "" && (err != nil || host == "") {
		return fmt.Errorf("node_name (--node-name) is not set and the host name is unknown (%v): set a name unique in the cluster", err)
	}
	if c.cfg.Bind == "" {
		if c.cfg.NodeName == "" {
			c.cfg.NodeName = host
		}
		return nil
	}
	bindHost, port, err := splitPort(c.cfg.Bind)
	if err != nil {
		return fmt.Errorf("cluster_bind (--cluster-bind): %w", err)
	}
	nc := &memberlist.NetTransportConfig{
		BindAddrs: []string{bindHost},
		BindPort:  port,
		Logger:    log.New(logWriter{c.log.With("component", "memberlist")}, "", 0),
	}
	// Port 0 binds TCP, then UDP on the port TCP got, which may be taken:
	// try again, as memberlist does when it binds itself.
	tries := 1
	if port == 0 {
		tries = 10
	}
	var t *memberlist.NetTransport
	for range tries {
		if t, err = memberlist.NewNetTransport(nc); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("cluster: gossip on %s (--cluster-bind): %w", c.cfg.Bind, err)
	}
	c.transport = t
	if c.cfg.NodeName == "" {
		c.cfg.NodeName = host + "-" + strconv.Itoa(t.GetAutoBindPort())
	}
	return nil
}

// Router is the ingest consumer that routes spans to their owners.
func (c *Cluster) Router() *Router { return c.router }

// Name is this node's name in the cluster.
func (c *Cluster) Name() string { return c.cfg.NodeName }

// Enabled reports whether clustering is on.
func (c *Cluster) Enabled() bool { return c.cfg.Bind != "" }

// Start serves the peer link and joins the cluster, advertising the peer
// link's address to peers. With clustering off it only marks the node
// ready.
func (c *Cluster) Start() error {
	if !c.Enabled() {
		c.joined.Store(true)
		return nil
	}
	c.peer.serve(c)
	mc, err := c.memberlistConfig()
	if err != nil {
		return err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("cluster: gossip on %s (--cluster-bind): %w", c.cfg.Bind, err)
	}
	c.ml = ml
	local, _ := c.view.get(c.cfg.NodeName) // memberlist announced it in Create
	c.gossip = net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
	if len(c.cfg.Join) == 0 {
		c.joined.Store(true) // the first node: nothing to join
	}
	c.updateRing()
	c.wg.Add(2)
	go c.watch()
	go c.rejoin()
	c.log.Info("cluster gossip started", "node", c.cfg.NodeName, "gossip", c.gossip,
		"peer", c.memberOf(&local).Addr, "join", c.cfg.Join, "encrypted", len(c.cfg.SecretKey) > 0)
	return nil
}

func (c *Cluster) memberlistConfig() (*memberlist.Config, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.cfg.NodeName
	host, _, err := splitPort(c.cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster_bind (--cluster-bind): %w", err)
	}
	port := c.transport.GetAutoBindPort()
	mc.Transport = c.transport
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if c.cfg.Advertise != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitPort(c.cfg.Advertise); err != nil {
			return nil, fmt.Errorf("cluster_advertise (--cluster-advertise): %w", err)
		}
	}
	if c.cfg.ProbeInterval > 0 {
		mc.ProbeInterval = c.cfg.ProbeInterval
		mc.ProbeTimeout = c.cfg.ProbeInterval / 2
		mc.GossipInterval = min(mc.GossipInterval, c.cfg.ProbeInterval/4)
	}
	if c.cfg.SuspicionMult > 0 {
		mc.SuspicionMult = c.cfg.SuspicionMult
	}
	mc.SecretKey = c.cfg.SecretKey
	mc.Delegate = delegate{meta: c.meta}
	mc.Events = events{changed: c.changed, view: &c.view, notify: c.cfg.SecurityEvent}
	mc.Conflict = conflicts{c}
	mc.Logger = nil
	mc.LogOutput = logWriter{c.log.With("component", "memberlist")}
	return mc, nil
}

func splitPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// meta is this node's metadata: its peer link's address. An unspecified
// host (0.0.0.0) is left out; peers use the address they gossip with.
func (c *Cluster) meta() []byte {
	host, port, err := net.SplitHostPort(c.peer.lis.Addr().String())
	if err != nil {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = ""
	}
	return []byte("peer=" + net.JoinHostPort(host, port))
}

// memberOf reads a gossip member's metadata.
func (c *Cluster) memberOf(n *memberlist.Node) Member {
	m := Member{Name: n.Name}
	if addr, ok := strings.CutPrefix(string(n.Meta), "peer="); ok {
		host, port, err := net.SplitHostPort(addr)
		if err == nil {
			if host == "" {
				host = n.Addr.String()
			}
			m.Addr = net.JoinHostPort(host, port)
		}
	}
	return m
}

type delegate struct{ meta func() []byte }

func (d delegate) NodeMeta(limit int) []byte {
	m := d.meta()
	if len(m) > limit {
		return nil
	}
	return m
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// conflicts hears from memberlist (under its locks) that gossip claimed a
// member's name from another address.
type conflicts struct{ c *Cluster }

func (d conflicts) NotifyConflict(existing, other *memberlist.Node) {
	d.c.nameConflict(existing, other)
}

// nameConflict records a claim on a member's name from another address.
// Memberlist keeps the member it knew and ignores the claimant, so two
// nodes with one name never share a ring: each decides its own part of
// every trace. When the name is this node's, the node reports not ready
// until the claims stop (NameConflictHold), which makes the split visible.
func (c *Cluster) nameConflict(existing, other *memberlist.Node) {
	c.metrics.nameConflicts.Add(1)
	mine := net.JoinHostPort(existing.Addr.String(), strconv.Itoa(int(existing.Port)))
	theirs := net.JoinHostPort(other.Addr.String(), strconv.Itoa(int(other.Port)))
	if existing.Name != c.cfg.NodeName {
		if ok, n := c.otherConflictLog.Allow(); ok {
			c.log.Warn("two other nodes use one node name: the second is left out of this node's ring; give each node a unique node_name (--node-name)",
				"node_name", existing.Name, "member", mine, "left_out", theirs, "similar_lines_suppressed", n)
		}
		return
	}
	c.conflict.other.Store(&theirs)
	c.conflict.at.Store(time.Now().UnixNano())
	if ok, n := c.conflictLog.Allow(); ok {
		c.log.Error("another node uses this node's name, so the two cannot be in one cluster: set node_name (--node-name) to a unique name on each node; until then this node reports not ready",
			"node_name", existing.Name, "this_node", mine, "other_node", theirs, "similar_lines_suppressed", n)
	}
}

// logWriter sends memberlist's log lines to slog at their level.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelDebug
	for prefix, l := range map[string]slog.Level{"[ERR]": slog.LevelError, "[WARN]": slog.LevelWarn, "[INFO]": slog.LevelInfo} {
		if i := strings.Index(line, prefix); i >= 0 {
			level, line = l, strings.TrimSpace(line[i+len(prefix):])
			break
		}
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}

// watch applies membership changes to the ring.
func (c *Cluster) watch() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.changed:
			c.updateRing()
		}
	}
}

// updateRing rebuilds the ring from the gossip members and, if it changed,
// hands off what this node no longer owns.
func (c *Cluster) updateRing() {
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	if c.left.Load() {
		return
	}
	var members []Member
	for _, n := range c.view.all() {
		m := c.memberOf(&n)
		if m.Addr == "" {
			c.log.Warn("cluster member without a peer link address in its metadata (another version of Tailsift?), ignored", "member", n.Name)
			continue
		}
		members = append(members, m)
	}
	c.setRing(members)
}

// setRing installs a ring over members (locked by ringMu) and hands off.
func (c *Cluster) setRing(members []Member) {
	old := c.router.current()
	if slices.Equal(sortedMembers(members), old.ring.Members()) {
		return
	}
	ring := NewRing(members, c.cfg.VirtualNodes)
	st := &ringState{ring: ring, self: ring.Index(c.cfg.NodeName)}
	c.router.state.Store(st)
	// Wait out requests routing with the old ring: they may still queue
	// for a departed member. Then retire departed peers and hand off.
	c.router.barrier.Lock()
	c.router.barrier.Unlock() //nolint:staticcheck // an empty critical section is the barrier
	c.fwd.setMembers(ring)
	if st.self >= 0 {
		c.engine.SetShare(ring.Share(c.cfg.NodeName))
	}
	c.metrics.members.Store(int64(ring.Len()))
	c.metrics.ringChanges.Add(1)
	names := make([]string, ring.Len())
	for i, m := range ring.Members() {
		names[i] = m.Name
	}
	c.log.Info("cluster ring changed", "members", names, "share", ring.Share(c.cfg.NodeName))
	c.handoff.pass(st)
}

func sortedMembers(ms []Member) []Member {
	return NewRing(ms, 0).Members()
}

// rejoin joins the configured peers until it reaches one (then the node is
// ready), and every RejoinInterval joins addresses not yet members.
func (c *Cluster) rejoin() {
	defer c.wg.Done()
	delay := time.Duration(0)
	for {
		select {
		case <-c.stop:
			return
		case <-time.After(delay):
		}
		c.joinRound()
		delay = c.cfg.RejoinInterval
		if !c.joined.Load() {
			delay = min(time.Second, delay) // not ready yet: try again soon
		}
	}
}

// joinRound resolves the join addresses and joins those that are not
// members. The node counts as joined once a round reaches a peer, finds
// that a peer has joined it, or finds that the only address is its own.
// Until then each round that fails is counted, logged (rate-limited) and
// kept as the reason the node is not ready: a node that cannot join must
// not pass for a cluster of one.
func (c *Cluster) joinRound() {
	if len(c.cfg.Join) == 0 {
		c.joined.Store(true)
		return
	}
	known := map[string]bool{}
	for _, n := range c.view.all() {
		known[net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))] = true
	}
	var todo []string
	var errs []error
	for _, j := range c.cfg.Join {
		host, port, _ := net.SplitHostPort(j)
		addrs, err := net.DefaultResolver.LookupHost(c.stopCtx, host)
		if err != nil {
			errs = append(errs, fmt.Errorf("--join %s: %w", j, err))
			continue
		}
		for _, a := range addrs {
			if addr := net.JoinHostPort(a, port); !known[addr] {
				todo = append(todo, addr)
			}
		}
	}
	if len(todo) > 0 {
		n, err := c.ml.Join(todo)
		if n > 0 {
			// Join has merged the peer's member list: route with it before
			// reporting ready, rather than when the watcher gets to it.
			c.updateRing()
			c.setJoined()
			return
		}
		if err == nil {
			err = fmt.Errorf("no answer from %v", todo)
		}
		errs = append(errs, err)
	}
	// Nothing to join or nothing reached: joined if every address is a
	// member or ourselves, or if peers have joined us.
	if len(errs) == 0 || c.ml.NumMembers() > 1 {
		c.setJoined()
		return
	}
	if c.joined.Load() {
		c.log.Debug("periodic rejoin reached no new address", "addresses", todo, "err", errors.Join(errs...))
		return
	}
	c.metrics.joinFailures.Add(1)
	msg := errorList(errs)
	c.joinErr.Store(&msg)
	if ok, n := c.joinLog.Allow(); ok {
		c.log.Warn("cannot join the cluster yet, retrying every second; the node is not ready until it joins",
			"join", c.cfg.Join, "addresses", todo, "err", msg, "similar_lines_suppressed", n)
	}
}

// errorList writes errs on one line, for /readyz and the log. Join's
// error lists one error per address, on several lines.
func errorList(errs []error) string {
	var parts []string
	for _, err := range errs {
		if m, ok := err.(interface{ WrappedErrors() []error }); ok {
			for _, e := range m.WrappedErrors() {
				parts = append(parts, e.Error())
			}
			continue
		}
		parts = append(parts, err.Error())
	}
	return strings.Join(parts, "; ")
}

// setJoined marks the node joined, saying so if it had failed to.
func (c *Cluster) setJoined() {
	if !c.joined.Swap(true) && c.joinErr.Swap(nil) != nil {
		c.log.Info("joined the cluster", "members", c.ml.NumMembers(), "join", c.cfg.Join)
	}
}

// GossipAddr returns the gossip address peers join (host:port), or "" when
// clustering is off.
func (c *Cluster) GossipAddr() string { return c.gossip }

// NotReady returns why the node should not get traffic, or "" if it
// should: it has joined its cluster (or needs not), no other node claims
// its name, and it has not left.
func (c *Cluster) NotReady() string {
	if other := c.conflicted(); other != "" {
		return fmt.Sprintf("node name %q is also used by the node at %s: set node_name (--node-name) to a unique name on each node",
			c.cfg.NodeName, other)
	}
	switch {
	case c.left.Load():
		return "left the cluster"
	case !c.joined.Load():
		if msg := c.joinErr.Load(); msg != nil {
			return "not joined to the cluster yet: " + *msg
		}
		return "not joined to the cluster yet (--join)"
	}
	return ""
}

// conflicted returns the gossip address of another node that claimed this
// node's name within NameConflictHold, or "".
func (c *Cluster) conflicted() string {
	if at := c.conflict.at.Load(); at != 0 && time.Since(time.Unix(0, at)) < c.cfg.NameConflictHold {
		return *c.conflict.other.Load()
	}
	return ""
}

// Ready reports whether the node should get traffic (NotReady is "").
func (c *Cluster) Ready() bool { return c.NotReady() == "" }

// Members returns the current ring's members.
func (c *Cluster) Members() []Member { return c.router.Ring().Members() }

// Leave hands this node's traces and decisions to the rest of the cluster
// and leaves it: peers stop routing to it, and spans that still arrive are
// forwarded to their owners. Call it before ingest stops; call Close after.
func (c *Cluster) Leave(ctx context.Context) error {
	if c.ml == nil || c.left.Load() || c.aborted.Load() {
		return nil
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d)/4)
	}
	var err error
	if other := c.conflicted(); other != "" {
		// Peers know the other node by this name: a leave message would
		// make them drop it. They never had this node; failure detection
		// tells the few that learned of it.
		c.log.Warn("leaving without a leave message: peers would take it for the other node of this name",
			"node_name", c.cfg.NodeName, "other_node", other)
	} else {
		err = c.ml.Leave(timeout)
	}
	c.ringMu.Lock()
	defer c.ringMu.Unlock()
	c.left.Store(true)
	var peers []Member
	for _, m := range c.router.Ring().Members() {
		if m.Name != c.cfg.NodeName {
			peers = append(peers, m)
		}
	}
	if len(peers) == 0 {
		return err // the last node: it decides what it holds itself
	}
	c.log.Info("leaving the cluster: handing off buffered traces", "peers", len(peers))
	c.setRing(peers)
	return err
}

// Close hands off what arrived since Leave, delivers or keeps locally what
// waits in the forward queues (until ctx ends), and stops gossip. Call it
// after ingest stopped and before the engine stops.
func (c *Cluster) Close(ctx context.Context) error {
	var err error
	c.closed.Do(func() { err = c.close(ctx) })
	return err
}

func (c *Cluster) close(ctx context.Context) error {
	var errs []error
	if c.left.Load() && !c.aborted.Load() {
		c.ringMu.Lock()
		c.router.barrier.Lock()
		c.router.barrier.Unlock() //nolint:staticcheck // barrier
		c.handoff.pass(c.router.current())
		c.ringMu.Unlock()
	}
	c.fwd.closing.Store(true)
	c.router.barrier.Lock()
	c.router.barrier.Unlock() //nolint:staticcheck // barrier: no route enqueues after this
	errs = append(errs, c.fwd.close(ctx))
	c.cancel()
	close(c.stop)
	c.wg.Wait()
	if c.peer != nil {
		// After the forward queues: peers may still send here meanwhile.
		c.peer.stop(ctx)
	}
	switch {
	case c.ml != nil && !c.aborted.Load():
		errs = append(errs, c.ml.Shutdown()) // shuts the transport down too
	case c.ml == nil && c.transport != nil:
		closeUnused(c.transport)
	}
	c.handoff.close()
	return errors.Join(errs...)
}

// closeUnused shuts down a transport that no memberlist reads from: its
// listeners may be blocked handing over a packet or a connection, and
// Shutdown waits for them.
func closeUnused(t *memberlist.NetTransport) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.PacketCh():
			case conn := <-t.StreamCh():
				conn.Close()
			case <-done:
				return
			}
		}
	}()
	t.Shutdown()
	close(done)
}

// Abort stops gossip without leaving, as a crash would: peers find the node
// dead by failure detection. Forward batches still queued are kept
// locally. Close afterwards only stops what is left.
func (c *Cluster) Abort() {
	if c.ml != nil {
		c.ml.Shutdown()
	}
	c.aborted.Store(true)
	c.left.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Close(ctx)
}

// Stats is the cluster layer's span accounting on this node.
type Stats struct {
	ReceivedClient, ReceivedPeer int64 // spans accepted by Router.Consume
	Forwarded                    int64 // acknowledged by peers
	ForwardQueued                int64 // in batches, queues or in flight
	Rerouted, KeptLocal          int64 // undelivered forwards routed again or kept here
	HandoffIn, HandoffOut        int64 // spans of handed-off traces
	HandoffPending               int64
	HandoffKeptLocal             int64
	Lost                         int64 // could be neither forwarded nor kept (buffer full for long)
	Members                      int
}

// Stats returns the current accounting.
func (c *Cluster) Stats() Stats {
	m := c.metrics
	return Stats{
		ReceivedClient: m.spansIn.client.Load(), ReceivedPeer: m.spansIn.peer.Load(),
		Forwarded: m.spansOut.Load(), ForwardQueued: m.queuedSpans.Load(),
		Rerouted: m.requeued.rerouted.Load(), KeptLocal: m.requeued.keptLocal.Load(),
		HandoffIn: m.handoff.spansIn.Load(), HandoffOut: m.handoff.spansOut.Load(),
		HandoffPending: m.handoff.pendingSpans.Load(), HandoffKeptLocal: m.handoff.givenBack.Load(),
		Lost:    m.lost.Load(),
		Members: c.router.Ring().Len(),
	}
}
