package node

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/cluster"
	"github.com/tailsift/tailsift/decision"
	"github.com/tailsift/tailsift/export"
	"github.com/tailsift/tailsift/ingest"
	"github.com/tailsift/tailsift/internal/audit"
	"github.com/tailsift/tailsift/internal/auth"
	"github.com/tailsift/tailsift/internal/redact"
	"github.com/tailsift/tailsift/internal/reloadfile"
	"github.com/tailsift/tailsift/internal/store"
	"github.com/tailsift/tailsift/internal/tlsconfig"
	"github.com/tailsift/tailsift/internal/wal"
	"github.com/tailsift/tailsift/policy"
)

// Options are the process-level dependencies of a node.
type Options struct {
	// Registry receives the node's metrics; nil means a new one.
	Registry *prometheus.Registry
	// Logger for operational logs; nil means discard. The node redacts
	// the secrets of its configuration (Config.Redactor) in what it logs.
	Logger *slog.Logger
	// Stdout is where the "stdout" forward writes; nil means os.Stdout.
	Stdout io.Writer
	// Cluster, if set, adjusts the cluster settings that have no flag
	// (failure detection and retry timings, for tests and benchmarks).
	Cluster func(*cluster.Config)
}

// Node is one running sampler.
type Node struct {
	cfg    Config
	log    *slog.Logger
	red    *redact.Redactor
	reg    *prometheus.Registry
	buf    *buffer.Buffer
	engine *decision.Engine
	exp    *export.Exporter
	recv   *ingest.Receiver
	clu    *cluster.Cluster
	store  *store.Store // nil without data_dir
	wal    *wal.Log     // nil without durability wal (and a log to replay)
	data   *dataDir     // nil without data_dir
	// The replay of data_dir (startReplay).
	replaying  atomic.Bool
	replayDone chan struct{}
	replayErr  atomic.Pointer[error]
	// stopping is set when Shutdown begins: /readyz answers 503.
	stopping atomic.Bool

	// tls is the client-facing listeners' TLS (nil: plaintext).
	tls       *tls.Config
	auth      *auth.Authenticator // nil: no client authentication
	adminLis  net.Listener
	admin     *http.Server
	adminDone chan struct{}
	policies  *policies
	// forwardFile is the file of a file:PATH forward, closed last.
	forwardFile *os.File
	audit       *audit.Log // nil: no audit_log
	auditFile   *os.File   // closed after forwardFile

	shutdownOnce sync.Once
	shutdownErr  error
}

