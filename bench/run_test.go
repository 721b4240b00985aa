package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tailsift/tailsift/bench/sink"
	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/decision"
	"github.com/tailsift/tailsift/node"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// shortScenario is a few seconds at a small rate: it checks completeness
// and accounting, never speed.
func shortScenario() Scenario {
	sc := DefaultScenario()
	sc.Rate, sc.Duration = 3000, 3*time.Second
	sc.Node.RootWait, sc.Node.DecisionWait = 300*time.Millisecond, 5*time.Second
	sc.Drain = 20 * time.Second
	sc.Workload.Seed = 7
	sc.Workload.ErrorShare, sc.Workload.TailShare = 0.1, 0.05 // enough of each class in a short run
	return sc
}

func checkIntact(t *testing.T, r *Result) {
	t.Helper()
	// The engine's word on each missed error or slow trace first: it
	// tells a late span from a lost one when the checks below fail.
	checkMissed(t, r)
	s := r.Sink
	if s.Completeness() != 1 || s.Fragmented != 0 || s.Duplicated != 0 || s.Unexpected != 0 || s.UnexpectedSpans != 0 {
		t.Fatalf("kept traces not intact: %+v", s)
	}
	if r.SpansRefused != 0 || s.Undelivered != 0 {
		t.Fatalf("%d spans refused, %d traces undelivered at a small rate", r.SpansRefused, s.Undelivered)
	}
	if r.SpansSent != int64(r.SpansScheduled) {
		t.Fatalf("sent %d of %d scheduled spans", r.SpansSent, r.SpansScheduled)
	}
	errs, slow, rest := s.Classes[workload.ClassError], s.Classes[workload.ClassSlow], s.Classes[workload.ClassRest]
	if errs.Sent == 0 || slow.Sent == 0 || rest.Sent == 0 {
		t.Fatalf("a class is empty: %+v", s.Classes)
	}
	// The embedded example policies: every error and slow trace, 10% of
	// the rest. A trace is decided with the spans it has, so one whose
	// error span (or root) comes late, as the sender's connections and the
	// peers' forwards may make it on a busy machine, is dropped and its
	// late spans counted: checkMissed, above, checks the engine's word on
	// each missed one.
	if share := rest.KeepShare; share < 0.03 || share > 0.2 {
		t.Fatalf("kept %.1f%% of the rest, want about 10%%", 100*share)
	}
}

func TestRunInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a load")
	}
	var progress []Progress
	sc := shortScenario()
	sc.Progress = func(p Progress) { progress = append(progress, p) }
	r, err := Run(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	checkIntact(t, r)
	e := r.Engine
	if e == nil || !e.AccountingOK {
		t.Fatalf("engine accounting: %+v", e)
	}
	if e.Stats.Accepted != r.SpansSent || e.Stats.Sent != r.Sink.SpansReceived {
		t.Fatalf("engine accepted %d (generator sent %d), forwarded %d (sink got %d)",
			e.Stats.Accepted, r.SpansSent, e.Stats.Sent, r.Sink.SpansReceived)
	}
	if e.CPU.Engine <= 0 || e.PeakBufferedSpans <= 0 || e.AccountedPerSpan < r.WireBytesSpan {
		t.Fatalf("resource figures missing: %+v (wire %.0f B/span)", e, r.WireBytesSpan)
	}
	if r.Ingest.P50 <= 0 || r.Ingest.P50 > r.Ingest.P99 || r.Ingest.P99 > r.Ingest.Max {
		t.Fatalf("ingest percentiles out of order: %+v", r.Ingest)
	}
	if r.Sink.Delay.P50 < sc.Node.RootWait {
		t.Fatalf("end-to-end delay p50 %v below root_wait %v: the delay is mismeasured", r.Sink.Delay.P50, sc.Node.RootWait)
	}
	if len(progress) < 2 || len(r.Samples) < 4 {
		t.Fatalf("%d progress reports, %d samples", len(progress), len(r.Samples))
	}
	var text bytes.Buffer
	r.WriteText(&text)
	for _, want := range []string{"completeness      100.00%", "keep share", "ingest latency", "per buffered span", "accounting        adds up"} {
		if !strings.Contains(text.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, text.String())
		}
	}
}

