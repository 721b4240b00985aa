package bench

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"time"

	"github.com/tailsift/tailsift/bench/sink"
	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/node"
)

// Result is everything a run measured. Durations are nanoseconds in JSON.
type Result struct {
	Mode        string          `json:"mode"` // in-process | external
	Nodes       int             `json:"nodes"`
	Protocol    string          `json:"protocol"`
	Connections int             `json:"connections"`
	Duration    time.Duration   `json:"duration_ns"`
	OfferedRate float64         `json:"offered_spans_per_s"` // 0: max rate
	Workload    workload.Config `json:"workload"`
	RootWait    time.Duration   `json:"root_wait_ns,omitempty"`
	Decision    time.Duration   `json:"decision_wait_ns,omitempty"`
	Events      []string        `json:"events,omitempty"` // cluster events of the run, with their times

	SpansScheduled int   `json:"spans_scheduled"`
	TracesSent     int   `json:"traces_scheduled"`
	SpansSent      int64 `json:"spans_sent"`    // accepted by the engine
	SpansRefused   int64 `json:"spans_refused"` // in requests refused after retries
	// With Scenario.UntilBuffered: the bytes asked for, when the nodes
	// buffered them (since the start; 0: never, the whole schedule was
	// sent), and the scheduled spans not sent because of it.
	UntilBuffered int64         `json:"until_buffered_bytes,omitempty"`
	UntilReached  time.Duration `json:"until_reached_ns,omitempty"`
	SpansUnsent   int64         `json:"spans_unsent,omitempty"`
	Retries       int64         `json:"retries"`
	Requests      int64         `json:"requests"`
	SendTime      time.Duration `json:"send_time_ns"` // first request to last answer
	// The rates are compared over the steady window: from the first
	// second (traces emit spans only as they end) to the end of Duration
	// (after it only the tails of traces started before remain).
	WindowOffered float64       `json:"window_offered_spans_per_s"`
	AchievedRate  float64       `json:"achieved_spans_per_s"`
	MaxLag        time.Duration `json:"max_lag_ns"` // worst send behind its schedule
	WireBytesSpan float64       `json:"wire_bytes_per_span"`

	Ingest Percentiles `json:"ingest_latency"` // OTLP export RPC, as the client saw it
	Sink   sink.Report `json:"sink"`
	// Missed holds, for each error and slow trace the sink names as not
	// kept whole, what the engine says of it.
	Missed []MissedTrace `json:"missed,omitempty"`

	Engine *EngineFigures `json:"engine,omitempty"` // in-process only

	Samples      []Sample        `json:"samples"`
	IngestP99ByS []time.Duration `json:"ingest_p99_by_second_ns"`
}

// Percentiles of a latency distribution.
type Percentiles struct {
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
}

// EngineFigures are the resources of the sampler nodes of an in-process run.
type EngineFigures struct {
	External           bool       `json:"external,omitempty"` // read from the samplers' /metrics
	CPU                CPU        `json:"cpu"`
	SpansPerCore       float64    `json:"spans_per_s_per_core"` // spans accepted per second of engine CPU (upper bound incl. GC)
	PeakBufferedSpans  int64      `json:"peak_buffered_spans"`
	ProbeBufferedSpans int64      `json:"probe_buffered_spans"` // when memory per span was measured
	AccountedPerSpan   float64    `json:"accounted_bytes_per_buffered_span"`
	HeapPerSpan        float64    `json:"heap_bytes_per_buffered_span"` // live-heap growth over the baseline, at the probe
	RSSPerSpan         float64    `json:"rss_bytes_per_buffered_span"`
	PeakRSS            uint64     `json:"process_peak_rss_bytes"`
	PreEncodedBytes    int        `json:"pre_encoded_load_bytes"`
	Stats              node.Stats `json:"stats"`
	AccountingOK       bool       `json:"accounting_ok"`

	// Memory per buffered trace, at the same probe as per span (growth
	// over the baseline divided by the traces buffered then), and the
	// RSS growth split as /proc/self/status splits it: RssAnon (heap,
	// stacks, Badger's memtables) and RssFile (mapped files: Badger's
	// value log and tables).
	ProbeBufferedTraces int64   `json:"probe_buffered_traces"`
	AccountedPerTrace   float64 `json:"accounted_bytes_per_buffered_trace"`
	HeapPerTrace        float64 `json:"heap_bytes_per_buffered_trace"`
	RSSPerTrace         float64 `json:"rss_bytes_per_buffered_trace"`
	RSSAnonGrowth       int64   `json:"rss_anon_growth_bytes"`
	RSSFileGrowth       int64   `json:"rss_file_growth_bytes"`

	Store *StoreFigures `json:"store,omitempty"` // with a data directory (--data-dir)
}