// New validates cfg and starts a node. On error nothing is left running.
func New(cfg Config, opts Options) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	fwdTLS, fwdHeaders, fwdCompression, secrets, err := cfg.forwardClient()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: opts.Logger, reg: opts.Registry, red: cfg.Redactor().With(secrets...)}
	defer func() {
		if err != nil && n.forwardFile != nil { // Shutdown will not run to close it
			n.forwardFile.Close()
		}
		if err != nil && n.auditFile != nil {
			n.auditFile.Close()
		}
	}()
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	// Every component logs through this: the start-up line below shows the
	// forward URL, and export's errors quote it.
	n.log = slog.New(n.red.Handler(n.log.Handler()))
	if err := n.openAudit(); err != nil {
		return nil, err
	}
	if n.reg == nil {
		n.reg = prometheus.NewRegistry()
	}
	n.policies = newPolicies(n, cfg.Policies, n.reg)
	set, err := n.policies.initial()
	if err != nil {
		return nil, err
	}
	ic, bc, dc, ec := cfg.components()
	if cfg.listenerTLS().Enabled() {
		if n.tls, err = n.loadListenerTLS(); err != nil {
			return nil, err
		}
		ic.TLS = n.tls
	}
	if ac := cfg.authConfig(); ac.Enabled() {
		if n.auth, err = auth.New(ac); err != nil {
			return nil, fmt.Errorf("client authentication (auth_api_keys_file, auth_jwt_jwks_file, auth_jwt_jwks_url): %w", err)
		}
		defer func() {
			if err != nil {
				n.auth.Close()
			}
		}()
		ic.Authenticate = ingestAuthenticator(n.auth)
		ic.OnAuthFailure = func(protocol, remote, reason string) {
			n.audit.Limited("ingest_auth_failure", "protocol", protocol, "remote", remote, "reason", reason)
		}
	}
	ec.Writer = opts.Stdout
	ec.TLS, ec.Headers, ec.Compression = fwdTLS, fwdHeaders, fwdCompression
	if path := cfg.forwardFile(); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("forward (--forward): %w", err)
		}
		n.forwardFile = f
		ec.Writer = f
	}

	if cfg.DataDir != "" {
		if n.data, err = openDataDir(cfg, n.log); err != nil {
			return nil, err
		}
		n.store, n.wal = n.data.store, n.data.wal
		bc.Disk, bc.Legacy = n.data.spillDisk, n.store
		if cfg.Durability == DurabilityWAL {
			bc.Log = n.wal
		} else {
			bc.Replay = n.wal
		}
		dc.Decisions = n.store
		defer func() {
			if err != nil { // Shutdown did not run to close them
				n.buf.Close()
				n.closeDataDir(context.Background())
			}
		}()
	}

	// Start from the sink end, so each stage has its consumer when it starts.
	if n.buf, err = buffer.New(bc); err != nil {
		return nil, err
	}
	if n.exp, err = export.New(ec, n.reg, n.log.With("component", "export")); err != nil {
		return nil, err
	}
	if n.engine, err = decision.New(dc, n.buf, set, keptTraces{n.exp}, n.reg); err != nil {
		n.exp.Shutdown(context.Background())
		return nil, err
	}
	if n.store != nil {
		registerStoreMetrics(n.reg, n.store, n.buf)
		registerWALMetrics(n.reg, n.wal, n.buf)
		if err := n.engine.LoadDecisions(); err != nil {
			n.engine.Shutdown(context.Background())
			n.exp.Shutdown(context.Background())
			return nil, fmt.Errorf("loading decisions from data_dir %s: %w", cfg.DataDir, err)
		}
	}
	var key []byte
	if cfg.ClusterKeyFile != "" {
		if key, err = cluster.ReadKeyFile(cfg.ClusterKeyFile); err != nil {
			n.engine.Shutdown(context.Background())
			n.exp.Shutdown(context.Background())
			return nil, fmt.Errorf("cluster_key_file (--cluster-key-file): %w", err)
		}
	}
	cc := cfg.clusterConfig(key)
	if n.audit != nil {
		cc.SecurityEvent = n.clusterEvent
	}
	if cc.PeerServerTLS, cc.PeerDialTLS, err = cfg.peerTLS(); err != nil {
		n.engine.Shutdown(context.Background())
		n.exp.Shutdown(context.Background())
		return nil, err
	}
	if addr, exposed := cfg.clusterExposed(); exposed && len(key) == 0 {
		n.log.Warn("insecure_cluster: gossip and the peer link on " + addr + " have no key; anyone who reaches them can join and be handed traces")
	}
	if opts.Cluster != nil {
		opts.Cluster(&cc)
	}
	if n.clu, err = cluster.New(cc, engine{n.engine}, n.reg, n.log.With("component", "cluster")); err != nil {
		n.engine.Shutdown(context.Background())
		n.exp.Shutdown(context.Background())
		return nil, err
	}
	if n.recv, err = ingest.New(ic, n.clu.Router(), n.reg, n.log.With("component", "ingest")); err != nil {
		n.clu.Close(context.Background())
		n.engine.Shutdown(context.Background())
		n.exp.Shutdown(context.Background())
		return nil, err
	}
	if err := n.clu.Start(); err != nil {
		n.Shutdown(context.Background())
		return nil, err
	}
	if n.store != nil {
		n.startReplay()
	}
	if cfg.Admin != "" {
		if err := n.startAdmin(cfg.Admin); err != nil {
			n.Shutdown(context.Background())
			return nil, err
		}
	}
	n.policies.watch(cfg.PolicyPoll)
	n.auditStart()
	n.log.Info("sampler started", "otlp_grpc", n.recv.GRPCAddr(), "otlp_http", n.recv.HTTPAddr(),
		"admin", n.AdminAddr(), "forward", cfg.Forward, "policies", policiesName(cfg.Policies), "rules", set.RuleNames())
	return n, nil
}