// UntilBuffered cuts the send once the node buffers that much: the rest
// of the schedule is not sent, its traces are left out of the judgement,
// and everything sent is accounted for and judged as usual. A target
// beyond the whole schedule is reported as not reached.
func TestRunUntilBuffered(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a load")
	}
	sc := shortScenario()
	sc.Node.RootWait = sc.Node.DecisionWait // nothing leaves the buffer before the cut
	sc.UntilBuffered = 1 << 20              // about 2.3k spans of the 9k scheduled
	r, err := Run(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	s := r.Sink
	if r.UntilReached <= 0 || r.SpansUnsent <= 0 || s.Undelivered <= 0 {
		t.Fatalf("reached %v, %d spans unsent, %d traces undelivered: want the send cut short", r.UntilReached, r.SpansUnsent, s.Undelivered)
	}
	if r.SpansSent+r.SpansUnsent+r.SpansRefused != int64(r.SpansScheduled) || r.SpansRefused != 0 {
		t.Fatalf("sent %d + unsent %d + refused %d != scheduled %d", r.SpansSent, r.SpansUnsent, r.SpansRefused, r.SpansScheduled)
	}
	if peak := r.Engine.PeakBufferedSpans; float64(peak)*r.Engine.AccountedPerSpan < float64(sc.UntilBuffered)/2 {
		t.Fatalf("peak %d spans buffered: the cut came before the node buffered %d bytes", peak, sc.UntilBuffered)
	}
	if s.Completeness() != 1 || s.Fragmented != 0 || s.Duplicated != 0 || s.Unexpected != 0 || s.Sent == 0 {
		t.Fatalf("traces sent whole not judged intact: %+v", s)
	}
	checkMissed(t, r)
	if e := r.Engine; !e.AccountingOK || e.Stats.Accepted != r.SpansSent {
		t.Fatalf("accounting: %+v (generator sent %d)", e.Stats, r.SpansSent)
	}
	var text bytes.Buffer
	r.WriteText(&text)
	if !strings.Contains(text.String(), "until buffered    1.0 MiB reached at") {
		t.Fatalf("report:\n%s", text.String())
	}

	sc.Duration, sc.UntilBuffered = time.Second, 1<<30
	if r, err = Run(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	if r.UntilReached != 0 || r.SpansUnsent != 0 || r.SpansSent != int64(r.SpansScheduled) {
		t.Fatalf("1 GiB reached at %v with %d of %d spans sent, %d unsent", r.UntilReached, r.SpansSent, r.SpansScheduled, r.SpansUnsent)
	}
	text.Reset()
	r.WriteText(&text)
	if !strings.Contains(text.String(), "1.00 GiB NOT reached") {
		t.Fatalf("report:\n%s", text.String())
	}
}

// checkMissed fails for every error and slow trace the sink names as not
// kept whole that the engine did not drop before it showed an error or
// its duration (Result.Unexplained), and logs how many were.
func checkMissed(t *testing.T, r *Result) {
	t.Helper()
	s := &r.Sink
	errs, slow := s.Classes[workload.ClassError], s.Classes[workload.ClassSlow]
	if len(r.Missed) > 0 {
		t.Logf("error traces kept whole %d/%d, slow %d/%d; the engine explains %d of those missed", errs.Complete, errs.Sent, slow.Complete, slow.Sent, len(r.Missed))
	}
	if int64(len(r.Missed)) != min(errs.Sent-errs.Complete, sink.MaxMissed)+min(slow.Sent-slow.Complete, sink.MaxMissed) {
		t.Errorf("%d missed traces explained; the sink counts %d error and %d slow traces not kept whole", len(r.Missed), errs.Sent-errs.Complete, slow.Sent-slow.Complete)
	}
	for _, m := range r.Unexplained() {
		t.Errorf("%s trace %s not kept whole, and the engine did not drop it before it showed that: %+v %s", m.Class, m.TraceID, m.Explanation, m.Err)
	}
}

// A missed error or slow trace is explained when the engine dropped it
// before it showed an error or its duration; anything else is not.
func TestUnexplained(t *testing.T) {
	at := time.Unix(1700000000, 0)
	x := func(status string, spans, errs int32, dur float64) *decision.Explanation {
		return &decision.Explanation{Status: status, DecidedAt: at, Spans: spans, ErrorSpans: errs, DurationSec: dur}
	}
	r := &Result{Sink: sink.Report{SlowThreshold: time.Second}, Missed: []MissedTrace{
		{TraceID: "e1", Class: "error", Explanation: x("dropped", 3, 0, 0.1)},                  // its error span came late
		{TraceID: "e2", Class: "error", Explanation: x("dropped", 3, 1, 0.1)},                  // dropped with the error in hand
		{TraceID: "e3", Class: "error", Explanation: x("kept", 3, 1, 0.1)},                     // kept, yet not whole
		{TraceID: "e4", Class: "error", Explanation: &decision.Explanation{Status: "dropped"}}, // no details
		{TraceID: "e5", Class: "error", Err: "no node to ask"},
		{TraceID: "s1", Class: "slow", Explanation: x("dropped", 2, 0, 0.4)}, // its root came late
		{TraceID: "s2", Class: "slow", Explanation: x("dropped", 2, 0, 1.5)}, // dropped at 1.5s
	}}
	var got []string
	for _, m := range r.Unexplained() {
		got = append(got, m.TraceID)
	}
	if want := []string{"e2", "e3", "e4", "e5", "s2"}; !slices.Equal(got, want) {
		t.Errorf("Unexplained = %v, want %v", got, want)
	}
}

// clusterScenario is shortScenario over an in-process cluster of n nodes.
func clusterScenario(n int, d time.Duration) Scenario {
	sc := shortScenario()
	sc.Nodes, sc.Duration = n, d
	sc.Workload.Connections = 6 // spread over every node: each trace's spans reach several
	return sc
}

func checkCluster(t *testing.T, r *Result) {
	t.Helper()
	checkIntact(t, r)
	e := r.Engine
	if e == nil || !e.AccountingOK || e.Stats.ClientAccepted != r.SpansSent {
		t.Fatalf("cluster accounting: %+v (generator sent %d)", e, r.SpansSent)
	}
	if e.Stats.Forwarded == 0 || e.Stats.ClusterDropped != 0 {
		t.Fatalf("forwarded %d spans between nodes, dropped %d", e.Stats.Forwarded, e.Stats.ClusterDropped)
	}
}

// Three real memberlist nodes on loopback, the load spread over all of
// them so every trace's spans arrive at several nodes: every kept trace
// reaches the sink complete and exactly once (one node decided it), and
// every error trace is kept.
func TestRunCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a load")
	}
	r, err := Run(context.Background(), clusterScenario(3, 3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	checkCluster(t, r)
}

// With --tls the generator sends over TLS (gRPC to a cluster, whose peers
// forward over mutual TLS; HTTP to one node) and every kept trace arrives
// whole, as without.
func TestRunTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a load")
	}
	t.Run("grpc-cluster", func(t *testing.T) {
		sc := clusterScenario(2, 3*time.Second)
		sc.TLS = true
		r, err := Run(context.Background(), sc)
		if err != nil {
			t.Fatal(err)
		}
		checkCluster(t, r)
	})
	t.Run("http", func(t *testing.T) {
		sc := shortScenario()
		sc.TLS, sc.Protocol = true, "http"
		r, err := Run(context.Background(), sc)
		if err != nil {
			t.Fatal(err)
		}
		checkIntact(t, r)
	})
	sc := shortScenario()
	sc.TLS, sc.Targets = true, []string{"127.0.0.1:4317"}
	if err := sc.Validate(); err == nil || !strings.Contains(err.Error(), "--tls") {
		t.Errorf("--tls with --target: %v, want an error", err)
	}
}

