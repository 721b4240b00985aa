package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailsift/tailsift/bench"
	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlptest"
)

// The resident-memory bound TestSpillProcess holds a 16 MiB buffer to
// while it buffers 500 MiB of span bytes: the whole process's VmRSS (the
// Go heap and runtime, the store's memtables and caches for decisions,
// gRPC buffers, the spill index, the binary). Spilled bytes are written
// and read with write and pread, never mapped, so they are not in it
// (before data_dir/spill, Badger mapped them: RssFile grew by the bytes
// on disk).
const spillRSSBound = 192 << 20

// TestSpillProcess runs a real sampler with --memory-limit 16MiB and a
// data directory, and drives it with 100-span traces until it buffers
// 500 MiB of span bytes, nearly all of them on disk. The process's
// resident memory stays under spillRSSBound throughout, and
// every kept trace reaches the sink whole, read back from disk.
//
// How fast the node takes the load in depends on the machine; the test
// does not. Traces wait spillWait for their decision, and the bench sends
// until the node buffers enough (--until-buffered), so the peak is
// reached however long the send takes, up to spillWait (about 23s on a
// machine with a core to spare). Stress relief is off: it decides the oldest traces
// early whenever the spill loop falls behind the load, which it does on a
// busy machine, and would empty the buffer this test fills
// (TestOverloadProcess tests relief); without it, a node whose spill lags
// answers retry-later and the sender slows down instead.
func TestSpillProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and buffers 500 MiB through it")
	}
	const spillWait = 60 * time.Second
	bin := buildSampler(t)
	grpcAddr, admin, sinkAddr := freePort(t), freePort(t), freePort(t)
	p := startMemProc(t, bin, admin, "--otlp-grpc", grpcAddr, "--forward", sinkAddr,
		"--memory-limit", "16MiB", "--data-dir", t.TempDir(), "--stress-relief=false",
		"--decision-wait", spillWait.String(), "--root-wait", spillWait.String())
	// At most 1.56M spans of 100-span traces, ~386 bytes each: about 575
	// MiB of span bytes, of which the bench sends what the node needs to
	// buffer 520 MiB (memory included), so that 500 MiB are on disk.
	stop := p.watch()
	res := benchJSON(t, bin, 2*spillWait+5*time.Minute,
		"--target", grpcAddr, "--target-admin", admin, "--sink-listen", sinkAddr,
		"--rate", "60000", "--spans", "100", "--duration", "26s", "--seed", "11",
		"--until-buffered", "520MiB", "--drain", (spillWait + 3*time.Minute).String())
	peak := stop()
	hc := p.hc
	t.Logf("peaks: buffered %d MiB (%d MiB on disk, %d MiB accounted in memory), RssAnon %d MiB, RssFile %d MiB, VmRSS %d MiB, Go heap in use %d MiB",
		peak.buffered>>20, peak.spilled>>20, peak.memory>>20, peak.anon>>20, peak.file>>20, peak.rss>>20, peak.heap>>20)

	if peak.buffered < 500<<20 || res.UntilReached == 0 {
		t.Errorf("buffered at most %d MiB of span bytes (the bench: reached 520 MiB at %v), want 500 MiB: the test did not test what it says; "+
			"the node took %d spans in %v, too slowly to buffer that within the %v decision wait",
			peak.buffered>>20, res.UntilReached, res.SpansSent, res.SendTime.Round(time.Millisecond), spillWait)
	}
	if peak.memory > 16<<20 {
		t.Errorf("the buffer accounted %d MiB, over its 16 MiB limit", peak.memory>>20)
	}
	if peak.rss == 0 || peak.rss > spillRSSBound {
		t.Errorf("peak resident memory (VmRSS) %d MiB, want at most %d MiB", peak.rss>>20, spillRSSBound>>20)
	}
	s := res.Sink
	if s.Complete == 0 || s.Completeness() != 1 || s.Fragmented != 0 || s.Duplicated != 0 || s.Unexpected != 0 {
		t.Errorf("kept traces not intact: completeness %.4f, complete %d, fragmented %d, duplicated %d, unexpected %d",
			s.Completeness(), s.Complete, s.Fragmented, s.Duplicated, s.Unexpected)
	}
	// A node whose spill lags answers retry-later for a moment; spilling
	// keeps the buffer open, so every request is taken in the end.
	if res.SpansRefused != 0 || res.SpansSent+res.SpansUnsent != int64(res.SpansScheduled) {
		t.Errorf("sent %d and left %d unsent of %d scheduled spans, %d refused after %d retries: spilling should keep the buffer open",
			res.SpansSent, res.SpansUnsent, res.SpansScheduled, res.SpansRefused, res.Retries)
	}
	if errs := s.Classes[workload.ClassError]; errs.Sent == 0 || errs.Complete != errs.Sent {
		t.Errorf("error traces kept whole: %d of %d, want all", errs.Complete, errs.Sent)
	}
	g, err := scrapeMetrics(hc, admin)
	if err != nil {
		t.Fatal(err)
	}
	out := metricstest.Value(t, g, "tailsift_buffer_spill_bytes_total", map[string]string{"direction": "out"})
	in := metricstest.Value(t, g, "tailsift_buffer_spill_bytes_total", map[string]string{"direction": "in"})
	lost := metricstest.Value(t, g, "tailsift_decision_spans_dropped_total", map[string]string{"reason": "storage"})
	t.Logf("refused as overloaded while the spill caught up: %.0f spans (%d client retries)",
		metricstest.Value(t, g, "tailsift_ingest_spans_refused_total", map[string]string{"protocol": "grpc", "reason": "overloaded"}), res.Retries)
	if out < 500<<20 || in != out || lost != 0 {
		t.Errorf("spilled %.0f MiB, read back %.0f MiB, %.0f spans lost to storage: want at least 500 MiB, all read back, none lost", out/(1<<20), in/(1<<20), lost)
	}
	// The Go runtime's memory limit comes from the configuration.
	if got, want := metricstest.Value(t, g, "go_gc_gomemlimit_bytes", nil), float64(16<<20*3/2+256<<20); got != want {
		t.Errorf("go_gc_gomemlimit_bytes = %.0f, want %.0f (memory_limit x 1.5 + 256MiB)", got, want)
	}
	if e := res.Engine; e == nil || !e.AccountingOK {
		t.Errorf("accounting from /metrics does not add up: %+v", e)
	}
}