// isLoopback reports whether addr is a loopback address.
func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func policiesName(path string) string {
	if path == "" {
		return "embedded policies.example.yaml"
	}
	return path
}

// loadListenerTLS loads the listeners' certificate files and reports
// their reloads in the log and in tailsift_tls_reloads_total.
func (n *Node) loadListenerTLS() (*tls.Config, error) {
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tailsift_tls_reloads_total",
		Help: "Times the listeners' TLS files (tls_cert_file, tls_key_file, tls_client_ca_file) changed, by outcome: ok (in use), failed (the previous files stay).",
	}, []string{"outcome"})
	ok, failed := reloads.WithLabelValues("ok"), reloads.WithLabelValues("failed")
	n.reg.MustRegister(reloads)
	cfg, _, err := tlsconfig.ServerConfig(n.cfg.listenerTLS(), reloadfile.OnReload(func(err error) {
		n.audit.Event("secret_reload", "what", "listener TLS", "cert", n.cfg.TLSCertFile, "client_ca", n.cfg.TLSClientCAFile,
			"error", errString(err))
		if err != nil {
			failed.Inc()
			n.log.Warn("TLS files changed but do not load; the previous ones stay in use", "err", err)
			return
		}
		ok.Inc()
		n.log.Info("TLS files reloaded", "cert", n.cfg.TLSCertFile, "client_ca", n.cfg.TLSClientCAFile)
	}))
	if err != nil {
		return nil, fmt.Errorf("TLS files (tls_cert_file, tls_key_file, tls_client_ca_file): %w", err)
	}
	return cfg, nil
}

func (n *Node) startAdmin(addr string) error {
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if reason := n.notReady(); reason != "" {
			http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	// Profiles on the admin listener only (net/http/pprof also registers on
	// http.DefaultServeMux, which nothing here serves).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", n.cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /api/v1/traces/{id}", n.explain)
	mux.HandleFunc("POST /-/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := n.ReloadPolicies("POST /-/reload from " + r.RemoteAddr); err != nil {
			http.Error(w, "policies not reloaded, the previous ones keep running:\n"+err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, "policies "+n.PolicyHash()+"\n")
	})
	if n.tls != nil {
		// The same certificate, but no client certificate asked for:
		// health probes (a kubelet) have none.
		tc := n.tls.Clone()
		tc.ClientAuth, tc.VerifyConnection = tls.NoClientCert, nil
		tc.NextProtos = []string{"h2", "http/1.1"}
		lis = tls.NewListener(lis, tc)
	}
	var handler http.Handler = n.auditAdmin(mux)
	if n.cfg.AdminTokenFile != "" {
		auth, err := newAdminAuth(n)
		if err != nil {
			lis.Close()
			return err
		}
		handler = auth.wrap(handler)
	} else if !isLoopback(lis.Addr()) {
		n.log.Warn("the admin endpoints (reload, profiles, explain, metrics) answer anyone who reaches " + lis.Addr().String() +
			": set admin_token_file, or bind admin to loopback")
	}
	n.adminLis = lis
	n.admin = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	n.adminDone = make(chan struct{})
	go func() {
		defer close(n.adminDone)
		if err := n.admin.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin server stopped", "err", err)
		}
	}()
	return nil
}

// cmdline serves /debug/pprof/cmdline as net/http/pprof does (arguments
// separated by NUL), with secrets redacted: --forward may carry a
// password, and profiles are often shared.
func (n *Node) cmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, strings.Join(n.red.Args(os.Args), "\x00"))
}

