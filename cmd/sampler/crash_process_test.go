package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tailsift/tailsift/bench"
	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlpserver"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/rawcodec"
	"github.com/tailsift/tailsift/policy"
)

// TestCrashProcess is the crash test with real processes: "sampler bench"
// drives a "sampler run" process, which is killed with SIGKILL about 4s
// into the load and restarted at once on the same --data-dir. With
// --durability=wal every span the generator saw acknowledged must be
// forwarded (its trace complete) or counted as dropped by policy; with
// --durability=none (the control) spans buffered at the kill are lost,
// and the same checks must say so.
//
// The bench sink judges completeness per trace, but it counts a trace
// with any span received twice as "duplicated" whether or not it is
// complete: a re-export could hide a loss. So the sampler forwards to a
// tee in this process, which records every span it passes on to the bench
// sink; with the manifest rebuilt from the bench's workload (Build is
// pure) the test checks that every duplicated trace is also complete.
func TestCrashProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sampler and runs a load through two sampler processes per variant")
	}
	bin := buildSampler(t)
	keepAll := "rules:\n  - name: all\n    type: always\ndefault: keep\n"

	t.Run("wal-keep-all", func(t *testing.T) {
		o := runCrash(t, bin, crashVariant{durability: "wal", policies: keepAll, killAfter: 4 * time.Second, minBuffered: 1000})
		o.checkKeptAll(t)
	})

	t.Run("wal-torn-tail", func(t *testing.T) {
		// As if the kill came in the middle of a segment write: the
		// newest segment ends in half a record. Open truncates it (it was
		// never acknowledged) and every complete record is recovered.
		o := runCrash(t, bin, crashVariant{durability: "wal", policies: keepAll, killAfter: 3 * time.Second, minBuffered: 1000,
			afterKill: tearNewestSegment})
		o.checkKeptAll(t)
		if r := metricstest.Value(t, o.final, "tailsift_wal_repaired_bytes_total", nil); r != tornBytes {
			t.Errorf("the restarted node repaired %.0f bytes of torn tail, want the %d appended", r, tornBytes)
		}
	})

	t.Run("wal-spilled-10x", func(t *testing.T) {
		// Ten times memory_limit buffered, nearly all of it spilled (and
		// all of it logged) when the process dies: the restart comes up
		// at once (the replay spills as it goes, rather than stop at the
		// memory limit), and every acknowledged span reaches the sink.
		const limit = 16 << 20
		o := runCrash(t, bin, crashVariant{durability: "wal", policies: keepAll,
			killAfter: 2 * time.Second, minBufferedBytes: 10 * limit, killBound: 60 * time.Second,
			decisionWait: 60 * time.Second, rootWait: 60 * time.Second, drain: 120 * time.Second, timeout: 6 * time.Minute,
			runArgs:   []string{"--memory-limit", "16MiB", "--stress-relief=false"},
			benchArgs: []string{"--rate", "30000", "--spans", "100", "--duration", "20s"}})
		o.checkKeptAll(t)
		if o.restarts != 1 {
			t.Errorf("the node needed %d starts after the crash, want 1", o.restarts)
		}
		if m := metricstest.Value(t, o.final, "tailsift_buffer_spill_bytes_total", map[string]string{"direction": "out"}); m < 10*limit {
			t.Errorf("the restarted node spilled %.0f MiB, want at least the %d MiB it recovered", m/(1<<20), 10*limit>>20)
		}
	})

	t.Run("wal-example-policies", func(t *testing.T) {
		o := runCrash(t, bin, crashVariant{durability: "wal", killAfter: 4 * time.Second, minBuffered: 1000,
			// The latency rule sees a trace's duration only if its root
			// arrived before the decision: slow traces here last up to
			// about 7s, and after the kill the generator's sends lag by
			// over a second (gRPC reconnect backoff). With 4s, slow traces
			// started before the kill were decided without their root and
			// dropped, crash or not: a timing limit of the policy, not a
			// loss. 10s, as in TestClusterProcess, covers them.
			decisionWait: 10 * time.Second,
			// The same goes for root_wait: after the restart each of the
			// generator's connections works through its backlog of
			// retried requests at its own pace, and on a busy machine a
			// trace's root reached the node over a second before its
			// error span (24 error traces begun after the restart were
			// decided on their root and dropped). 5s covers that skew;
			// the kill still comes before the first decisions here, the
			// keep-all variants decide and delete during the load.
			rootWait: 5 * time.Second,
			// More of the classes the example policies keep whole, so each
			// is well represented in a short run.
			benchArgs: []string{"--error-share", "0.1", "--tail-share", "0.05"}})
		o.checkRecovered(t)
		s := &o.res.Sink
		if p := o.problems(); len(p) > 0 {
			t.Errorf("kept traces damaged across the crash:\n  %s", strings.Join(p, "\n  "))
		}
		for _, c := range []workload.Class{workload.ClassError, workload.ClassSlow} {
			if cr := s.Classes[c]; cr.Sent == 0 || cr.Kept != cr.Sent || cr.Fragmented != 0 {
				t.Errorf("%s traces: %d delivered, %d at the sink (%d complete, %d fragmented, %d duplicated); the example policies keep every one whole",
					cr.Class, cr.Sent, cr.Kept, cr.Complete, cr.Fragmented, cr.Duplicated)
			}
		}
		// For this workload the example policies decide by class and
		// trace ID alone (its spans have none of the attributes the other
		// rules look for): errors and traces of 1s or more are kept, and
		// the rest at 10% by the trace ID's randomness. So the kept set is
		// known trace by trace, and a trace lost in the crash cannot pass
		// for one dropped by policy.
		rest := policy.ThresholdFor(0.10)
		if missing, extra := o.checkKeptSet(t, func(tr *workload.Trace) bool {
			return tr.Error || tr.Duration >= time.Second || rest.Keep(tr.ID)
		}); missing+extra > 0 {
			t.Errorf("the sink's traces are not those the example policies keep: %d missing or incomplete, %d not to be kept", missing, extra)
		}
		o.checkDuplicates(t)
		o.checkAccounting(t)
		if v := metricstest.Value(t, o.final, "tailsift_decision_spans_dropped_total", map[string]string{"reason": "policy"}); v <= 0 {
			t.Errorf("the restarted node dropped no spans by policy (%v): the example policies keep only 10%% of ordinary traces", v)
		}
	})

	t.Run("none-control", func(t *testing.T) {
		// The keep-all run without the write-ahead log: the spans buffered
		// at the kill (at least minBuffered) die with the process, so the
		// checks that pass with wal must fail here.
		o := runCrash(t, bin, crashVariant{durability: "none", policies: keepAll, killAfter: 4 * time.Second, minBuffered: 1000})
		p := o.problems()
		missing, _ := o.checkKeptSet(t, func(*workload.Trace) bool { return true })
		if missing > 0 {
			p = append(p, fmt.Sprintf("%d delivered traces missing or incomplete at the sink", missing))
		}
		lost := int64(o.manifest.Spans()) - o.tee.distinct
		if len(p) == 0 || missing == 0 || lost <= 0 {
			t.Errorf("without the write-ahead log, %.0f buffered spans were killed, yet every delivered trace arrived whole: the test cannot see a loss", o.bufferedAtKill)
		} else {
			t.Logf("as expected without the write-ahead log, %d acknowledged spans were lost (%.0f were buffered at the last scrape before the kill), and the checks fail:\n  %s",
				lost, o.bufferedAtKill, strings.Join(p, "\n  "))
		}
		if r := metricstest.Value(t, o.final, "tailsift_decision_spans_recovered_total", nil); r != 0 {
			t.Errorf("recovered %.0f spans with --durability=none", r)
		}
		if c := metricstest.Value(t, o.final, "tailsift_buffer_wal_commits_total", nil); c != 0 {
			t.Errorf("%.0f write-ahead commits with --durability=none", c)
		}
	})
}

