package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tailsift/tailsift/bench"
)

// runBench implements "sampler bench".
func runBench(args []string, stdout, stderr io.Writer) int {
	sc := bench.DefaultScenario()
	sw := bench.DefaultSweep()
	fs := flag.NewFlagSet("sampler bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: sampler bench [flags]

Runs a load benchmark and prints a report. By default it starts a sink, a
sampler node and the load generator in this process; with --target it
drives a running deployment whose --forward points at --sink-listen.

`)
		fs.PrintDefaults()
	}
	fs.DurationVar(&sc.Duration, "duration", sc.Duration, "how long to send (per step with --sweep)")
	fs.Float64Var(&sc.Rate, "rate", sc.Rate, "offered load in spans/s; 0 sends as fast as the engine takes it")
	fs.StringVar(&sc.Protocol, "protocol", sc.Protocol, "grpc or http (protobuf)")
	fs.DurationVar(&sc.Slow, "slow", sc.Slow, "traces at least this long count as slow in the report")
	w := &sc.Workload
	fs.IntVar(&w.Connections, "connections", w.Connections, "client connections (each stands for SDKs of some services)")
	fs.IntVar(&w.Services, "services", w.Services, "distinct services")
	fs.IntVar(&w.MeanSpans, "spans", w.MeanSpans, "mean spans per ordinary trace")
	fs.Float64Var(&w.LargeShare, "large-share", w.LargeShare, "share of traces with hundreds of spans")
	fs.Float64Var(&w.ErrorShare, "error-share", w.ErrorShare, "share of traces with an ERROR span")
	fs.Float64Var(&w.TailShare, "tail-share", w.TailShare, "share of traces of at least --tail-min")
	fs.DurationVar(&w.TailMin, "tail-min", w.TailMin, "duration of the slow tail")
	fs.DurationVar(&w.MedianDuration, "median-duration", w.MedianDuration, "median trace duration")
	fs.Uint64Var(&w.Seed, "seed", w.Seed, "workload seed: same seed, same traces")

	fs.IntVar(&sc.Nodes, "nodes", sc.Nodes, "in-process sampler nodes")
	fs.DurationVar(&sc.JoinAt, "join-at", 0, "in-process cluster: start one more node this long into the load")
	fs.DurationVar(&sc.LeaveAt, "leave-at", 0, "in-process cluster: shut the second node down gracefully this long into the load")
	fs.DurationVar(&sc.KillAt, "kill-at", 0, "in-process cluster: crash the last node this long into the load (it gets no load directly)")
	// The node settings a benchmark varies, with the flags and help of
	// "sampler run".
	for _, key := range []string{"policies", "decision_wait", "root_wait", "memory_limit", "durability", "disk_limit"} {
		s := lookupSetting(key)
		bindFlag(fs, s, &sc.Node, "in-process nodes' --"+s.Flag+": "+s.Help())
		if fl := fs.Lookup(s.Flag); fl.DefValue == "" && s.Default() != "" { // flag prints no default for "": say what it means
			fl.Usage += " (default: " + s.Default() + ")"
		}
	}
	fs.StringVar(&sc.DataDir, "data-dir", "", "in-process nodes' data directory, for spill (past 62.5% of --memory-limit) and the write-ahead log:\n"+
		"node N uses `DIR`/node-N, made for the run and removed after it (DIR is made if missing and kept; an existing\n"+
		"DIR/node-N is refused, never reused or deleted). \"temp\": a new directory under $TMPDIR, removed after the run\n"+
		"(for a directory named temp, say ./temp). Put DIR on the disk to measure: on tmpfs, fsyncs cost nothing. Default: memory only")

	fs.BoolVar(&sc.TLS, "tls", false, "in-process nodes serve OTLP over TLS (the generator verifies them) and, with several nodes, the\n"+
		"peer link over mutual TLS, with certificates made for the run")
	targets := fs.String("target", "", "external mode: comma-separated OTLP addresses (host:port) of running samplers")
	admins := fs.String("target-admin", "", "external mode: comma-separated admin addresses of those samplers, for their CPU, RSS and buffer figures")
	fs.StringVar(&sc.SinkListen, "sink-listen", "127.0.0.1:4417", "external mode: where the sink listens for the samplers' forwards (OTLP/gRPC)")
	fs.DurationVar(&sc.Drain, "drain", sc.Drain, "after sending, wait at most this long for the samplers to decide and export everything")
	fs.DurationVar(&sc.Quiet, "quiet", sc.Quiet, "external mode without --target-admin: stop waiting once the sink has had nothing for this long")
	fs.Var(&sc.UntilBuffered, "until-buffered", "stop sending once the samplers buffer this `size` (memory + spilled; external mode needs --target-admin);\n"+
		"the rest of the schedule is not sent and its traces are left out of the report. Default: send it all")

	sweep := fs.Bool("sweep", false, "raise the rate step by step; report the highest rate sustained")
	fs.Float64Var(&sw.Start, "sweep-start", sw.Start, "first sweep rate, spans/s")
	fs.Float64Var(&sw.Factor, "sweep-factor", sw.Factor, "rate multiplier between steps")
	fs.IntVar(&sw.MaxSteps, "sweep-steps", sw.MaxSteps, "most steps")
	fs.DurationVar(&sw.MaxP99, "sweep-max-p99", sw.MaxP99, "a step fails when ingest p99 exceeds this")

	asJSON := fs.Bool("json", false, "print the report as JSON")
	plotPath := fs.String("plot", "", "write throughput, ingest p99 and memory over time to this PNG")
	noProgress := fs.Bool("no-progress", false, "do not print progress to stderr")
	capturePath := fs.String("capture", "", "write the generated load (OTLP protobuf) to this file and exit, for \"sampler policy test\"")
	fs.StringVar(&sc.CPUProfile, "cpuprofile", "", "in-process: write the run's CPU profile here (go tool pprof -tagfocus component=engine ...)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sampler bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *targets != "" {
		sc.Targets = strings.Split(*targets, ",")
	}
	if *admins != "" {
		sc.TargetAdmins = strings.Split(*admins, ",")
	}
	if !*noProgress {
		sc.Progress = func(p bench.Progress) { bench.WriteProgress(stderr, p) }
	}
	sw.StepDuration = sc.Duration
	if err := sc.Validate(); err != nil {
		fmt.Fprintf(stderr, "sampler bench: %v\n", err)
		return 2
	}
	if *capturePath != "" {
		n, err := bench.WriteCapture(sc, *capturePath)
		if err != nil {
			fmt.Fprintf(stderr, "sampler bench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "wrote %d spans to %s\n", n, *capturePath)
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *sweep {
		res, err := bench.Sweep(ctx, sc, sw, func(s bench.Step) {
			if !*noProgress {
				bench.WriteStep(stderr, s)
			}
		})
		if err != nil {
			fmt.Fprintf(stderr, "sampler bench: %v\n", err)
			return 1
		}
		if *asJSON {
			return writeJSON(stdout, stderr, res)
		}
		res.WriteText(stdout)
		if *plotPath != "" && res.Best != nil {
			if err := bench.WritePlot(res.Best.Result, *plotPath); err != nil {
				fmt.Fprintf(stderr, "sampler bench: plot: %v\n", err)
				return 1
			}
		}
		return 0
	}
	res, err := bench.Run(ctx, sc)
	if err != nil {
		fmt.Fprintf(stderr, "sampler bench: %v\n", err)
		return 1
	}
	if *plotPath != "" {
		if err := bench.WritePlot(res, *plotPath); err != nil {
			fmt.Fprintf(stderr, "sampler bench: plot: %v\n", err)
			return 1
		}
	}
	if *asJSON {
		return writeJSON(stdout, stderr, res)
	}
	res.WriteText(stdout)
	if res.Sink.Completeness() < 1 {
		return 3 // traces were lost: say so in the exit code too
	}
	return 0
}

func writeJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "sampler bench: %v\n", err)
		return 1
	}
	return 0
}