// StoreFigures are the data directories' figures of an in-process run,
// summed over the nodes, read from their metrics registries (the names
// are those of the sampler's /metrics).
type StoreFigures struct {
	Dir        string `json:"dir"`               // the nodes' directories are Dir/node-N
	FSType     string `json:"fs_type,omitempty"` // of Dir, from /proc/self/mountinfo
	Durability string `json:"durability"`

	SpillOut      int64 `json:"spill_out_bytes"`     // tailsift_buffer_spill_bytes_total{direction="out"}
	SpillIn       int64 `json:"spill_in_bytes"`      // {direction="in"}: read back when decided
	SpillFailures int64 `json:"spill_failures"`      // tailsift_buffer_spill_failures_total
	PeakSpilled   int64 `json:"peak_spilled_bytes"`  // tailsift_buffer_spilled_bytes, highest sample
	ProbeSpilled  int64 `json:"probe_spilled_bytes"` // at the memory probe
	WALCommits    int64 `json:"wal_commits"`         // tailsift_buffer_wal_commits_total: one per accepted request
	WALBytes      int64 `json:"wal_bytes"`           // tailsift_buffer_wal_bytes_total
	WALFailures   int64 `json:"wal_failures"`        // tailsift_buffer_wal_failures_total
	StoreCommits  int64 `json:"store_commits"`       // tailsift_store_commits_total: group commits
	WALSyncs      int64 `json:"wal_syncs"`           // tailsift_wal_syncs_total: fsyncs of the log
	RefusedFull   int64 `json:"store_refused_full"`  // tailsift_store_refused_total
	PeakDiskBytes int64 `json:"peak_disk_bytes"`     // tailsift_store_disk_bytes, highest sample
	DiskLimit     int64 `json:"disk_limit_bytes"`    // per node
}