// A fourth node joins and then one of the first three leaves gracefully,
// both under load: traces move between owners in flight, and none is
// fragmented or lost.
func TestRunClusterJoinAndLeave(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a load")
	}
	sc := clusterScenario(3, 6*time.Second)
	sc.JoinAt, sc.LeaveAt = 2*time.Second, 4*time.Second
	r, err := Run(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Events) != 2 || !strings.Contains(r.Events[0], "joined") || !strings.Contains(r.Events[1], "left gracefully") {
		t.Fatalf("events: %q", r.Events)
	}
	checkCluster(t, r)
	if r.Engine.Stats.HandedOff == 0 {
		t.Fatalf("nothing handed off across a join and a leave: %+v", r.Engine.Stats)
	}
}

// A node is killed under load (no leave, no hand-off). The others keep
// working and see it gone; every trace it did not own (so whose spans
// never touched it: the load does not go there) arrives complete; what
// it held is reported, and the others' accounting adds up.
func TestRunClusterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a load")
	}
	sc := clusterScenario(3, 10*time.Second)
	sc.KillAt = 3 * time.Second
	r, err := Run(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Events) != 1 || !strings.Contains(r.Events[0], "killed holding") || !strings.Contains(r.Events[0], "removed it from the ring") {
		t.Fatalf("events: %q", r.Events)
	}
	s := r.Sink
	if s.Undelivered == 0 || s.Undelivered >= int64(r.TracesSent) {
		t.Fatalf("%d of %d traces excluded as owned by the killed node", s.Undelivered, r.TracesSent)
	}
	if s.Fragmented != 0 || s.Duplicated != 0 || s.Completeness() != 1 {
		t.Fatalf("traces the killed node did not own arrived incomplete: %+v", s)
	}
	checkMissed(t, r)
	// The last seconds of load ran after failure detection removed the
	// node: the survivors decided and forwarded through to the end.
	if r.Sink.Delay.Count == 0 || r.Engine == nil || !r.Engine.AccountingOK {
		t.Fatalf("after the kill: %+v", r.Engine)
	}
}