// crashVariant is one configuration of TestCrashProcess.
type crashVariant struct {
	durability string
	policies   string // policy file contents; "" runs the embedded example
	// The kill comes killAfter after the node accepted its first span, and
	// once it reports at least minBuffered buffered spans and
	// minBufferedBytes of them (something to lose), within killBound
	// (0: killAfter + 5s) of the first span.
	killAfter        time.Duration
	minBuffered      float64
	minBufferedBytes float64
	killBound        time.Duration
	decisionWait     time.Duration // 0: 4s
	rootWait         time.Duration // 0: 1s
	drain            time.Duration // the bench's --drain; 0: 60s
	timeout          time.Duration // of the whole variant; 0: crashTimeout
	runArgs          []string      // more flags of both sampler runs
	benchArgs        []string
	// afterKill, if set, changes the data directory before the restart.
	afterKill func(t *testing.T, dataDir string)
}

// tornBytes is what tearNewestSegment appends.
const tornBytes = 300

// tearNewestSegment appends the first tornBytes of a record that claims
// 4 KiB to the newest write-ahead segment: the tail a crash in the middle
// of a write leaves.
func tearNewestSegment(t *testing.T, dataDir string) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dataDir, "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no write-ahead segment in %s (%v)", dataDir, err)
	}
	slices.Sort(segs)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	torn := make([]byte, tornBytes)
	binary.BigEndian.PutUint32(torn, 4096)
	for i := 8; i < len(torn); i++ {
		torn[i] = byte(i)
	}
	if _, err := f.Write(torn); err != nil {
		t.Fatal(err)
	}
}