// Run runs one scenario and returns what it measured.
func Run(ctx context.Context, sc Scenario) (*Result, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	external := len(sc.Targets) > 0
	res := &Result{Mode: "in-process", Nodes: sc.Nodes, Protocol: sc.Protocol, Connections: sc.Workload.Connections,
		Duration: sc.Duration, OfferedRate: sc.Rate, Workload: sc.Workload, UntilBuffered: int64(sc.UntilBuffered)}
	if external {
		res.Mode, res.Nodes = "external", len(sc.Targets)
	} else {
		res.RootWait, res.Decision = sc.Node.RootWait, sc.Node.DecisionWait
	}

	// Untimed: sink, nodes, and the whole load encoded up front.
	var snk *sink.Sink
	var err error
	withComponent(componentSink, func() {
		cfg := sink.Config{GRPCAddr: "127.0.0.1:0"}
		if external {
			cfg.GRPCAddr = sc.SinkListen
		}
		snk, err = sink.Start(cfg)
	})
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	defer snk.Shutdown(context.Background())

	var nodes []*node.Node
	targets := sc.Targets
	var dirs *dataDirs
	if !external && sc.DataDir != "" {
		if dirs, err = newDataDirs(sc.DataDir); err != nil {
			return nil, err
		}
		defer dirs.remove() // after the nodes' shutdowns, deferred below
	}
	var runTLS *runTLS
	if sc.TLS {
		if runTLS, err = newRunTLS(); err != nil {
			return nil, err
		}
		defer runTLS.remove() // after the nodes' shutdowns, deferred below
	}
	if !external {
		for i := range sc.Nodes {
			cfg := sc.Node
			if cfg.DataDir, err = dirs.node(i); err != nil {
				return nil, err
			}
			cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind = "127.0.0.1:0", "127.0.0.1:0", "", ""
			cfg.Forward = snk.GRPCAddr().String()
			if sc.Nodes > 1 { // a cluster on loopback, joined through the first node
				cfg.ClusterBind, cfg.PeerListen, cfg.NodeName = "127.0.0.1:0", "127.0.0.1:0", fmt.Sprintf("bench-%d", i)
				if i > 0 {
					cfg.Join = []string{nodes[0].Cluster().GossipAddr()}
				}
			}
			if runTLS != nil {
				runTLS.configure(&cfg, sc.Nodes > 1)
			}
			var n *node.Node
			withComponent(componentEngine, func() { n, err = node.New(cfg, node.Options{}) })
			if err != nil {
				return nil, fmt.Errorf("sampler node: %w", err)
			}
			defer n.Shutdown(context.Background())
			nodes = append(nodes, n)
			addr := n.GRPCAddr()
			if sc.Protocol == "http" {
				addr = n.HTTPAddr()
			}
			targets = append(targets, addr.String())
		}
		if err := waitForMembers(ctx, nodes, 30*time.Second); err != nil {
			return nil, err
		}
	}

	rate := sc.Rate
	if rate == 0 {
		rate = sc.MaxRateBudget
	}
	// The load lives outside the Go heap (see offHeap); it is unmapped
	// after the sender's connections are closed (defers run in reverse).
	mem := &offHeap{}
	defer mem.release()
	wl := sc.Workload
	wl.BodyMemory = mem.alloc
	sched, err := workload.Build(wl, time.Now(), rate, sc.Duration)
	if err != nil {
		return nil, err
	}
	res.SpansScheduled, res.TracesSent = sched.Spans, len(sched.Manifest.Traces)
	res.WireBytesSpan = float64(sched.Bytes) / float64(max(1, sched.Spans))

	var snd *sender
	var clientTLS *tls.Config
	if runTLS != nil {
		clientTLS = runTLS.client
	}
	withComponent(componentGenerator, func() {
		snd, err = newSender(sched, targets, sc.Protocol, sc.Workload.Connections, clientTLS)
	})
	if err != nil {
		return nil, err
	}
	defer snd.close()
	snd.maxRate = sc.Rate == 0

	// A collection now makes the baseline's live heap exclude the garbage
	// of building the schedule, so growth per buffered span is honest.
	runtime.GC()
	baseAnon, baseFile := procStatusBytes("RssAnon:"), procStatusBytes("RssFile:")

	// Timed phase.
	var prof *cpuProfile
	if !external {
		if prof, err = startCPUProfile(); err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
	}
	var adm *admins
	var admBase nodeMetrics
	if len(sc.TargetAdmins) > 0 {
		adm = newAdmins(sc.TargetAdmins)
		if admBase, err = adm.total(ctx); err != nil {
			return nil, err
		}
	}
	var victim *node.Node
	if sc.KillAt > 0 {
		victim = nodes[len(nodes)-1]
		snd.markDown(victim.GRPCAddr().String())
		snd.markDown(victim.HTTPAddr().String())
	}
	start := time.Now()
	snk.Expect(sched.Manifest, start)
	// Peaks of the data directories' gauges, and when UntilBuffered was
	// reached, written by the sampler goroutine only, read after it has
	// finished.
	var peakSpilled, peakDisk int64
	var untilReached time.Duration
	smp := startSampler(start, 250*time.Millisecond, func(s *Sample) {
		s.SpansSent = snd.stats.spansSent.Load()
		s.SpansKept = snk.Progress().Spans
		for _, n := range nodes {
			st := n.Stats()
			s.BufferedSpans += st.Buffered
			s.BufferBytes += st.BufferBytes
		}
		if dirs != nil {
			m := gatherNodes(nodes)
			s.SpilledBytes = int64(m["tailsift_buffer_spilled_bytes"])
			peakSpilled = max(peakSpilled, s.SpilledBytes)
			peakDisk = max(peakDisk, int64(m["tailsift_store_disk_bytes"]))
		}
		s.HeapBytes, s.RSSBytes = liveHeap(), residentBytes()
		if adm != nil { // the engine is elsewhere: its figures, not ours
			if m, err := adm.total(ctx); err == nil {
				s.BufferedSpans, s.BufferBytes, s.HeapBytes, s.RSSBytes = int64(m.BufferedSpans), int64(m.BufferBytes), 0, uint64(m.RSS)
				s.SpilledBytes = int64(m.SpilledBytes)
			}
		}
		if sc.UntilBuffered > 0 && untilReached == 0 && s.BufferBytes+s.SpilledBytes >= int64(sc.UntilBuffered) {
			untilReached = max(s.At, 1)
			snd.cut()
		}
	})
	stopProgress := reportProgress(ctx, sc, sched, snd, smp, start)
	sent := make(chan struct{})
	probe := probeMemory(start, sc.Duration-sc.Duration/10, sent, nodes)
	evDone := make(chan []*node.Node, 1)
	go func() { evDone <- runEvents(ctx, sc, start, nodes, dirs, snd, snk, sched.Manifest, res) }()
	withComponent(componentGenerator, func() { snd.run(ctx, start) })
	close(sent)
	joined := <-evDone
	for _, n := range joined {
		defer n.Shutdown(context.Background())
	}
	// A new slice: the sampler goroutine still reads nodes.
	all := append(slices.Clone(nodes), joined...)
	live := slices.DeleteFunc(slices.Clone(all), func(n *node.Node) bool { return n == victim })
	drain(ctx, sc, live, adm, snk)
	stopProgress()
	samples := smp.finish()
	res.UntilReached = untilReached
	var cpu CPU
	if prof != nil {
		if cpu, err = prof.stop(sc.CPUProfile); err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// Figures.
	st := snd.stats
	res.SpansSent, res.SpansRefused, res.Retries = st.spansSent.Load(), st.spansRefused.Load(), st.retries.Load()
	res.SpansUnsent = st.spansUnsent.Load()
	res.Requests = st.requestsSent.Load()
	res.SendTime = time.Duration(st.lastSendFinish.Load() - st.firstSend.Load())
	res.WindowOffered, res.AchievedRate = windowRates(sched, samples, sc)
	res.MaxLag = time.Duration(st.maxLagNanos.Load())
	res.Ingest = percentiles(snd.lat)
	for _, h := range snd.lat.perSecond {
		res.IngestP99ByS = append(res.IngestP99ByS, time.Duration(h.ValueAtQuantile(99))*time.Microsecond)
	}
	res.Sink = snk.Report(sc.Slow)
	explainMissed(ctx, res, live, adm)
	res.Samples = samples
	if !external {
		pr := probe()
		res.Engine = engineFigures(cpu, all, samples, res, sched.Bytes, pr, baseAnon, baseFile)
		if dirs != nil {
			res.Engine.Store = storeFigures(sc, dirs, all, peakSpilled, peakDisk)
			res.Engine.Store.ProbeSpilled = pr.spilled
		}
	} else if adm != nil {
		end, err := adm.total(ctx)
		if err != nil {
			return nil, err
		}
		res.Engine = externalFigures(admBase, end, samples, res)
	}
	return res, nil
}

// externalFigures are the engine figures read from external samplers'
// /metrics: CPU seconds and RSS of their processes, buffered spans. There
// is no live-heap probe; memory per buffered span is RSS growth, at the
// sample with the most spans buffered.
func externalFigures(base, end nodeMetrics, samples []Sample, res *Result) *EngineFigures {
	cpu := time.Duration((end.CPUSeconds - base.CPUSeconds) * float64(time.Second))
	e := &EngineFigures{CPU: CPU{Engine: cpu}, External: true}
	if cpu > 0 {
		e.SpansPerCore = float64(res.SpansSent) / cpu.Seconds()
	}
	var peak Sample
	for _, s := range samples {
		if s.BufferedSpans > peak.BufferedSpans {
			peak = s
		}
		e.PeakRSS = max(e.PeakRSS, s.RSSBytes)
	}
	if n := float64(peak.BufferedSpans); n > 0 {
		e.PeakBufferedSpans, e.ProbeBufferedSpans = peak.BufferedSpans, peak.BufferedSpans
		e.AccountedPerSpan = float64(peak.BufferBytes) / n
		e.RSSPerSpan = (float64(peak.RSSBytes) - base.RSS) / n
	}
	e.Stats.Accepted = int64(end.Accepted - base.Accepted)
	e.AccountingOK = e.Stats.Accepted == res.SpansSent
	return e
}

// probeMemory measures memory per buffered span once, at start+at (near
// the end of the steady window, when buffering has plateaued), or when
// sent is closed if that is earlier (a max-rate run may send its whole
// schedule before then, and the buffer empties after): a forced
// GC, then the live heap, RSS and buffered spans read together. The
// runtime's live-heap figure is only as fresh as the last GC, which at a
// low rate may not have run since the baseline. One collection per run is
// the price; the returned func waits for the probe and returns it.
func probeMemory(start time.Time, at time.Duration, sent <-chan struct{}, nodes []*node.Node) func() memProbe {
	ch := make(chan memProbe, 1)
	if len(nodes) == 0 {
		close(ch)
		return func() memProbe { return memProbe{} }
	}
	go func() {
		select {
		case <-time.After(time.Until(start.Add(at))):
		case <-sent:
		}
		runtime.GC()
		p := memProbe{Sample: Sample{At: time.Since(start), HeapBytes: liveHeap(), RSSBytes: residentBytes()},
			anon: procStatusBytes("RssAnon:"), file: procStatusBytes("RssFile:")}
		for _, n := range nodes {
			st := n.Stats()
			p.BufferedSpans += st.Buffered
			p.BufferBytes += st.BufferBytes
		}
		m := gatherNodes(nodes)
		p.traces, p.spilled = int64(m["tailsift_buffer_traces"]), int64(m["tailsift_buffer_spilled_bytes"])
		ch <- p
	}()
	return func() memProbe { return <-ch }
}

// memProbe is the memory probe's sample, with what only it reads.
type memProbe struct {
	Sample
	traces     int64  // buffered
	spilled    int64  // span bytes on disk
	anon, file uint64 // RssAnon, RssFile
}

// gatherNodes reads the in-process nodes' metrics registries and sums each
// counter and gauge over the nodes, under its name and, for a labelled
// series, also under name{label="value"} for each of its labels.
func gatherNodes(nodes []*node.Node) map[string]float64 {
	m := map[string]float64{}
	for _, n := range nodes {
		mfs, _ := n.Registry().Gather() // on error, what could be gathered
		for _, mf := range mfs {
			for _, x := range mf.GetMetric() {
				var v float64
				switch {
				case x.Counter != nil:
					v = x.GetCounter().GetValue()
				case x.Gauge != nil:
					v = x.GetGauge().GetValue()
				default:
					continue
				}
				m[mf.GetName()] += v
				for _, l := range x.GetLabel() {
					m[fmt.Sprintf("%s{%s=%q}", mf.GetName(), l.GetName(), l.GetValue())] += v
				}
			}
		}
	}
	return m
}

// storeFigures reads the data directories' figures at the end of a run.
func storeFigures(sc Scenario, dirs *dataDirs, nodes []*node.Node, peakSpilled, peakDisk int64) *StoreFigures {
	m := gatherNodes(nodes)
	get := func(name string) int64 { return int64(m[name]) }
	return &StoreFigures{
		Dir: dirs.root, FSType: fsType(dirs.root), Durability: sc.Node.Durability,
		SpillOut:      get(`tailsift_buffer_spill_bytes_total{direction="out"}`),
		SpillIn:       get(`tailsift_buffer_spill_bytes_total{direction="in"}`),
		SpillFailures: get("tailsift_buffer_spill_failures_total"),
		PeakSpilled:   peakSpilled,
		WALCommits:    get("tailsift_buffer_wal_commits_total"),
		WALBytes:      get("tailsift_buffer_wal_bytes_total"),
		WALFailures:   get("tailsift_buffer_wal_failures_total"),
		StoreCommits:  get("tailsift_store_commits_total"),
		WALSyncs:      get("tailsift_wal_syncs_total"),
		RefusedFull:   get("tailsift_store_refused_total"),
		PeakDiskBytes: peakDisk,
		DiskLimit:     int64(sc.Node.DiskLimit),
	}
}

// dataDirs makes and removes the in-process nodes' data directories (see
// Scenario.DataDir).
type dataDirs struct {
	root string
	temp bool     // root is the run's own: remove it all
	made []string // the node directories made
}

func newDataDirs(spec string) (*dataDirs, error) {
	if spec == DataDirTemp {
		root, err := os.MkdirTemp("", "tailsift-bench-")
		if err != nil {
			return nil, fmt.Errorf("--data-dir temp: %w", err)
		}
		return &dataDirs{root: root, temp: true}, nil
	}
	if err := os.MkdirAll(spec, 0o755); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	return &dataDirs{root: spec}, nil
}

// node makes node i's directory; a nil d means no data directory ("").
func (d *dataDirs) node(i int) (string, error) {
	if d == nil {
		return "", nil
	}
	dir := filepath.Join(d.root, fmt.Sprintf("node-%d", i))
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("--data-dir: %s exists (left by an interrupted run?); the bench neither reuses nor deletes it: remove it, or use --data-dir temp", dir)
		}
		return "", fmt.Errorf("--data-dir: %w", err)
	}
	d.made = append(d.made, dir)
	return dir, nil
}

