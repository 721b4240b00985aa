package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tailsift/tailsift/bench/workload"
)

// WriteProgress prints one progress line.
func WriteProgress(w io.Writer, p Progress) {
	offered := si(p.Offered)
	if p.MaxRate {
		offered = "max"
	}
	fmt.Fprintf(w, "t=%3.0fs  offered %s/s  accepted %s/s  kept %s/s  buffered %s spans  refused %d  retries %d\n",
		p.Elapsed.Seconds(), offered, si(p.Accepted), si(p.Kept), si(float64(p.BufferedSpans)), p.SpansRefused, p.Retries)
}

// WriteStep prints one sweep step's verdict.
func WriteStep(w io.Writer, s Step) {
	verdict := "PASS"
	if !s.Passed {
		verdict = "FAIL: " + s.Why
	}
	r := s.Result
	fmt.Fprintf(w, "step %s spans/s: achieved %s/s, completeness %.2f%%, ingest p99 %v: %s\n",
		si(s.Rate), si(r.AchievedRate), 100*r.Sink.Completeness(), r.Ingest.P99, verdict)
}

// WriteText prints the report of a run.
func (r *Result) WriteText(w io.Writer) {
	offered := "max rate"
	if r.OfferedRate > 0 {
		offered = si(r.OfferedRate) + " spans/s offered"
	}
	fmt.Fprintf(w, "Tailsift bench: %s, %d node(s), OTLP/%s, %d connections, %v at %s\n",
		r.Mode, r.Nodes, r.Protocol, r.Connections, r.Duration, offered)
	wl := r.Workload
	fmt.Fprintf(w, "workload: %d services, mean %d spans/trace (%.1f%% with %d-%d), %.0f%% error traces, %.0f%% at least %v, seed %d\n\n",
		wl.Services, wl.MeanSpans, 100*wl.LargeShare, wl.LargeMin, wl.LargeMax, 100*wl.ErrorShare, 100*wl.TailShare, wl.TailMin, wl.Seed)
	for _, ev := range r.Events {
		fmt.Fprintf(w, "event at %s\n", ev)
	}
	if len(r.Events) > 0 {
		fmt.Fprintln(w)
	}

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	s := r.Sink
	window := "over the whole send (max rate)"
	if r.WindowOffered > 0 {
		window = fmt.Sprintf("of %s spans/s offered in the steady window", si(r.WindowOffered))
	}
	fmt.Fprintf(tw, "throughput\tachieved %s spans/s\t%s; %s spans in %s requests in all, over %v (%.0f wire bytes/span)\n",
		si(r.AchievedRate), window, si(float64(r.SpansSent)), si(float64(r.Requests)), r.SendTime.Round(time.Millisecond), r.WireBytesSpan)
	fmt.Fprintf(tw, "completeness\t%.2f%% of kept traces\tcomplete %d, fragmented %d, duplicated %d, unexpected %d (+%d spans)\n",
		100*s.Completeness(), s.Complete, s.Fragmented, s.Duplicated, s.Unexpected, s.UnexpectedSpans)
	if r.SpansRefused > 0 || s.Undelivered > 0 || r.Retries > 0 {
		fmt.Fprintf(tw, "refused\t%d spans after retries\t%d traces undelivered (excluded above), %d retries\n",
			r.SpansRefused, s.Undelivered, r.Retries)
	}
	if r.UntilBuffered > 0 {
		if r.UntilReached > 0 {
			fmt.Fprintf(tw, "until buffered\t%s reached at %v\tthe send stopped there: %d scheduled spans not sent, their traces undelivered\n",
				bytesText(uint64(r.UntilBuffered)), r.UntilReached.Round(time.Millisecond), r.SpansUnsent)
		} else {
			fmt.Fprintf(tw, "until buffered\t%s NOT reached\tthe whole schedule was sent first\n", bytesText(uint64(r.UntilBuffered)))
		}
	}
	var shares []string
	for c := workload.Class(0); c < workload.NumClasses; c++ {
		cl := s.Classes[c]
		shares = append(shares, fmt.Sprintf("%s %.1f%% (%d/%d)", c, 100*cl.KeepShare, cl.Kept, cl.Sent))
	}
	fmt.Fprintf(tw, "keep share\t%s\t\n", strings.Join(shares, ", "))
	if len(r.Missed) > 0 {
		un := len(r.Unexplained())
		fmt.Fprintf(tw, "missed\t%d error/slow traces explained\t%d decided before they showed an error or %v (late spans counted); %d otherwise\n",
			len(r.Missed), len(r.Missed)-un, s.SlowThreshold, un)
	}
	fmt.Fprintf(tw, "ingest latency\tp50 %v  p99 %v  p99.9 %v  max %v\tOTLP export RPC as the client saw it\n",
		r.Ingest.P50, r.Ingest.P99, r.Ingest.P999, r.Ingest.Max)
	if r.MaxLag > 100*time.Millisecond {
		fmt.Fprintf(tw, "behind schedule\tup to %v\tthe generator could not send on time\n", r.MaxLag.Round(time.Millisecond))
	}
	waits := ""
	if r.Mode == "in-process" {
		waits = fmt.Sprintf("root_wait %v, decision_wait %v", r.RootWait, r.Decision)
	}
	fmt.Fprintf(tw, "end-to-end delay\tp50 %v  p99 %v  max %v\ttrace end to arrival at the sink; %s\n",
		s.Delay.P50.Round(time.Millisecond), s.Delay.P99.Round(time.Millisecond), s.Delay.Max.Round(time.Millisecond), waits)
	if e := r.Engine; e != nil && e.External {
		fmt.Fprintf(tw, "engine CPU\t%.2f s\t%s spans/s per core of engine CPU (process_cpu_seconds_total of the targets)\n",
			e.CPU.Engine.Seconds(), si(e.SpansPerCore))
		fmt.Fprintf(tw, "memory\tpeak %s spans buffered\tper buffered span: %.0f B accounted, %.0f B RSS growth; peak RSS %s; wire %.0f B\n",
			si(float64(e.PeakBufferedSpans)), e.AccountedPerSpan, e.RSSPerSpan, bytesText(e.PeakRSS), r.WireBytesSpan)
		ok := "adds up"
		if !e.AccountingOK {
			ok = "DOES NOT ADD UP"
		}
		fmt.Fprintf(tw, "accounting\t%s\tthe targets accepted %d spans, the generator sent %d\n", ok, e.Stats.Accepted, r.SpansSent)
	} else if e := r.Engine; e != nil {
		total := e.CPU.Engine + e.CPU.Generator + e.CPU.Sink + e.CPU.Unattributed
		fmt.Fprintf(tw, "engine CPU\t%.2f s (%.2f s + %.2f s runtime/GC)\t%s spans/s per core of engine CPU; generator %.2f s, sink %.2f s, of %.2f s in all\n",
			e.CPU.EngineUpperBound().Seconds(), e.CPU.Engine.Seconds(), e.CPU.Unattributed.Seconds(), si(e.SpansPerCore),
			e.CPU.Generator.Seconds(), e.CPU.Sink.Seconds(), total.Seconds())
		fmt.Fprintf(tw, "memory\tpeak %s spans buffered\tper buffered span (at %s): %.0f B accounted, %.0f B live heap, %.0f B RSS; wire %.0f B\n",
			si(float64(e.PeakBufferedSpans)), si(float64(e.ProbeBufferedSpans)), e.AccountedPerSpan, e.HeapPerSpan, e.RSSPerSpan, r.WireBytesSpan)
		if e.ProbeBufferedTraces > 0 {
			fmt.Fprintf(tw, "\tper buffered trace (at %s)\t%.0f B accounted, %.0f B live heap, %.0f B RSS; RSS growth: anon %s, file-backed %s\n",
				si(float64(e.ProbeBufferedTraces)), e.AccountedPerTrace, e.HeapPerTrace, e.RSSPerTrace,
				signedBytesText(e.RSSAnonGrowth), signedBytesText(e.RSSFileGrowth))
		}
		fmt.Fprintf(tw, "process\tpeak RSS %s\tincludes the pre-encoded load (%s) and the sink\n", bytesText(e.PeakRSS), bytesText(uint64(e.PreEncodedBytes)))
		if d := e.Store; d != nil {
			fsNote := ""
			switch d.FSType {
			case "":
			case "tmpfs", "ramfs":
				fsNote = " (" + d.FSType + ": the disk is RAM, fsyncs cost nothing)"
			default:
				fsNote = " (" + d.FSType + ")"
			}
			fmt.Fprintf(tw, "data dir\t%s%s\tdurability %s; peak %s on disk of %s per node (tailsift_store_disk_bytes)\n",
				d.Dir, fsNote, d.Durability, bytesText(uint64(d.PeakDiskBytes)), bytesText(uint64(d.DiskLimit)))
			fmt.Fprintf(tw, "spill\t%s out, %s in\tpeak %s of span bytes on disk (tailsift_buffer_spilled_bytes), %s at the probe; %d failures\n",
				bytesText(uint64(d.SpillOut)), bytesText(uint64(d.SpillIn)), bytesText(uint64(d.PeakSpilled)),
				bytesText(uint64(d.ProbeSpilled)), d.SpillFailures)
			perSync := 0.0
			if d.WALSyncs > 0 {
				perSync = float64(d.WALCommits) / float64(d.WALSyncs)
			}
			fmt.Fprintf(tw, "wal\t%s commits (%s) in %s fsyncs\t%.1f commits per fsync; %s store commits; %d failures, %d writes refused for a full disk\n",
				si(float64(d.WALCommits)), bytesText(uint64(d.WALBytes)), si(float64(d.WALSyncs)), perSync,
				si(float64(d.StoreCommits)), d.WALFailures, d.RefusedFull)
		}
		st := e.Stats
		ok := "adds up"
		if !e.AccountingOK {
			ok = "DOES NOT ADD UP"
		}
		fmt.Fprintf(tw, "accounting\t%s\taccepted %d = sent %d + export failed %d + dropped %d + late dropped %d + buffered %d + pending %d",
			ok, st.Accepted, st.Sent, st.ExportFailed, st.DroppedPolicy, st.DroppedLate, st.Buffered, st.ExportPending)
		if r.Nodes > 1 {
			fmt.Fprintf(tw, " + forwarded %d + queued %d + handed off %d + cluster dropped %d; from clients %d",
				st.Forwarded, st.ForwardQueued, st.HandedOff+st.HandoffPending, st.ClusterDropped, st.ClientAccepted)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if s.Completeness() < 1 {
		fmt.Fprintf(w, "\nTRACES WERE LOST: %d kept traces arrived incomplete or duplicated.\n", s.Fragmented+s.Duplicated)
	}
}

// WriteText prints a sweep's steps and its verdict.
func (s *SweepResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "Tailsift bench sweep: %v per step, from %s spans/s, x%.2f per step; a step passes with every kept trace complete,\n",
		s.Config.StepDuration, si(s.Config.Start), s.Config.Factor)
	fmt.Fprintf(w, "nothing refused, >= %.0f%% of the offered rate achieved and ingest p99 <= %v.\n\n", 100*s.Config.MinAchieved, s.Config.MaxP99)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "offered/s\tachieved/s\tcomplete\tingest p99\tengine CPU\tspans/s/core\tB/span (RSS)\t verdict")
	for _, st := range s.Steps {
		r := st.Result
		cpu, perCore, rss := "-", "-", "-"
		if e := r.Engine; e != nil {
			cpu = fmt.Sprintf("%.2f s", e.CPU.EngineUpperBound().Seconds())
			perCore = si(e.SpansPerCore)
			rss = fmt.Sprintf("%.0f", e.RSSPerSpan)
		}
		verdict := " pass"
		if !st.Passed {
			verdict = " FAIL: " + st.Why
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f%%\t%v\t%s\t%s\t%s\t%s\n", si(st.Rate), si(r.AchievedRate), 100*r.Sink.Completeness(),
			r.Ingest.P99, cpu, perCore, rss, verdict)
	}
	tw.Flush()
	if s.Best == nil {
		fmt.Fprintln(w, "\nNo step passed.")
		return
	}
	fmt.Fprintf(w, "\nHighest sustained rate: %s spans/s offered (%s achieved).\n", si(s.Best.Rate), si(s.Best.Result.AchievedRate))
}

// si prints a number with a k/M suffix.
func si(v float64) string {
	switch {
	case v >= 10e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 10e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.2fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// signedBytesText is bytesText of a growth that may be negative.
func signedBytesText(b int64) string {
	if b < 0 {
		return "-" + bytesText(uint64(-b))
	}
	return "+" + bytesText(uint64(b))
}

func bytesText(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", b>>10)
}