// spillPeaks are the largest values seen by sample.
type spillPeaks struct {
	buffered, spilled, memory int64 // span bytes on disk + accounted memory, and each
	anon, file, rss, heap     int64
}

func (p *spillPeaks) sample(t *testing.T, hc *http.Client, admin string, pid int) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(status))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 {
				continue
			}
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "RssAnon:":
				p.anon = max(p.anon, kb<<10)
			case "RssFile:":
				p.file = max(p.file, kb<<10)
			case "VmRSS:":
				p.rss = max(p.rss, kb<<10)
			}
		}
	}
	g, err := scrapeMetrics(hc, admin)
	if err != nil {
		return // between requests; the next sample will do
	}
	spilled := int64(metricstest.Value(t, g, "tailsift_buffer_spilled_bytes", nil))
	memory := int64(metricstest.Value(t, g, "tailsift_buffer_memory_bytes", nil))
	p.spilled, p.memory = max(p.spilled, spilled), max(p.memory, memory)
	p.buffered = max(p.buffered, spilled+memory)
	p.heap = max(p.heap, int64(metricstest.Value(t, g, "go_memstats_heap_inuse_bytes", nil)))
}

// memProc is one "sampler run" process whose memory a test watches.
type memProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	admin  string
	hc     *http.Client
	stderr otlptest.SyncBuffer
	exited chan struct{}
}

// startMemProc starts "sampler run" with one node, no OTLP/HTTP, the
// admin endpoint on admin and args, waits until it is ready, and kills it
// when the test ends (logging its stderr if the test failed).
func startMemProc(t *testing.T, bin, admin string, args ...string) *memProc {
	t.Helper()
	p := &memProc{t: t, admin: admin, hc: &http.Client{Timeout: 2 * time.Second}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"run", "--otlp-http", "", "--cluster-bind", "", "--admin", admin}, args...)...)
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("sampler stderr:\n%s", p.stderr.String())
		}
	})
	waitReadyz(t, p.hc, admin)
	return p
}

// watch samples the process's memory and buffer every 250 ms until the
// returned stop is called, which returns the peaks.
func (p *memProc) watch() (stop func() spillPeaks) {
	var peak spillPeaks
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				peak.sample(p.t, p.hc, p.admin, p.cmd.Process.Pid)
			}
		}
	}()
	return func() spillPeaks {
		close(done)
		wg.Wait()
		select {
		case <-p.exited:
			p.t.Fatalf("the sampler exited during the load:\n%s", p.stderr.String())
		default:
		}
		return peak
	}
}

// benchJSON runs "sampler bench" with args (plus --no-progress --json)
// and returns its result, logging its report.
func benchJSON(t *testing.T, bin string, timeout time.Duration, args ...string) *bench.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(append([]string{"bench"}, args...), "--no-progress", "--json")...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("sampler bench: %v (after %v)\nstderr:\n%s", err, time.Since(t0).Round(time.Millisecond), errOut.String())
	}
	var res bench.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("bench --json output does not parse: %v\n%s", err, out.String())
	}
	var text bytes.Buffer
	res.WriteText(&text)
	t.Logf("bench took %v:\n%s", time.Since(t0).Round(time.Millisecond), text.String())
	return &res
}

// waitReadyz waits for the admin endpoint's /readyz to answer 200.
func waitReadyz(t *testing.T, hc *http.Client, admin string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _ := httpGet(hc, "http://"+admin+"/readyz"); code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sampler at %s not ready after 20s", admin)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