// remove deletes what newDataDirs and node made, DataDir itself excepted.
func (d *dataDirs) remove() {
	if d.temp {
		os.RemoveAll(d.root)
		return
	}
	for _, dir := range d.made {
		os.RemoveAll(dir)
	}
}

// fsType is the type of the file system holding path ("ext4", "tmpfs"),
// from /proc/self/mountinfo; "" where that cannot be read.
func fsType(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	if p, err := filepath.EvalSymlinks(abs); err == nil {
		abs = p
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	best, typ := -1, ""
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options... - type source super
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 {
			continue
		}
		mp := strings.ReplaceAll(f[4], `\040`, " ")
		if rel, err := filepath.Rel(mp, abs); err == nil && !strings.HasPrefix(rel, "..") && len(mp) > best {
			best, typ = len(mp), g[0]
		}
	}
	return typ
}

func percentiles(l *latencies) Percentiles {
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	h := l.total
	return Percentiles{P50: us(h.ValueAtQuantile(50)), P99: us(h.ValueAtQuantile(99)),
		P999: us(h.ValueAtQuantile(99.9)), Max: us(h.Max())}
}

func engineFigures(cpu CPU, nodes []*node.Node, samples []Sample, res *Result, preEncoded int, probe memProbe, baseAnon, baseFile uint64) *EngineFigures {
	e := &EngineFigures{CPU: cpu, PeakRSS: peakResidentBytes(), PreEncodedBytes: preEncoded}
	if s := cpu.EngineUpperBound().Seconds(); s > 0 {
		e.SpansPerCore = float64(res.SpansSent) / s
	}
	for _, s := range samples {
		e.PeakBufferedSpans = max(e.PeakBufferedSpans, s.BufferedSpans)
	}
	// Memory per buffered span: growth from the baseline (the first sample,
	// taken after a GC before any span was sent) to the probe.
	if n := float64(probe.BufferedSpans); n > 0 && len(samples) > 0 {
		base := samples[0]
		e.ProbeBufferedSpans = probe.BufferedSpans
		e.AccountedPerSpan = float64(probe.BufferBytes) / n
		e.HeapPerSpan = (float64(probe.HeapBytes) - float64(base.HeapBytes)) / n
		e.RSSPerSpan = (float64(probe.RSSBytes) - float64(base.RSSBytes)) / n
		e.RSSAnonGrowth, e.RSSFileGrowth = int64(probe.anon)-int64(baseAnon), int64(probe.file)-int64(baseFile)
	}
	if t := float64(probe.traces); t > 0 && len(samples) > 0 {
		base := samples[0]
		e.ProbeBufferedTraces = probe.traces
		e.AccountedPerTrace = float64(probe.BufferBytes) / t
		e.HeapPerTrace = (float64(probe.HeapBytes) - float64(base.HeapBytes)) / t
		e.RSSPerTrace = (float64(probe.RSSBytes) - float64(base.RSSBytes)) / t
	}
	for _, n := range nodes {
		e.Stats = e.Stats.Plus(n.Stats())
	}
	// Every node's identity holds, so the sum's does; spans passed between
	// nodes count on both sides, so the clients' spans are ClientAccepted.
	e.AccountingOK = e.Stats.Accepted == e.Stats.Out() && e.Stats.ClientAccepted == res.SpansSent
	return e
}

