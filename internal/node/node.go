package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/decision"
	"github.com/tailsift/tailsift/export"
	"github.com/tailsift/tailsift/ingest"
	"github.com/tailsift/tailsift/policy"
)

// Options are the process-level dependencies of a node.
type Options struct {
	// Registry receives the node's metrics; nil means a new one.
	Registry *prometheus.Registry
	// Logger for operational logs; nil means discard.
	Logger *slog.Logger
	// Stdout is where the "stdout" forward writes; nil means os.Stdout.
	Stdout io.Writer
}

// Node is one running sampler.
type Node struct {
	cfg    Config
	log    *slog.Logger
	reg    *prometheus.Registry
	buf    *buffer.Buffer
	engine *decision.Engine
	exp    *export.Exporter
	recv   *ingest.Receiver

	adminLis  net.Listener
	admin     *http.Server
	adminDone chan struct{}
	policies  *policies
	// forwardFile is the file of a file:PATH forward, closed last.
	forwardFile *os.File

	shutdownOnce sync.Once
	shutdownErr  error
}

// New validates cfg and starts a node. On error nothing is left running.
func New(cfg Config, opts Options) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: opts.Logger, reg: opts.Registry}
	defer func() {
		if err != nil && n.forwardFile != nil { // Shutdown will not run to close it
			n.forwardFile.Close()
		}
	}()
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
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
	ec.Writer = opts.Stdout
	if path := cfg.forwardFile(); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("forward (--forward): %w", err)
		}
		n.forwardFile = f
		ec.Writer = f
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
	if n.recv, err = ingest.New(ic, n.engine, n.reg, n.log.With("component", "ingest")); err != nil {
		n.engine.Shutdown(context.Background())
		n.exp.Shutdown(context.Background())
		return nil, err
	}
	if cfg.Admin != "" {
		if err := n.startAdmin(cfg.Admin); err != nil {
			n.Shutdown(context.Background())
			return nil, err
		}
	}
	n.policies.watch(cfg.PolicyPoll)
	n.log.Info("sampler started", "otlp_grpc", n.recv.GRPCAddr(), "otlp_http", n.recv.HTTPAddr(),
		"admin", n.AdminAddr(), "forward", cfg.Forward, "policies", policiesName(cfg.Policies), "rules", set.RuleNames())
	return n, nil
}

func policiesName(path string) string {
	if path == "" {
		return "embedded policies.example.yaml"
	}
	return path
}

// keptTraces adapts the exporter to the engine's interface.
type keptTraces struct{ *export.Exporter }

func (k keptTraces) ExportTrace(t *buffer.Trace, threshold uint64, rootAttrs []decision.Attribute) {
	var scratch [4]export.Attribute // the usual few stay on the stack
	k.Exporter.ExportTrace(t, keep(threshold, rootAttrs, scratch[:0]))
}

func (k keptTraces) ExportSpans(groupKey []byte, spans [][]byte, threshold uint64, rootAttrs []decision.Attribute) {
	var scratch [4]export.Attribute
	k.Exporter.ExportSpans(groupKey, spans, keep(threshold, rootAttrs, scratch[:0]))
}

// keep converts the engine's account of a kept trace, appending the
// attributes to scratch.
func keep(threshold uint64, rootAttrs []decision.Attribute, scratch []export.Attribute) export.Keep {
	k := export.Keep{Threshold: threshold}
	if len(rootAttrs) > 0 {
		for _, a := range rootAttrs {
			scratch = append(scratch, export.Attribute(a))
		}
		k.RootAttributes = scratch
	}
	return k
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
	mux.HandleFunc("POST /-/reload", func(w http.ResponseWriter, _ *http.Request) {
		if err := n.ReloadPolicies("POST /-/reload"); err != nil {
			http.Error(w, "policies not reloaded, the previous ones keep running:\n"+err.Error(), http.StatusBadRequest)
			return
		}
		io.WriteString(w, "policies "+n.PolicyHash()+"\n")
	})
	n.adminLis = lis
	n.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.adminDone = make(chan struct{})
	go func() {
		defer close(n.adminDone)
		if err := n.admin.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin server stopped", "err", err)
		}
	}()
	return nil
}

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

// Stats is the node's span accounting: every accepted span is sent, failed
// to export (with a reason, in metrics), dropped, or still in flight:
// Accepted == Sent + ExportFailed + DroppedPolicy + DroppedLate + Buffered + ExportPending.
type Stats struct {
	Accepted      int64
	Sent          int64
	ExportFailed  int64
	DroppedPolicy int64
	DroppedLate   int64
	Buffered      int64
	ExportPending int64
	TracesKept    int64
	TracesDropped int64
	BufferBytes   int64 // memory accounted to the buffer
}

// Stats returns the node's accounting.
func (n *Node) Stats() Stats {
	d, e := n.engine.Stats(), n.exp.Stats()
	return Stats{
		Accepted: d.Accepted, Sent: e.Sent, ExportFailed: e.Failed,
		DroppedPolicy: d.DroppedPolicy, DroppedLate: d.DroppedLate,
		Buffered: d.Buffered, ExportPending: e.Pending,
		TracesKept: d.TracesKept, TracesDropped: d.TracesDropped,
		BufferBytes: n.buf.Stats().Bytes,
	}
}

// SetPolicies swaps the policy set of a running node.
func (n *Node) SetPolicies(set *policy.Set) { n.engine.SetPolicies(set) }

// Shutdown stops the node in data-path order: stop ingest (requests in
// progress finish), decide every buffered trace, flush and send exports,
// then close the admin endpoint. Idempotent; ctx bounds the whole.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutdownOnce.Do(func() {
		n.policies.close()
		var errs []error
		if n.recv != nil {
			errs = append(errs, n.recv.Shutdown(ctx))
		}
		errs = append(errs, n.engine.Shutdown(ctx))
		errs = append(errs, n.exp.Shutdown(ctx))
		if n.admin != nil {
			errs = append(errs, n.admin.Shutdown(ctx))
			<-n.adminDone
		}
		if n.forwardFile != nil {
			errs = append(errs, n.forwardFile.Close())
		}
		n.shutdownErr = errors.Join(errs...)
	})
	return n.shutdownErr
}
