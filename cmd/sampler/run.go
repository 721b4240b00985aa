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

	"github.com/tailsift/tailsift/internal/bytesize"
	"github.com/tailsift/tailsift/internal/redact"
	"github.com/tailsift/tailsift/node"
)

// runNode implements "sampler run": flags override --config, which
// overrides the defaults.
func runNode(args []string, stdout, stderr io.Writer) int {
	cfg, shutdownTimeout, ok := runConfig(args, stderr)
	if !ok {
		return 2
	}
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
	log.Info("shutting down: deciding buffered traces and flushing exports", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
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

// runConfig reads the configuration of "sampler run" from args: the
// defaults, then the --config file's keys, then the flags given. ok false
// means it printed why (or the help) to stderr.
func runConfig(args []string, stderr io.Writer) (cfg node.Config, shutdownTimeout time.Duration, ok bool) {
	cfg = node.DefaultConfig()
	fs := flag.NewFlagSet("sampler run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "sampler.yaml `file`; flags override its keys")
	fs.DurationVar(&shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long to finish deciding and exporting before exiting")
	// Flags write into a separate Config so that only those given override
	// the file: fs.Visit below copies them.
	settings := node.Settings()
	f := cfg
	for _, s := range settings {
		bindFlag(fs, s, &f, s.Help())
	}
	fs.Usage = func() { runUsage(fs, settings) }
	if err := fs.Parse(args); err != nil {
		return cfg, 0, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sampler run: unexpected arguments %q\n", fs.Args())
		return cfg, 0, false
	}
	if *configPath != "" {
		if err := cfg.LoadFile(*configPath); err != nil {
			fmt.Fprintf(stderr, "sampler run: %v\n", redact.Text(err.Error()))
			return cfg, 0, false
		}
	}
	given := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	for _, s := range settings {
		if given[s.Flag] {
			s.Copy(&cfg, &f)
		}
	}
	return cfg, shutdownTimeout, true
}

// bindFlag defines the flag of setting s on fs, writing into c's field,
// with c's value as the default. Each kind of setting parses as the flag
// package's flag of its type does; a list takes comma-separated values.
func bindFlag(fs *flag.FlagSet, s node.Setting, c *node.Config, usage string) {
	switch p := s.Field(c).(type) {
	case *string:
		fs.StringVar(p, s.Flag, *p, usage)
	case *time.Duration:
		fs.DurationVar(p, s.Flag, *p, usage)
	case *bool:
		fs.BoolVar(p, s.Flag, *p, usage)
	case *int:
		fs.IntVar(p, s.Flag, *p, usage)
	case *bytesize.Size:
		fs.Var(p, s.Flag, usage)
	case *[]string:
		fs.Func(s.Flag, usage, func(v string) error {
			*p = nil // the last --flag wins, as for the others
			for _, e := range strings.Split(v, ",") {
				if e = strings.TrimSpace(e); e != "" {
					*p = append(*p, e)
				}
			}
			return nil
		})
	default:
		panic(fmt.Sprintf("BUG: setting %s has a field of type %T, which no flag parses", s.Key, p))
	}
}

// lookupSetting returns the setting of key; a key the table lacks is a
// bug of the caller.
func lookupSetting(key string) node.Setting {
	for _, s := range node.Settings() {
		if s.Key == key {
			return s
		}
	}
	panic("BUG: node.Settings has no setting " + key)
}

// runUsage prints "sampler run -h": --config, the settings in the table's
// order, then --shutdown-timeout, laid out as flag.PrintDefaults lays out
// flags (the deploy test reads the "  -name type" lines).
func runUsage(fs *flag.FlagSet, settings []node.Setting) {
	w := fs.Output()
	// The first line is flag's own: the deploy test looks for it.
	fmt.Fprint(w, `Usage of sampler run:

Runs a sampler node. Every flag but --config and --shutdown-timeout is also a
key of sampler.yaml, with underscores for dashes (--memory-limit is
memory_limit); flags override the file, the file overrides the defaults.
Sizes take units: 16MiB, 2GiB, 500MB.

`)
	printFlag := func(name, arg, usage, def string) {
		fmt.Fprintf(w, "  -%s", name)
		if arg != "" {
			fmt.Fprintf(w, " %s", arg)
		}
		if def != "" {
			usage += " (default " + def + ")"
		}
		for _, line := range wrap(usage, 72) {
			fmt.Fprintf(w, "\n    \t%s", line)
		}
		fmt.Fprintln(w)
	}
	flagOnly := func(name string) {
		fl := fs.Lookup(name)
		arg, usage := flag.UnquoteUsage(fl)
		printFlag(name, arg, usage, fl.DefValue)
	}
	flagOnly("config")
	for _, s := range settings {
		printFlag(s.Flag, s.Arg, s.Help(), s.Default())
	}
	flagOnly("shutdown-timeout")
}

// wrap breaks text into lines of at most width bytes, at spaces (a longer
// word gets a line of its own).
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	return append(lines, line)
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