// runEvents applies the scenario's cluster events at their times and
// returns the nodes that joined. It logs each event in res.Events.
func runEvents(ctx context.Context, sc Scenario, start time.Time, nodes []*node.Node, dirs *dataDirs, snd *sender, snk *sink.Sink, m *workload.Manifest, res *Result) []*node.Node {
	type event struct {
		at time.Duration
		do func() string
	}
	var evs []event
	var joined []*node.Node
	if sc.JoinAt > 0 {
		evs = append(evs, event{sc.JoinAt, func() string {
			cfg := sc.Node
			cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.ClusterBind, cfg.PeerListen = "127.0.0.1:0", "", "", "127.0.0.1:0", "127.0.0.1:0"
			cfg.NodeName, cfg.Forward = fmt.Sprintf("bench-%d", len(nodes)), snk.GRPCAddr().String()
			cfg.Join = []string{nodes[0].Cluster().GossipAddr()}
			var n *node.Node
			var err error
			if cfg.DataDir, err = dirs.node(len(nodes)); err != nil {
				return "join failed: " + err.Error()
			}
			withComponent(componentEngine, func() { n, err = node.New(cfg, node.Options{}) })
			if err != nil {
				return "join failed: " + err.Error()
			}
			joined = append(joined, n)
			return cfg.NodeName + " joined"
		}})
	}
	if sc.LeaveAt > 0 {
		evs = append(evs, event{sc.LeaveAt, func() string {
			n := nodes[1]
			snd.markDown(n.GRPCAddr().String()) // readiness fails first: the balancer stops sending
			snd.markDown(n.HTTPAddr().String())
			t0 := time.Now()
			err := n.Shutdown(ctx)
			msg := fmt.Sprintf("bench-1 left gracefully in %v", time.Since(t0).Round(time.Millisecond))
			if err != nil {
				msg += " (" + err.Error() + ")"
			}
			return msg
		}})
	}
	if sc.KillAt > 0 {
		evs = append(evs, event{sc.KillAt, func() string {
			victim := nodes[len(nodes)-1]
			ring := nodes[0].Cluster().Router().Ring()
			victim.Abort()
			st := victim.Stats()
			// Traces the victim owned may have had spans on it: they are
			// not the engine's to complete. Every other trace never
			// touched it (the load does not go there) and must arrive.
			excluded := 0
			self := ring.Index(victim.Cluster().Name())
			for i := range m.Traces {
				if tr := &m.Traces[i]; ring.Owner(&tr.ID) == self {
					tr.Undelivered.Store(true)
					excluded++
				}
			}
			msg := fmt.Sprintf("bench-%d killed holding %d buffered spans; the %d traces it owned are excluded from completeness",
				len(nodes)-1, st.Buffered+st.ForwardQueued, excluded)
			t0 := time.Now()
			if err := waitForMembers(ctx, nodes[:len(nodes)-1], 60*time.Second); err != nil {
				return msg + "; the others did not see it gone: " + err.Error()
			}
			return msg + fmt.Sprintf("; the others removed it from the ring %v later", time.Since(t0).Round(10*time.Millisecond))
		}})
	}
	slices.SortFunc(evs, func(a, b event) int { return cmp.Compare(a.at, b.at) })
	for _, ev := range evs {
		select {
		case <-ctx.Done():
			return joined
		case <-time.After(time.Until(start.Add(ev.at))):
		}
		msg := ev.do()
		res.Events = append(res.Events, fmt.Sprintf("%v: %s", time.Since(start).Round(100*time.Millisecond), msg))
	}
	return joined
}