// TestRunExternal drives a node started on its own, as a deployment would
// be, over OTLP/HTTP.
func TestRunExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a load")
	}
	sc := shortScenario()
	sc.Protocol = "http"
	sinkAddr := freeAddr(t)
	cfg := sc.Node
	cfg.OTLPGRPC, cfg.OTLPHTTP, cfg.Admin, cfg.Forward, cfg.ClusterBind = "", "127.0.0.1:0", "127.0.0.1:0", sinkAddr, ""
	n, err := node.New(cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown(context.Background())
	sc.Targets, sc.SinkListen, sc.Quiet = []string{n.HTTPAddr().String()}, sinkAddr, 2*time.Second
	sc.TargetAdmins = []string{n.AdminAddr().String()}
	r, err := Run(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != "external" {
		t.Fatalf("mode %q", r.Mode)
	}
	checkIntact(t, r)
	e := r.Engine
	if e == nil || !e.External || e.CPU.Engine <= 0 || e.PeakRSS == 0 || e.PeakBufferedSpans == 0 || !e.AccountingOK {
		t.Fatalf("figures from the target's /metrics: %+v", e)
	}
	var text bytes.Buffer
	r.WriteText(&text)
	if !strings.Contains(text.String(), "process_cpu_seconds_total of the targets") {
		t.Fatalf("report:\n%s", text.String())
	}
}

func TestPlotAndJSON(t *testing.T) {
	r := &Result{OfferedRate: 1000, IngestP99ByS: []time.Duration{time.Millisecond, 2 * time.Millisecond}}
	for i := range 8 {
		r.Samples = append(r.Samples, Sample{At: time.Duration(i) * 250 * time.Millisecond, SpansSent: int64(i * 250),
			SpansKept: int64(i * 25), HeapBytes: uint64(1e6 + i), RSSBytes: 2e6, BufferBytes: int64(i * 1000)})
	}
	path := filepath.Join(t.TempDir(), "out.png")
	if err := WritePlot(r, path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 300 {
		t.Fatalf("plot is %v", b)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil || len(back.Samples) != 8 {
		t.Fatalf("JSON round trip: %v, %d samples", err, len(back.Samples))
	}
}

func TestJudge(t *testing.T) {
	c := DefaultSweep()
	good := func() *Result {
		return &Result{WindowOffered: 1000, AchievedRate: 990, Ingest: Percentiles{P99: time.Millisecond},
			Engine: &EngineFigures{AccountingOK: true}}
	}
	if ok, why := Judge(good(), c); !ok {
		t.Fatalf("good run judged failed: %s", why)
	}
	cases := map[string]func(r *Result){
		"kept traces not intact": func(r *Result) { r.Sink.Fragmented = 1 },
		"duplicated":             func(r *Result) { r.Sink.Duplicated = 2 },
		"refused":                func(r *Result) { r.SpansRefused = 10 },
		"achieved":               func(r *Result) { r.AchievedRate = 900 },
		"ingest p99":             func(r *Result) { r.Ingest.P99 = time.Second },
		"accounting":             func(r *Result) { r.Engine.AccountingOK = false },
	}
	for want, mut := range cases {
		r := good()
		mut(r)
		if ok, why := Judge(r, c); ok || !strings.Contains(why, want) {
			t.Errorf("%s: judged %v (%q)", want, ok, why)
		}
	}
}

func TestScenarioValidate(t *testing.T) {
	sc := DefaultScenario()
	sc.Rate, sc.Duration, sc.Protocol, sc.Nodes = -1, 0, "udp", 0
	err := sc.Validate()
	for _, want := range []string{"--rate", "--duration", "--protocol", "--nodes"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate does not name %s: %v", want, err)
		}
	}
	ext := DefaultScenario()
	ext.Targets = []string{"127.0.0.1:4317"}
	if err := ext.Validate(); err == nil || !strings.Contains(err.Error(), "--sink-listen") {
		t.Errorf("external mode without a sink address: %v", err)
	}
	ext.SinkListen, ext.UntilBuffered = "127.0.0.1:4417", 1<<20
	if err := ext.Validate(); err == nil || !strings.Contains(err.Error(), "--until-buffered with --target needs --target-admin") {
		t.Errorf("--until-buffered in external mode without admin addresses: %v", err)
	}
	if err := DefaultScenario().Validate(); err != nil {
		t.Fatal(err)
	}
}

// With a data directory, a small memory limit and the write-ahead log, a
// run really spills and logs: the report shows spilled bytes and WAL
// commits read from the node, every kept trace arrives complete, and the
// node's directory is removed afterwards (the directory given is kept).
func TestRunDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a load")
	}
	sc := shortScenario()
	sc.Node.RootWait = time.Second // traces stay long enough to be spilled
	sc.Node.MemoryLimit = 2 << 20  // spill past 1.25 MiB: about 2.6k spans
	sc.Node.Durability = node.DurabilityWAL
	sc.DataDir = filepath.Join(t.TempDir(), "data")
	r, err := Run(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	checkIntact(t, r)
	e := r.Engine
	if e == nil || !e.AccountingOK || e.Store == nil {
		t.Fatalf("engine figures: %+v", e)
	}
	d := e.Store
	if d.SpillOut <= 0 || d.SpillIn != d.SpillOut || d.PeakSpilled <= 0 || d.SpillFailures != 0 {
		t.Fatalf("spill: %d bytes out, %d in, peak %d, %d failures", d.SpillOut, d.SpillIn, d.PeakSpilled, d.SpillFailures)
	}
	if d.WALCommits != r.Requests || d.WALBytes < r.SpansSent*int64(r.WireBytesSpan)/2 || d.WALSyncs <= 0 || d.WALSyncs > d.WALCommits || d.WALFailures != 0 {
		t.Fatalf("wal: %d commits of %d requests, %d bytes, %d syncs, %d failures", d.WALCommits, r.Requests, d.WALBytes, d.WALSyncs, d.WALFailures)
	}
	if d.Durability != node.DurabilityWAL || d.Dir != sc.DataDir || d.PeakDiskBytes <= 0 {
		t.Fatalf("data dir figures: %+v", d)
	}
	if e.ProbeBufferedTraces <= 0 || e.AccountedPerTrace <= 0 {
		t.Fatalf("per-trace figures: %+v", e)
	}
	var text bytes.Buffer
	r.WriteText(&text)
	for _, want := range []string{"data dir", "spill  ", "wal  ", "per buffered trace"} {
		if !strings.Contains(text.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, text.String())
		}
	}
	if _, err := os.Stat(filepath.Join(sc.DataDir, "node-0")); !os.IsNotExist(err) {
		t.Fatalf("node directory left after the run: %v", err)
	}
	if _, err := os.Stat(sc.DataDir); err != nil {
		t.Fatalf("the directory given was removed: %v", err)
	}
}

