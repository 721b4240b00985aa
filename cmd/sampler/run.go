package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/tailsift/tailsift/internal/redact"
	"github.com/tailsift/tailsift/node"
)

// runNode implements "sampler run": flags override --config, which
// overrides the defaults.
func runNode(args []string, stdout, stderr io.Writer) int {
	cfg := node.DefaultConfig()
	fs := flag.NewFlagSet("sampler run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "sampler.yaml `file`; flags override its keys")
	shutdownTimeout := fs.Duration("shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long to finish deciding and exporting before exiting")
	// Flags write into a separate Config so that only those given override
	// the file; flag.Visit below copies them.
	var f node.Config = cfg
	fs.StringVar(&f.OTLPGRPC, "otlp-grpc", cfg.OTLPGRPC, "OTLP/gRPC listen `address` (empty disables)")
	fs.StringVar(&f.OTLPHTTP, "otlp-http", cfg.OTLPHTTP, "OTLP/HTTP listen `address` (empty disables)")
	fs.StringVar(&f.Admin, "admin", cfg.Admin, "admin listen `address` for /metrics and /healthz (empty disables)")
	fs.StringVar(&f.Forward, "forward", cfg.Forward, "where kept traces go: stdout (OTLP JSON lines), host:port (OTLP/gRPC) or http(s)://[user:password@]host:port[/path] (OTLP/HTTP); its user, password and secret query values are redacted in logs and /debug/pprof/cmdline")
	fs.StringVar(&f.Policies, "policies", cfg.Policies, "policy `file` (default: the embedded policies.example.yaml); reloaded on change, SIGHUP and POST /-/reload")
	fs.DurationVar(&f.PolicyPoll, "policy-poll", cfg.PolicyPoll, "how often to check the policy file for changes (0: only on SIGHUP and POST /-/reload)")
	fs.DurationVar(&f.DecisionWait, "decision-wait", cfg.DecisionWait, "decide a trace at the latest this long after its first span")
	fs.DurationVar(&f.RootWait, "root-wait", cfg.RootWait, "decide a trace this long after its root span arrived")
	fs.DurationVar(&f.MaxTraceAge, "max-trace-age", cfg.MaxTraceAge, "never buffer a trace longer than this after its first span")
	fs.BoolVar(&f.Shadow, "shadow", cfg.Shadow, "forward every trace, marking each root span with the decision the policies took (tailsift.sampling.decision, tailsift.sampling.rule)")
	fs.BoolVar(&f.RuleAttribute, "rule-attribute", cfg.RuleAttribute, "mark the root span of kept traces with the deciding rule (tailsift.sampling.rule)")
	fs.Var(&f.MemoryLimit, "memory-limit", "buffer memory `size` (e.g. 512MiB, 2GiB); past it ingest answers retry-later")
	fs.Var(&f.MaxRequestSize, "max-request-size", "largest accepted OTLP request `size`")
	fs.Var(&f.MaxExportRequestSize, "max-export-request-size", "largest OTLP request `size` sent to --forward; a span too big for one alone is dropped and counted (reason oversize)")
	fs.IntVar(&f.MaxTraceSpans, "max-trace-spans", cfg.MaxTraceSpans, "a trace reaching this many spans is decided at once; its later spans follow the decision")
	fs.Var(&f.MaxTraceBytes, "max-trace-bytes", "a trace reaching this `size` of span bytes is decided at once; its later spans follow the decision")
	fs.Var(&f.MaxInflightBytes, "max-inflight-bytes", "`size` of the OTLP request bytes in progress on both receivers (received, decompressed, transcoded, indexed; a gRPC request counts --max-request-size until it has arrived); past it clients are told to retry (default: --memory-limit / 4, at least room for 4 gRPC uploads and an HTTP request of --max-request-size)")
	fs.IntVar(&f.MaxConcurrentRequests, "max-concurrent-requests", cfg.MaxConcurrentRequests, "OTLP requests past their upload (scanned, handed to the buffer) on both receivers; past it clients are told to retry")
	fs.IntVar(&f.MaxConnections, "max-connections", cfg.MaxConnections, "open connections per OTLP listener; further connections wait until one closes")
	fs.DurationVar(&f.RequestTimeout, "request-timeout", cfg.RequestTimeout, "longest an OTLP request may take to arrive; a stalled client gives back its share of --max-inflight-bytes after this")
	fs.StringVar(&f.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.StringVar(&f.LogFormat, "log-format", cfg.LogFormat, "text or json (logs go to stderr)")
	fs.StringVar(&f.NodeName, "node-name", cfg.NodeName, "this node's `name`, unique in the cluster (default: the host name and the gossip port, <host>-<port>)")
	fs.StringVar(&f.ClusterBind, "cluster-bind", cfg.ClusterBind, "gossip listen `address` (TCP and UDP) for cluster membership; empty runs a single node without gossip")
	fs.StringVar(&f.ClusterAdvertise, "cluster-advertise", cfg.ClusterAdvertise, "gossip `address` peers reach this node on (default: from --cluster-bind); peers forward spans to its host at the --otlp-grpc port")
	fs.Func("join", "`host:port`[,host:port...] of cluster nodes to join; a name resolving to several addresses (a Kubernetes headless service) joins them all, and is resolved again periodically", func(v string) error {
		f.Join = nil
		for _, j := range strings.Split(v, ",") {
			if j = strings.TrimSpace(j); j != "" {
				f.Join = append(f.Join, j)
			}
		}
		return nil
	})
	fs.StringVar(&f.ClusterKeyFile, "cluster-key-file", cfg.ClusterKeyFile, "`file` with the gossip encryption key: 16, 24 or 32 bytes, base64 (head -c 32 /dev/urandom | base64)")
	fs.StringVar(&f.DataDir, "data-dir", cfg.DataDir, "`directory` for the embedded store: span bytes past --memory-limit spill there, and the write-ahead log and recent decisions live there (empty: memory only)")
	fs.Var(&f.DiskLimit, "disk-limit", "bound on --data-dir `size`; past it spilling stops, and with --durability wal ingest answers retry-later")
	fs.StringVar(&f.Durability, "durability", cfg.Durability, "none: a crash loses buffered spans; wal: spans are synced to --data-dir before the client's OK (one fsync per group of concurrent requests), and a restart recovers them")
	fs.StringVar(&f.DataKeyFile, "data-key-file", cfg.DataKeyFile, "`file` with the key that encrypts --data-dir: 16, 24 or 32 bytes, base64 (head -c 32 /dev/urandom | base64)")
	fs.BoolVar(&f.StressRelief, "stress-relief", cfg.StressRelief, "when memory (and disk) is full, decide the oldest traces early rather than refuse spans")
	fs.Var(&f.GoMemoryLimit, "go-memory-limit", "Go runtime soft memory limit `size` (default: --memory-limit x 1.5 + 256MiB; the GOMEMLIMIT variable wins)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sampler run: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *configPath != "" {
		if err := cfg.LoadFile(*configPath); err != nil {
			fmt.Fprintf(stderr, "sampler run: %v\n", redact.Text(err.Error()))
			return 2
		}
	}
	fs.Visit(func(fl *flag.Flag) { applyFlag(&cfg, &f, fl.Name) })
	// Errors may quote the forward URL; the node redacts its own logs.
	red := cfg.Redactor()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "sampler run: invalid configuration:\n%v\n", red.Text(err.Error()))
		return 2
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	// The runtime limit makes the GC work harder before the process grows
	// past what the configuration allows for, rather than after.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.RuntimeMemoryLimit())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.New(cfg, node.Options{Logger: log, Stdout: stdout})
	if err != nil {
		// Plain text: policy errors list one problem per line.
		fmt.Fprintf(stderr, "sampler run: %v\n", red.Text(err.Error()))
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for running := true; running; {
		select {
		case <-hup:
			n.ReloadPolicies("SIGHUP") // errors are logged; the old policies keep running
		case <-ctx.Done():
			running = false
		}
	}
	stop() // a second signal kills the process the default way
	log.Info("shutting down: deciding buffered traces and flushing exports", "timeout", *shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		log.Error("shutdown incomplete", "err", red.Text(err.Error()))
		return 1
	}
	s := n.Stats()
	log.Info("stopped", "spans_accepted", s.Accepted, "spans_sent", s.Sent, "spans_dropped", s.DroppedPolicy+s.DroppedLate,
		"spans_export_failed", s.ExportFailed, "spans_forwarded", s.Forwarded, "spans_handed_off", s.HandedOff,
		"traces_kept", s.TracesKept, "traces_dropped", s.TracesDropped)
	return 0
}

// applyFlag copies the flag name from f (the flag values) to cfg.
func applyFlag(cfg, f *node.Config, name string) {
	switch name {
	case "otlp-grpc":
		cfg.OTLPGRPC = f.OTLPGRPC
	case "otlp-http":
		cfg.OTLPHTTP = f.OTLPHTTP
	case "admin":
		cfg.Admin = f.Admin
	case "forward":
		cfg.Forward = f.Forward
	case "policies":
		cfg.Policies = f.Policies
	case "policy-poll":
		cfg.PolicyPoll = f.PolicyPoll
	case "decision-wait":
		cfg.DecisionWait = f.DecisionWait
	case "root-wait":
		cfg.RootWait = f.RootWait
	case "max-trace-age":
		cfg.MaxTraceAge = f.MaxTraceAge
	case "shadow":
		cfg.Shadow = f.Shadow
	case "rule-attribute":
		cfg.RuleAttribute = f.RuleAttribute
	case "memory-limit":
		cfg.MemoryLimit = f.MemoryLimit
	case "max-request-size":
		cfg.MaxRequestSize = f.MaxRequestSize
	case "max-export-request-size":
		cfg.MaxExportRequestSize = f.MaxExportRequestSize
	case "max-trace-spans":
		cfg.MaxTraceSpans = f.MaxTraceSpans
	case "max-trace-bytes":
		cfg.MaxTraceBytes = f.MaxTraceBytes
	case "max-inflight-bytes":
		cfg.MaxInflightBytes = f.MaxInflightBytes
	case "max-concurrent-requests":
		cfg.MaxConcurrentRequests = f.MaxConcurrentRequests
	case "max-connections":
		cfg.MaxConnections = f.MaxConnections
	case "request-timeout":
		cfg.RequestTimeout = f.RequestTimeout
	case "log-level":
		cfg.LogLevel = f.LogLevel
	case "log-format":
		cfg.LogFormat = f.LogFormat
	case "node-name":
		cfg.NodeName = f.NodeName
	case "cluster-bind":
		cfg.ClusterBind = f.ClusterBind
	case "cluster-advertise":
		cfg.ClusterAdvertise = f.ClusterAdvertise
	case "join":
		cfg.Join = f.Join
	case "cluster-key-file":
		cfg.ClusterKeyFile = f.ClusterKeyFile
	case "data-dir":
		cfg.DataDir = f.DataDir
	case "disk-limit":
		cfg.DiskLimit = f.DiskLimit
	case "durability":
		cfg.Durability = f.Durability
	case "data-key-file":
		cfg.DataKeyFile = f.DataKeyFile
	case "stress-relief":
		cfg.StressRelief = f.StressRelief
	case "go-memory-limit":
		cfg.GoMemoryLimit = f.GoMemoryLimit
	}
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
