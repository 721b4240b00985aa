package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tailsift/tailsift/internal/top"
)

// runTop implements "sampler top": a live view over nodes' admin endpoints.
func runTop(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sampler top", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: sampler top [flags]

Shows, refreshing like top, what sampler nodes do: spans/s in (by protocol)
and out, keep share, decisions per rule per second, buffer memory against its
limit and on disk, late spans, cluster members and overload state, per node
and in total. It reads each node's admin /metrics. Rates come from two
successive scrapes: the first frame shows totals and "-" for rates, and so
does --once. A node that cannot be scraped shows as a row with its error.
With --once the exit status is 1 if any node could not be scraped.

`)
		fs.PrintDefaults()
	}
	admin := fs.String("admin", "127.0.0.1:8888", "admin addresses of the nodes, comma-separated `host:port[,host:port...]`")
	interval := fs.Duration("interval", 2*time.Second, "time between frames")
	once := fs.Bool("once", false, "print one frame and exit (for scripts)")
	timeout := fs.Duration("timeout", 0, "per-scrape timeout (default: the interval, at most 5s)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sampler top: unexpected arguments %q\n", fs.Args())
		return 2
	}
	var addrs []string
	for a := range strings.SplitSeq(*admin, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		fmt.Fprintln(stderr, "sampler top: --admin names no node")
		return 2
	}
	if *interval <= 0 {
		fmt.Fprintf(stderr, "sampler top: --interval must be > 0, got %s\n", *interval)
		return 2
	}
	if *timeout <= 0 {
		*timeout = min(*interval, 5*time.Second)
	}
	hc := &http.Client{Timeout: *timeout}
	width := 0
	if c, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && c > 0 {
		width = c
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *once {
		cur := top.ScrapeAll(ctx, hc, addrs)
		if err := top.Render(stdout, nil, cur, 0, width); err != nil {
			fmt.Fprintf(stderr, "sampler top: %v\n", err)
			return 1
		}
		for _, s := range cur {
			if s.Err != nil {
				return 1
			}
		}
		return 0
	}

	clear := isTerminal(stdout)
	var prev []top.NodeSnapshot
	var prevAt time.Time
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		cur := top.ScrapeAll(ctx, hc, addrs)
		if ctx.Err() != nil {
			return 0
		}
		now := time.Now()
		var elapsed time.Duration
		if !prevAt.IsZero() {
			elapsed = now.Sub(prevAt)
		}
		if clear {
			io.WriteString(stdout, "\x1b[H\x1b[2J")
		} else if prev != nil {
			io.WriteString(stdout, "\n")
		}
		if err := top.Render(stdout, prev, cur, elapsed, width); err != nil {
			fmt.Fprintf(stderr, "sampler top: %v\n", err)
			return 1
		}
		prev, prevAt = cur, now
		select {
		case <-ctx.Done():
			return 0
		case <-tick.C:
		}
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