// A node directory left by an earlier run is refused, and kept.
func TestRunDataDirExists(t *testing.T) {
	sc := shortScenario()
	sc.DataDir = t.TempDir()
	left := filepath.Join(sc.DataDir, "node-0", "MANIFEST")
	if err := os.MkdirAll(filepath.Dir(left), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(left, []byte("x"), 0o644)
	if _, err := Run(context.Background(), sc); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("Run with %s present: %v", filepath.Dir(left), err)
	}
	if _, err := os.Stat(left); err != nil {
		t.Fatalf("the earlier run's file was touched: %v", err)
	}
}

func TestScenarioValidateDataDir(t *testing.T) {
	sc := DefaultScenario()
	sc.Node.Durability = node.DurabilityWAL
	if err := sc.Validate(); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Errorf("wal without a data dir: %v", err)
	}
	sc.DataDir = DataDirTemp
	if err := sc.Validate(); err != nil {
		t.Errorf("wal with --data-dir temp: %v", err)
	}
	sc.Node.Durability = "fsync"
	if err := sc.Validate(); err == nil || !strings.Contains(err.Error(), "--durability") {
		t.Errorf("durability fsync: %v", err)
	}
	sc.Node.Durability, sc.Node.DiskLimit = node.DurabilityNone, 1<<20
	if err := sc.Validate(); err == nil || !strings.Contains(err.Error(), "--disk-limit") {
		t.Errorf("disk limit of 1 MiB: %v", err)
	}
	ext := DefaultScenario()
	ext.Targets, ext.SinkListen, ext.DataDir = []string{"127.0.0.1:4317"}, "127.0.0.1:4417", DataDirTemp
	if err := ext.Validate(); err == nil || !strings.Contains(err.Error(), "in-process") {
		t.Errorf("--data-dir in external mode: %v", err)
	}
}