// waitForMembers waits until every node of an in-process cluster sees all
// of them in its ring.
func waitForMembers(ctx context.Context, nodes []*node.Node, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ready := true
		for _, n := range nodes {
			if len(n.Cluster().Members()) != len(nodes) {
				ready = false
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("in-process cluster of %d nodes did not form within %v", len(nodes), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// liveHeap is the heap marked live by the last GC: what the process holds,
// without the garbage HeapAlloc also counts.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		h, _ := memory()
		return h
	}
	return s[0].Value.Uint64()
}

// drain waits for the decisions of everything sent to reach the sink:
// until the nodes (in-process, or external ones through adm) hold nothing
// buffered or pending, or, with neither, until the sink has been quiet for
// sc.Quiet; at most sc.Drain.
func drain(ctx context.Context, sc Scenario, nodes []*node.Node, adm *admins, snk *sink.Sink) {
	deadline := time.Now().Add(sc.Drain)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastSpans, lastChange := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if len(nodes) > 0 {
			idle := true
			for _, n := range nodes {
				if s := n.Stats(); s.Buffered > 0 || s.ExportPending > 0 || s.ForwardQueued > 0 || s.HandoffPending > 0 {
					idle = false
				}
			}
			if idle {
				return
			}
			continue
		}
		if adm != nil {
			// A node that cannot be read is not known to be idle.
			if m, err := adm.total(ctx); err == nil && m.idle() {
				return
			}
			continue
		}
		if p := snk.Progress().Spans; p != lastSpans {
			lastSpans, lastChange = p, time.Now()
		} else if time.Since(lastChange) >= sc.Quiet {
			return
		}
	}
}

// reportProgress calls sc.Progress every second until stopped.
func reportProgress(ctx context.Context, sc Scenario, sched *workload.Schedule, snd *sender, smp *sampler, start time.Time) (stop func()) {
	if sc.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var prevSent, prevKept int64
		var prevScheduled int
		next := 0
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			el := time.Since(start)
			scheduled := prevScheduled
			for ; next < len(sched.Requests) && sched.Requests[next].At <= el; next++ {
				scheduled += sched.Requests[next].Spans
			}
			smp.mu.Lock()
			var last Sample
			if len(smp.samples) > 0 {
				last = smp.samples[len(smp.samples)-1]
			}
			smp.mu.Unlock()
			sent := snd.stats.spansSent.Load()
			p := Progress{Elapsed: el, Offered: float64(scheduled - prevScheduled), Accepted: float64(sent - prevSent),
				Kept: float64(last.SpansKept - prevKept), SpansSent: sent, SpansRefused: snd.stats.spansRefused.Load(),
				Retries: snd.stats.retries.Load(), BufferedSpans: last.BufferedSpans}
			p.MaxRate = snd.maxRate
			prevSent, prevKept, prevScheduled = sent, last.SpansKept, scheduled
			sc.Progress(p)
		}
	}()
	return func() { close(done); <-finished }
}

// windowRates returns the offered and achieved spans/s over the steady
// window [1s, Duration) of a fixed-rate run, or over the whole send for a
// max-rate or short run.
func windowRates(sched *workload.Schedule, samples []Sample, sc Scenario) (offered, achieved float64) {
	from, to := time.Second, sc.Duration
	if sc.Rate == 0 || to-from < 2*time.Second || len(samples) < 2 {
		last := samples[len(samples)-1]
		var sendEnd time.Duration
		for _, s := range samples {
			if s.SpansSent == last.SpansSent {
				sendEnd = s.At
				break
			}
		}
		return 0, float64(last.SpansSent) / max(sendEnd, time.Millisecond).Seconds()
	}
	scheduled := 0
	for _, r := range sched.Requests {
		if r.At >= from && r.At < to {
			scheduled += r.Spans
		}
	}
	at := func(t time.Duration) Sample { // the last sample at or before t
		s := samples[0]
		for _, x := range samples {
			if x.At > t {
				break
			}
			s = x
		}
		return s
	}
	a, b := at(from), at(to)
	if b.At <= a.At {
		return 0, 0
	}
	return float64(scheduled) / (to - from).Seconds(), float64(b.SpansSent-a.SpansSent) / (b.At - a.At).Seconds()
}