// explain serves GET /api/v1/traces/{id}: what the trace's owner knows of
// it, asked from whichever node the request reaches.
func (n *Node) explain(w http.ResponseWriter, r *http.Request) {
	raw, err := hex.DecodeString(r.PathValue("id"))
	if err != nil || len(raw) != 16 || [16]byte(raw) == [16]byte{} {
		http.Error(w, "a trace ID is 32 hex digits, not all zero", http.StatusBadRequest)
		return
	}
	x, err := n.Cluster().Explain(r.Context(), [16]byte(raw))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(x)
}

// notReady returns why the node should not get traffic, or "" if it
// should: its policies are loaded (New fails otherwise), it has joined its
// cluster and no other node uses its name, it is not overloaded, and it is
// not shutting down.
func (n *Node) notReady() string {
	if n.stopping.Load() {
		return "shutting down"
	}
	if reason := n.clu.NotReady(); reason != "" {
		return reason
	}
	if n.buf.Pressure() {
		return "overloaded: the buffer is nearly full (--memory-limit)"
	}
	return n.dataDirNotReady()
}

// Cluster returns the node's cluster membership.
func (n *Node) Cluster() Cluster { return Cluster{n.clu} }

// GRPCAddr, HTTPAddr and AdminAddr return the bound addresses (nil if off).
func (n *Node) GRPCAddr() net.Addr { return n.recv.GRPCAddr() }
func (n *Node) HTTPAddr() net.Addr { return n.recv.HTTPAddr() }
func (n *Node) AdminAddr() net.Addr {
	if n.adminLis == nil {
		return nil
	}
	return n.adminLis.Addr()
}

// Registry returns the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// Stats is the node's span accounting. Every accepted span (from clients,
// from peers, or handed off by a peer) is sent, failed to export (with a
// reason, in metrics), dropped, still in flight here, or passed to a peer
// that acknowledged it:
//
//	Accepted == Sent + ExportFailed + DroppedPolicy + DroppedLate + DroppedStorage + Buffered + ExportPending
//	          + Forwarded + ForwardQueued + HandedOff + HandoffPending + ClusterDropped
//
// Summed over a cluster, spans passed between nodes cancel out, and the
// spans clients sent are ClientAccepted.
type Stats struct {
	Accepted       int64
	ClientAccepted int64 // from clients (OTLP), as opposed to peers
	Sent           int64
	ExportFailed   int64
	DroppedPolicy  int64
	DroppedLate    int64
	DroppedStorage int64 // spilled bytes unreadable
	Recovered      int64 // read back from the write-ahead log at start (accepted by an earlier run)
	Buffered       int64
	ExportPending  int64
	Forwarded      int64 // to the owner of their trace, acknowledged
	ForwardQueued  int64
	HandedOff      int64 // buffered spans handed to a new owner, acknowledged
	HandoffPending int64
	ClusterDropped int64 // could be neither forwarded nor kept here
	TracesKept     int64
	TracesDropped  int64
	BufferBytes    int64 // memory accounted to the buffer
}

// Stats returns the node's accounting.
func (n *Node) Stats() Stats {
	d, e, c := n.engine.Stats(), n.exp.Stats(), n.clu.Stats()
	return Stats{
		Accepted:  c.ReceivedClient + c.ReceivedPeer + c.HandoffIn + d.Recovered,
		Recovered: d.Recovered, DroppedStorage: d.DroppedStorage,
		ClientAccepted: c.ReceivedClient,
		Sent:           e.Sent, ExportFailed: e.Failed,
		DroppedPolicy: d.DroppedPolicy, DroppedLate: d.DroppedLate,
		Buffered: d.Buffered, ExportPending: e.Pending,
		Forwarded: c.Forwarded, ForwardQueued: c.ForwardQueued,
		HandedOff: c.HandoffOut, HandoffPending: c.HandoffPending, ClusterDropped: c.Lost,
		TracesKept: d.TracesKept, TracesDropped: d.TracesDropped,
		BufferBytes: n.buf.Stats().Bytes,
	}
}