// checkKeptAll checks a keep-all variant: every acknowledged span at the
// sink, nothing dropped, no trace damaged or duplicated beyond the bound.
func (o *crashOutcome) checkKeptAll(t *testing.T) {
	t.Helper()
	o.checkRecovered(t)
	s := &o.res.Sink
	if p := o.problems(); len(p) > 0 {
		t.Errorf("acknowledged spans vanished across the crash:\n  %s", strings.Join(p, "\n  "))
	}
	// With a keep-all policy nothing may hide behind "dropped by
	// policy": every delivered trace must be at the sink, whole.
	if missing, extra := o.checkKeptSet(t, func(*workload.Trace) bool { return true }); missing+extra > 0 {
		t.Errorf("%d delivered traces missing or incomplete at the sink", missing)
	}
	if s.Kept != s.Sent || s.Dropped != 0 {
		t.Errorf("%d of %d delivered traces reached the sink (%d dropped); keep-all keeps every one", s.Kept, s.Sent, s.Dropped)
	}
	if want := int64(o.manifest.Spans()); o.tee.distinct != want {
		t.Errorf("the sink got %d distinct spans; the generator delivered %d in %d traces", o.tee.distinct, want, s.Sent)
	}
	o.checkDuplicates(t)
	o.checkAccounting(t)
	if d := sumMetric(t, o.final, "tailsift_decision_spans_dropped_total"); d != 0 {
		t.Errorf("the restarted node dropped %.0f spans under a keep-all policy", d)
	}
}

// crashOutcome is what one crash run observed.
type crashOutcome struct {
	res      bench.Result
	manifest *workload.Manifest // rebuilt from the bench's workload: span counts per trace
	tee      teeTally
	// final is the restarted node's /metrics after the bench, before its
	// SIGTERM.
	final prometheus.Gatherer
	// The first process's last scrape before the kill.
	bufferedAtKill, acceptedAtKill, bufferedBytesAtKill float64
	restarts                                            int           // processes started after the kill
	killOffset                                          time.Duration // from the first span accepted
}

const crashTimeout = 3 * time.Minute // ends a hung variant; one takes 20-40s