// Plus returns the field-wise sum of s and o, for a cluster's totals.
func (s Stats) Plus(o Stats) Stats {
	return Stats{
		Accepted: s.Accepted + o.Accepted, ClientAccepted: s.ClientAccepted + o.ClientAccepted,
		Sent: s.Sent + o.Sent, ExportFailed: s.ExportFailed + o.ExportFailed,
		DroppedPolicy: s.DroppedPolicy + o.DroppedPolicy, DroppedLate: s.DroppedLate + o.DroppedLate,
		DroppedStorage: s.DroppedStorage + o.DroppedStorage, Recovered: s.Recovered + o.Recovered,
		Buffered: s.Buffered + o.Buffered, ExportPending: s.ExportPending + o.ExportPending,
		Forwarded: s.Forwarded + o.Forwarded, ForwardQueued: s.ForwardQueued + o.ForwardQueued,
		HandedOff: s.HandedOff + o.HandedOff, HandoffPending: s.HandoffPending + o.HandoffPending,
		ClusterDropped: s.ClusterDropped + o.ClusterDropped,
		TracesKept:     s.TracesKept + o.TracesKept, TracesDropped: s.TracesDropped + o.TracesDropped,
		BufferBytes: s.BufferBytes + o.BufferBytes,
	}
}

// Settled reports whether s accounts for every accepted span with nothing
// in flight: the identity on Stats holds and no span waits anywhere.
func (s Stats) Settled() bool {
	return s.Buffered == 0 && s.ExportPending == 0 && s.ForwardQueued == 0 && s.HandoffPending == 0 &&
		s.Accepted == s.Out()
}

// Out is the right-hand side of the accounting identity.
func (s Stats) Out() int64 {
	return s.Sent + s.ExportFailed + s.DroppedPolicy + s.DroppedLate + s.DroppedStorage + s.Buffered + s.ExportPending +
		s.Forwarded + s.ForwardQueued + s.HandedOff + s.HandoffPending + s.ClusterDropped
}

// Abort stops the node as a crash would, for failure tests (sampler bench
// --kill-at): receivers close their connections, gossip stops without
// leaving, nothing is handed off, and nothing more is exported; spans
// still in the node are failed (counted in ExportFailed) when Shutdown
// later releases its resources.
func (n *Node) Abort() {
	n.stopping.Store(true)
	n.recv.Abort()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n.exp.Shutdown(ctx)
	n.clu.Abort()
}

// SetPolicies swaps the policy set of a running node.
func (n *Node) SetPolicies(set *policy.Set) { n.engine.SetPolicies(set) }

// Shutdown stops the node in data-path order: leave the cluster, handing
// buffered traces to the remaining nodes; stop ingest (requests in progress
// finish, routed to their owners); hand off what they brought and deliver
// the forward queues; decide every trace still here; flush and send
// exports; then close the admin endpoint. Idempotent; ctx bounds the whole.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutdownOnce.Do(func() {
		n.stopping.Store(true)
		n.policies.close()
		var errs []error
		errs = append(errs, n.clu.Leave(ctx))
		if n.recv != nil {
			errs = append(errs, n.recv.Shutdown(ctx))
		}
		errs = append(errs, n.clu.Close(ctx))
		errs = append(errs, n.engine.Shutdown(ctx))
		errs = append(errs, n.waitReplay(ctx))
		errs = append(errs, n.exp.Shutdown(ctx))
		if n.auth != nil {
			n.auth.Close()
		}
		// The spill loop may be in a write to a disk that hangs.
		errs = append(errs, closeBounded(ctx, func() error { n.buf.Close(); return nil }))
		errs = append(errs, n.closeDataDir(ctx))
		if n.admin != nil {
			errs = append(errs, n.admin.Shutdown(ctx))
			<-n.adminDone
		}
		if n.forwardFile != nil {
			errs = append(errs, n.forwardFile.Close())
		}
		if n.audit != nil {
			n.audit.Event("stop", "node", n.clu.Name(), "error", errString(errors.Join(errs...)))
		}
		if n.auditFile != nil {
			errs = append(errs, n.auditFile.Close())
		}
		n.shutdownErr = errors.Join(errs...)
	})
	return n.shutdownErr
}