// runCrash runs one variant: a sampler process, the load, a SIGKILL, a
// restart on the same data directory, the rest of the load and the drain;
// then a SIGTERM, after which the restarted node must exit 0.
func runCrash(t *testing.T, bin string, v crashVariant) *crashOutcome {
	t.Helper()
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(v.timeout, crashTimeout))
	t.Cleanup(cancel)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	sinkAddr, grpcAddr, adminAddr := freePort(t), freePort(t), freePort(t)
	tee := startTee(t, sinkAddr)

	args := []string{"run",
		"--data-dir", dataDir, "--durability", v.durability, "--forward", tee.addr(),
		"--otlp-grpc", grpcAddr, "--otlp-http", "", "--admin", adminAddr, "--cluster-bind", "",
		"--decision-wait", cmp.Or(v.decisionWait, 4*time.Second).String(), "--root-wait", cmp.Or(v.rootWait, time.Second).String(), "--shutdown-timeout", "10s"}
	args = append(args, v.runArgs...)
	if v.policies != "" {
		path := filepath.Join(dir, "policies.yaml")
		if err := os.WriteFile(path, []byte(v.policies), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--policies", path)
	}

	var procs []*clusterProc
	t.Cleanup(func() {
		for _, p := range procs {
			select {
			case <-p.done:
			default:
				p.cmd.Process.Kill()
				<-p.done
			}
			if t.Failed() {
				t.Logf("stderr of the %s sampler (exit: %v):\n%s", p.name, p.err, p.stderr.String())
			}
		}
	})
	start := func(name string) *clusterProc {
		p := &clusterProc{name: name, grpc: grpcAddr, admin: adminAddr, done: make(chan struct{})}
		p.cmd = exec.CommandContext(ctx, bin, args...)
		p.cmd.Stdout = io.Discard
		p.cmd.Stderr = &p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start the %s sampler: %v", name, err)
		}
		procs = append(procs, p)
		go func() {
			p.err = p.cmd.Wait()
			close(p.done)
		}()
		return p
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	waitReady := func(p *clusterProc) {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if code, _ := httpGet(hc, "http://"+adminAddr+"/readyz"); code == http.StatusOK {
				return
			}
			select {
			case <-p.done:
				t.Fatalf("the %s sampler exited before it was ready: %v\n%s", p.name, p.err, p.stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("the %s sampler not ready within 30s\n%s", p.name, p.stderr.String())
			}
		}
	}
	first := start("first")
	waitReady(first)

	benchArgs := append([]string{"bench",
		"--target", grpcAddr, "--target-admin", adminAddr, "--sink-listen", sinkAddr,
		"--rate", "4000", "--duration", "12s", "--seed", "11",
		"--quiet", "6s", "--drain", cmp.Or(v.drain, 60*time.Second).String(), "--no-progress", "--json"}, v.benchArgs...)
	benchCmd := exec.CommandContext(ctx, bin, benchArgs...)
	var benchOut, benchErr otlptest.SyncBuffer
	benchCmd.Stdout, benchCmd.Stderr = &benchOut, &benchErr
	if err := benchCmd.Start(); err != nil {
		t.Fatal(err)
	}
	var benchExitErr error
	benchDone := make(chan struct{}) // closed when bench exited, benchExitErr set
	go func() { benchExitErr = benchCmd.Wait(); close(benchDone) }()
	t.Cleanup(func() {
		select {
		case <-benchDone:
		default:
			benchCmd.Process.Kill()
			<-benchDone
		}
	})

	// Wait for the load, then for killAfter and enough buffered spans.
	o := &crashOutcome{}
	var loadStart time.Time
	for {
		select {
		case <-benchDone:
			t.Fatalf("sampler bench exited before the kill: %v\n%s", benchExitErr, benchErr.String())
		case <-first.done:
			t.Fatalf("the first sampler exited before the kill: %v", first.err)
		case <-time.After(100 * time.Millisecond):
		}
		g, err := scrapeMetrics(hc, adminAddr)
		if err != nil {
			continue
		}
		accepted := metricstest.Value(t, g, "tailsift_decision_spans_accepted_total", nil)
		if accepted == 0 {
			continue
		}
		if loadStart.IsZero() {
			loadStart = time.Now()
		}
		o.acceptedAtKill, o.bufferedAtKill = accepted, metricstest.Value(t, g, "tailsift_buffer_spans", nil)
		// Buffered bytes: in memory (accounted) and spilled.
		o.bufferedBytesAtKill = metricstest.Value(t, g, "tailsift_buffer_memory_bytes", nil) + metricstest.Value(t, g, "tailsift_buffer_spilled_bytes", nil)
		if time.Since(loadStart) >= v.killAfter && o.bufferedAtKill >= v.minBuffered && o.bufferedBytesAtKill >= v.minBufferedBytes {
			break
		}
		if time.Since(loadStart) > cmp.Or(v.killBound, v.killAfter+5*time.Second) {
			t.Fatalf("the node never buffered %v spans and %v bytes (last %v, %v): nothing to lose at the kill",
				v.minBuffered, v.minBufferedBytes, o.bufferedAtKill, o.bufferedBytesAtKill)
		}
	}

	// The crash, and the restart on the same ports and data directory.
	killAt := time.Now()
	o.killOffset = killAt.Sub(loadStart)
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.done
	if v.afterKill != nil {
		v.afterKill(t, dataDir)
	}
	restarted := start("restarted")
	o.restarts = 1
	waitReady(restarted)
	downtime := time.Since(killAt)
	t.Logf("killed %v after the first span, holding %.0f buffered spans (%.1f MiB) of %.0f accepted; the restarted node was ready %v later",
		killAt.Sub(loadStart).Round(time.Millisecond), o.bufferedAtKill, o.bufferedBytesAtKill/(1<<20), o.acceptedAtKill, downtime.Round(time.Millisecond))
	for _, line := range strings.Split(restarted.stderr.String(), "\n") {
		if strings.Contains(line, "recovered") {
			t.Logf("restarted node: %s", line)
		}
	}

	select {
	case <-benchDone:
		if benchExitErr != nil {
			t.Fatalf("sampler bench: %v\nstderr:\n%s\nstdout:\n%s", benchExitErr, benchErr.String(), benchOut.String())
		}
	case <-ctx.Done():
		t.Fatalf("sampler bench still running after %v", cmp.Or(v.timeout, crashTimeout))
	}
	if err := json.Unmarshal([]byte(benchOut.String()), &o.res); err != nil {
		t.Fatalf("bench --json output does not parse: %v\n%s", err, benchOut.String())
	}
	var text bytes.Buffer
	o.res.WriteText(&text)
	t.Logf("bench:\n%s", text.String())

	sched, err := workload.Build(o.res.Workload, time.Now(), o.res.OfferedRate, o.res.Duration)
	if err != nil {
		t.Fatalf("rebuilding the bench's manifest: %v", err)
	}
	o.manifest = sched.Manifest
	if sched.Spans != o.res.SpansScheduled || len(o.manifest.Traces) != o.res.TracesSent {
		t.Fatalf("rebuilt manifest has %d spans in %d traces; the bench scheduled %d in %d",
			sched.Spans, len(o.manifest.Traces), o.res.SpansScheduled, o.res.TracesSent)
	}
	o.tee = tee.tally(o.manifest)
	t.Logf("tee: %d spans passed on, %d distinct manifest spans, %d duplicate copies, %d foreign; duplicated traces: %d whole, %d partly, %d incomplete",
		o.tee.spans, o.tee.distinct, o.tee.duplicateSpans, o.tee.foreignSpans, o.tee.wholeDuplicated, o.tee.partlyDuplicated, o.tee.incompleteDuplicated)
	// The tee passed on exactly what the bench sink counted.
	if s := &o.res.Sink; o.tee.spans != s.SpansReceived || o.tee.duplicateSpans != s.DuplicateSpans {
		t.Errorf("the tee passed %d spans (%d duplicate copies), the bench sink counted %d (%d)",
			o.tee.spans, o.tee.duplicateSpans, s.SpansReceived, s.DuplicateSpans)
	}
	// A request retried past the generator's budget (10s) would exclude
	// its traces: the downtime must be well inside it, so every trace is
	// judged.
	if o.res.SpansRefused != 0 || o.res.Sink.Undelivered != 0 || o.res.SpansSent != int64(o.res.SpansScheduled) {
		t.Errorf("the generator gave up on %d spans (%d traces undelivered; %d of %d scheduled spans acknowledged) after %d retries",
			o.res.SpansRefused, o.res.Sink.Undelivered, o.res.SpansSent, o.res.SpansScheduled, o.res.Retries)
	}

	if o.final, err = scrapeMetrics(hc, adminAddr); err != nil {
		t.Fatal(err)
	}
	if err := restarted.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-restarted.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("the restarted sampler did not exit within 15s of SIGTERM")
	}
	if restarted.err != nil || !strings.Contains(restarted.stderr.String(), "msg=stopped") {
		t.Errorf("the restarted sampler exited with %v after SIGTERM", restarted.err)
	}
	for _, p := range procs {
		if strings.Contains(p.stderr.String(), "panic") || strings.Contains(p.stderr.String(), "level=ERROR") {
			t.Errorf("the %s sampler logged a panic or an error", p.name)
		}
	}
	t.Logf("%s: variant took %v", t.Name(), time.Since(t0).Round(time.Millisecond))
	return o
}

// checkRecovered checks that the restarted node read spans back from the
// write-ahead log, and that the first one logged every request.
func (o *crashOutcome) checkRecovered(t *testing.T) {
	t.Helper()
	r := metricstest.Value(t, o.final, "tailsift_decision_spans_recovered_total", nil)
	commits := metricstest.Value(t, o.final, "tailsift_buffer_wal_commits_total", nil)
	syncs := metricstest.Value(t, o.final, "tailsift_wal_syncs_total", nil)
	t.Logf("restarted node: %.0f spans recovered (%.0f were buffered at the last scrape before the kill); since the restart %.0f write-ahead commits, %.0f fsyncs",
		r, o.bufferedAtKill, commits, syncs)
	if r <= 0 {
		t.Errorf("the restarted node recovered %v spans; %v were buffered at the kill", r, o.bufferedAtKill)
	}
	if commits <= 0 || syncs <= 0 {
		t.Errorf("no write-ahead commits (%v) or fsyncs (%v) after the restart", commits, syncs)
	}
}

// problems lists what no crash may cause with the write-ahead log: a trace
// that reached the sink incomplete (fragmented, or duplicated but missing
// spans), spans or traces the generator never sent, unreadable requests.
// Dropped traces are for the caller to judge: policies drop some.
func (o *crashOutcome) problems() []string {
	s := &o.res.Sink
	var p []string
	add := func(n int64, what string) {
		if n > 0 {
			p = append(p, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(s.Fragmented, "fragmented traces (some acknowledged spans missing)")
	add(o.tee.incompleteDuplicated, "duplicated traces with acknowledged spans missing")
	add(s.Unexpected, "unexpected traces")
	add(s.UnexpectedSpans+o.tee.foreignSpans, "unexpected spans")
	add(s.MalformedRequests, "malformed requests")
	return p
}

// checkKeptSet compares, trace by trace, what arrived with what the
// policies keep: every delivered trace that keep says is kept must be at
// the sink whole (missing counts those that are not), and no span of the
// others may be there (extra). It logs the first few of each.
func (o *crashOutcome) checkKeptSet(t *testing.T, keep func(*workload.Trace) bool) (missing, extra int) {
	t.Helper()
	for i := range o.manifest.Traces {
		tr := &o.manifest.Traces[i]
		got := o.tee.received[tr.ID]
		var what string
		switch k := keep(tr); {
		case k && got != tr.Spans:
			missing++
			if missing > 10 {
				continue
			}
			what = "to be kept"
		case !k && got > 0:
			extra++
			if extra > 10 {
				continue
			}
			what = "to be dropped"
		default:
			continue
		}
		t.Logf("%s trace %x, %s: %d of %d spans arrived; it started %v into the load and lasted %v (the kill was %v into it)",
			tr.Class(o.res.Sink.SlowThreshold), tr.ID, what, got, tr.Spans, (tr.EndOffset - tr.Duration).Round(time.Millisecond),
			tr.Duration.Round(time.Millisecond), o.killOffset.Round(time.Millisecond))
	}
	return missing, extra
}

// checkDuplicates bounds the re-exported traces. With the write-ahead log
// a kept trace is deleted from disk once the exporter delivered it; a
// trace exported but not yet deleted at the kill is recovered and
// exported again (at-least-once). That window is the exporter's batch
// timeout (200ms) plus sending plus the store's delete interval (100ms),
// well under a second; and a request in flight at the kill that the node
// had logged but not answered is retried by the generator, so its spans
// arrive twice in a trace exported once. So at most about one second of
// kept traces may arrive twice; a node that never deleted records would
// re-export everything kept before the kill (4s of them).
func (o *crashOutcome) checkDuplicates(t *testing.T) {
	t.Helper()
	s := &o.res.Sink
	perSecond := float64(s.Kept) / o.res.Duration.Seconds()
	t.Logf("duplicates: %d of %d kept traces (%d every span twice or more, %d partly), %d duplicate span copies; bound %.0f traces (one second of kept traces)",
		s.Duplicated, s.Kept, o.tee.wholeDuplicated, o.tee.partlyDuplicated, s.DuplicateSpans, perSecond)
	if float64(s.Duplicated) > perSecond {
		t.Errorf("%d traces arrived more than once, more than the %.0f kept in a second: are delivered traces deleted from the write-ahead log?", s.Duplicated, perSecond)
	}
	if got := o.tee.wholeDuplicated + o.tee.partlyDuplicated + o.tee.incompleteDuplicated; got != s.Duplicated {
		t.Errorf("the tee saw %d duplicated traces, the bench sink %d", got, s.Duplicated)
	}
}

// checkAccounting checks the restarted node's identity on its /metrics
// (checkSpanIdentity), and that it accepted no more than the generator
// sent.
func (o *crashOutcome) checkAccounting(t *testing.T) {
	t.Helper()
	checkSpanIdentity(t, o.final)
	// The generator's acknowledged spans are at most what the two
	// processes accepted: the first up to the kill (its last scrape is a
	// lower bound), the second since.
	if accepted := sumMetric(t, o.final, "tailsift_decision_spans_accepted_total"); float64(o.res.SpansSent) < accepted {
		t.Errorf("the restarted node accepted %.0f spans, more than the %d the generator sent in all", accepted, o.res.SpansSent)
	}
}

// checkSpanIdentity checks a drained node's span accounting on its
// /metrics g: every span it accepted or recovered was kept, dropped (for
// a reason), handed off or is still buffered, and every kept span was
// exported (nothing buffered, pending or failed after the drain).
func checkSpanIdentity(t *testing.T, g prometheus.Gatherer) {
	t.Helper()
	v := func(name string) float64 { return sumMetric(t, g, name) }
	accepted, recovered := v("tailsift_decision_spans_accepted_total"), v("tailsift_decision_spans_recovered_total")
	kept, dropped := v("tailsift_decision_spans_kept_total"), v("tailsift_decision_spans_dropped_total")
	buffered, handedOff := v("tailsift_buffer_spans"), v("tailsift_decision_spans_handed_off_total")
	sent, failed, pending := v("tailsift_export_spans_sent_total"), v("tailsift_export_spans_failed_total"), v("tailsift_export_spans_pending")
	t.Logf("node: accepted %.0f + recovered %.0f = kept %.0f + dropped %.0f + buffered %.0f + handed off %.0f; exported %.0f, failed %.0f, pending %.0f",
		accepted, recovered, kept, dropped, buffered, handedOff, sent, failed, pending)
	if accepted+recovered != kept+dropped+buffered+handedOff {
		t.Errorf("accounting: accepted %.0f + recovered %.0f != kept %.0f + dropped %.0f + buffered %.0f + handed off %.0f",
			accepted, recovered, kept, dropped, buffered, handedOff)
	}
	if buffered != 0 || pending != 0 || failed != 0 || sent != kept {
		t.Errorf("after the drain: %.0f spans buffered, %.0f pending export, %.0f failed; %.0f of %.0f kept spans sent",
			buffered, pending, failed, sent, kept)
	}
}

// sumMetric sums every series of a counter or gauge.
func sumMetric(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return sum
}

// teeSink receives the sampler's exports (OTLP/gRPC), passes each request
// on to the bench sink, and records every span that got through.
type teeSink struct {
	lis net.Listener
	srv *grpc.Server
	out *grpc.ClientConn

	mu     sync.Mutex
	counts map[[24]byte]int32 // trace ID | span ID: copies passed on
	spans  int64
}

const teeExportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

func startTee(t *testing.T, sinkAddr string) *teeSink {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out, err := grpc.NewClient(sinkAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	tee := &teeSink{lis: lis, out: out, counts: map[[24]byte]int32{}}
	tee.srv = grpc.NewServer(grpc.ForceServerCodecV2(rawcodec.Codec{}), grpc.MaxRecvMsgSize(64<<20))
	otlpserver.RegisterTraceService(tee.srv, tee.export, nil, otlpserver.NewBuffers(64<<10, 4<<20))
	go tee.srv.Serve(lis)
	t.Cleanup(func() {
		tee.srv.Stop()
		out.Close()
	})
	return tee
}

func (tee *teeSink) addr() string { return tee.lis.Addr().String() }

// export passes body on; the sink's answer (a status error or OK) goes
// back to the sampler, which retries what it may.
func (tee *teeSink) export(ctx context.Context, body []byte) error {
	var req otlpwire.Request
	if err := req.Scan(body); err != nil {
		return fmt.Errorf("tee: %w", err)
	}
	var resp []byte
	if err := tee.out.Invoke(ctx, teeExportMethod, &body, &resp, grpc.ForceCodecV2(rawcodec.Codec{})); err != nil {
		return err
	}
	tee.mu.Lock()
	defer tee.mu.Unlock()
	for i := range req.Spans {
		s := &req.Spans[i]
		var k [24]byte
		copy(k[:16], s.TraceID[:])
		copy(k[16:], s.SpanID[:])
		tee.counts[k]++
	}
	tee.spans += int64(len(req.Spans))
	return nil
}

// teeTally classifies the manifest traces by what the tee passed on.
type teeTally struct {
	spans          int64 // every copy
	distinct       int64 // distinct manifest spans
	duplicateSpans int64 // copies after the first
	foreignSpans   int64 // not a span of a manifest trace
	// Traces with a span more than once: complete with every span at
	// least twice (re-exported whole), complete with some once (a part
	// re-exported: records not yet deleted, or a retried request logged
	// before the kill), or incomplete (a loss hidden by a duplicate).
	wholeDuplicated, partlyDuplicated, incompleteDuplicated int64
	// received is the distinct spans of each manifest trace that arrived.
	received map[[16]byte]int32
}

func (tee *teeSink) tally(m *workload.Manifest) teeTally {
	tee.mu.Lock()
	defer tee.mu.Unlock()
	type perTrace struct{ distinct, minCopies, maxCopies int32 }
	traces := map[[16]byte]*perTrace{}
	r := teeTally{spans: tee.spans, received: map[[16]byte]int32{}}
	for k, n := range tee.counts {
		id, sid := [16]byte(k[:16]), [8]byte(k[16:])
		tr, ok := m.Lookup(id)
		if idx := workload.SpanIndex(id, sid); !ok || idx < 0 || idx >= int(tr.Spans) {
			r.foreignSpans += int64(n)
			continue
		}
		pt := traces[id]
		if pt == nil {
			pt = &perTrace{minCopies: n}
			traces[id] = pt
		}
		pt.distinct++
		pt.minCopies, pt.maxCopies = min(pt.minCopies, n), max(pt.maxCopies, n)
		r.distinct++
		r.duplicateSpans += int64(n - 1)
	}
	for id, pt := range traces {
		r.received[id] = pt.distinct
		if pt.maxCopies < 2 {
			continue
		}
		tr, _ := m.Lookup(id)
		switch {
		case pt.distinct < tr.Spans:
			r.incompleteDuplicated++
		case pt.minCopies >= 2:
			r.wholeDuplicated++
		default:
			r.partlyDuplicated++
		}
	}
	return r
}
