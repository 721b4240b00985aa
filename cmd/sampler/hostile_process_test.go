package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/rawcodec"
)

// Hostile clients against a real sampler process (issue 11: no request,
// trace or backend can take a node down or stall it). Each case of
// TestHostileProcess runs one node with the settings below, ordinary
// traffic from `sampler bench` (OTLP/gRPC, with a completeness-checking
// sink) and from the OpenTelemetry Go SDK (OTLP/HTTP), and one hostile
// load held for hostileHold while the ordinary traffic goes on. For every
// case:
//
//   - the node stays up and answers /healthz;
//   - its resident memory (VmRSS, sampled every 200 ms) stays within
//     memory_limit x 1.5 + hostileRSSConstant;
//   - ordinary traffic keeps flowing: requests of both protocols are
//     accepted during the attack, the bench gives up no request (it
//     retries refusals for 10 s, as an SDK would) and the SDK loses no span;
//   - the accounting adds up: every span the clients had acknowledged was
//     accepted, and every accepted span was sent or dropped by a policy;
//     kept traces reached the sink whole; nothing is left in the in-flight
//     budget.
//
// A case is one row of hostileCases: a name, flags, the attack (started
// once the ordinary traffic flows, stopped after hostileHold), and its own
// checks: hostileCases here (connections, streams, stalled uploads),
// payloadCases in hostile_payload_test.go (an amplification request, a
// trace with 100,000 resources, 5 MB spans, a backend answering
// Retry-After: 0).
const (
	hostileMemoryLimit = 64 << 20
	hostileMaxRequest  = 4 << 20
	// The in-flight budget, memory_limit / 4 = 16 MiB (set: the default
	// would make room for four gRPC uploads, 20.4 MiB): three gRPC uploads
	// of max_request_size + 96 KiB at once, one of them on connections that
	// had no request accepted yet (they share half); HTTP requests may
	// hold all but one gRPC upload's room, 11.9 MiB.
	hostileInflight = hostileMemoryLimit / 4

	// hostileRSSConstant is what the node may hold beyond memory_limit x
	// 1.5. It is the fixed headroom of the node's own Go memory limit
	// (go_memory_limit defaults to memory_limit x 1.5 + 256 MiB, which the
	// GC defends), and it holds what is live beyond the buffer and the
	// in-flight budget (memory_limit + memory_limit / 4 = 80 MiB here),
	// with room to spare:
	//   - connections: 1024 per listener (max_connections), about 20 KiB
	//     each when idle and under 64 KiB busy (gRPC's 32 KiB read buffer,
	//     three goroutines): under 128 MiB for both listeners;
	//   - what the budget does not count: request goroutines and pooled
	//     buffers, export and decision state: tens of MiB;
	//   - the Go runtime, the binary's pages (VmRSS counts them): 30 MiB.
	hostileRSSConstant = 256 << 20
	hostileRSSBound    = hostileMemoryLimit*3/2 + hostileRSSConstant

	// hostileHold is how long an attack is held at full strength. The
	// ordinary traffic runs hostileTraffic, long enough to start before
	// the attack and go on after it on a busy machine.
	hostileHold    = 8 * time.Second
	hostileTraffic = 30 * time.Second
)

// A hostileCase is one kind of hostile input.
type hostileCase struct {
	name string
	args []string // more flags for the node
	// attack starts the hostile load and returns once it is in full swing;
	// stop ends it and releases the client side. It runs beside the
	// ordinary traffic: report problems with h.errorf, not t.Fatal.
	attack func(h *hostileRun) (stop func())
	// prepare, if set, builds what the attack sends before the node and
	// the ordinary traffic start: on a loaded machine building megabytes
	// of requests takes seconds the hold cannot spare.
	prepare func(h *hostileRun)
	// check, if set, looks at the node's metrics (scraped after the
	// drain) and at what the attack recorded.
	check func(t *testing.T, h *hostileRun, g prometheus.Gatherer)
	// backend, if set, starts what the node forwards to (a misbehaving
	// backend, say) and returns its address; it should pass kept traces
	// on to the bench's sink at h.sinkAddr, or the completeness check fails.
	backend func(h *hostileRun) string
	// failed is how many spans the node must count failed at export (a
	// span too big for any request); the accounting expects exactly that.
	failed int64
}

var hostileCases = []hostileCase{
	{
		name: "10k gRPC connections",
		attack: func(h *hostileRun) func() {
			// The HTTP/2 client preface and an empty SETTINGS frame: what a
			// gRPC client sends first. The connections then stay idle.
			return h.connFlood(h.grpcAddr, 10_000, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
		},
		check: func(t *testing.T, h *hostileRun, g prometheus.Gatherer) {
			h.checkConnectionCap(t, g, "grpc")
		},
	},
	{
		name: "10k HTTP connections",
		attack: func(h *hostileRun) func() {
			// Headers that never end (slowloris).
			return h.connFlood(h.httpAddr, 10_000, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n")
		},
		check: func(t *testing.T, h *hostileRun, g prometheus.Gatherer) {
			h.checkConnectionCap(t, g, "http")
		},
	},
	{
		name:   "10k gRPC streams stalled mid-upload",
		attack: func(h *hostileRun) func() { return h.streamFlood(100, 100) },
		check: func(t *testing.T, h *hostileRun, g prometheus.Gatherer) {
			refused := mval(g, "tailsift_ingest_requests_refused_total", "protocol", "grpc", "reason", "inflight_bytes")
			stalled := mval(g, "tailsift_ingest_requests_refused_total", "protocol", "grpc", "reason", "stalled")
			// Calls still queued behind a connection that stalled never
			// reach the node; they end Canceled when the attack stops.
			t.Logf("calls: %d refused by the budget, %d cancelled, %d other (%v); node: %.0f streams refused, %.0f stopped as stalled",
				h.streams.exhausted.Load(), h.streams.canceled.Load(), h.streams.other.Load(), h.streams.otherErr.Load(), refused, stalled)
			// The stalled uploads hold at most the half of the budget new
			// connections share; whether they are stopped depends on
			// whether more streams come after they count as stalled.
			if refused < 5_000 {
				t.Errorf("the node refused %.0f streams: want thousands refused at once", refused)
			}
		},
	},
	{
		name:   "2k HTTP requests stalled mid-upload",
		attack: func(h *hostileRun) func() { return h.bodyFlood(2_000, hostileMaxRequest, 1<<20) },
		check: func(t *testing.T, h *hostileRun, g prometheus.Gatherer) {
			refused := mval(g, "tailsift_ingest_requests_refused_total", "protocol", "http", "reason", "inflight_bytes")
			stalled := mval(g, "tailsift_ingest_requests_refused_total", "protocol", "http", "reason", "stalled")
			t.Logf("node: %.0f HTTP requests refused by the budget, %.0f stopped as stalled", refused, stalled)
			if refused == 0 {
				t.Errorf("no HTTP request refused by the budget: the attack did not fill it")
			}
		},
	},
}

// TestHostileProcess runs every hostile case against its own node.
func TestHostileProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and attacks it")
	}
	// 10,000 connections on the client side: raise the soft limit to the
	// hard one, and that to 12,000 if it is lower (which needs
	// CAP_SYS_RESOURCE, which containers often drop; CI runs as root). The node inherits the limit; it holds at most
	// max_connections per listener.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = max(lim.Max, 12_000) // above the hard limit only as root
	lim.Max = lim.Cur
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("RLIMIT_NOFILE cannot be raised to %d (%v): 10,000 connections need 12,000", lim.Cur, err)
	}
	bin := buildSampler(t)
	for _, c := range append(hostileCases, payloadCases...) {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) { runHostile(t, bin, c) })
	}
}

// hostileRun is one case's node and clients.
type hostileRun struct {
	t                           *testing.T
	grpcAddr, httpAddr, admin   string
	sinkAddr                    string
	cmd                         *exec.Cmd
	stderr                      otlptest.SyncBuffer
	exited                      chan struct{}
	hc                          *http.Client
	mu                          sync.Mutex
	errs                        []string
	peak                        hostilePeaks
	established, attemptedConns atomic.Int64 // connFlood's
	streams                     streamOutcomes
	attack                      attackCounts      // the payload attacks' requests
	payloads                    map[string][]byte // built by the case's prepare
	backend                     *flakyBackend
}

type hostilePeaks struct {
	rss, anon          int64
	inflight, requests float64
	conns              map[string]float64
}

type streamOutcomes struct {
	exhausted, canceled, other atomic.Int64
	otherErr                   atomic.Value // an example
}

// errorf records a failure from a goroutine other than the test's.
func (h *hostileRun) errorf(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.errs = append(h.errs, fmt.Sprintf(format, args...))
}

func runHostile(t *testing.T, bin string, c hostileCase) {
	h := &hostileRun{t: t, grpcAddr: freePort(t), httpAddr: freePort(t), admin: freePort(t), sinkAddr: freePort(t),
		exited: make(chan struct{}), hc: &http.Client{Timeout: 2 * time.Second}}
	h.peak.conns = map[string]float64{}
	if c.prepare != nil {
		c.prepare(h)
	}
	forward := h.sinkAddr
	if c.backend != nil {
		forward = c.backend(h)
	}
	args := append([]string{"run", "--otlp-grpc", h.grpcAddr, "--otlp-http", h.httpAddr, "--admin", h.admin,
		"--cluster-bind", "", "--forward", forward, "--memory-limit", strconv.Itoa(hostileMemoryLimit),
		"--max-request-size", strconv.Itoa(hostileMaxRequest), "--max-inflight-bytes", strconv.Itoa(hostileInflight),
		"--decision-wait", "3s", "--root-wait", "1s"}, c.args...)
	h.cmd = exec.Command(bin, args...)
	h.cmd.Stderr = &h.stderr
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.cmd.Wait(); close(h.exited) }()
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		<-h.exited
		if t.Failed() {
			t.Logf("sampler stderr (last 8 KiB):\n%s", tail(h.stderr.String(), 8<<10))
		}
	})
	waitReadyz(t, h.hc, h.admin)

	stopWatch := h.watch()
	sdk := startSDKTraffic(t, h.httpAddr)
	attacked := make(chan hostileWindow, 1)
	go func() { attacked <- h.attackWhileTrafficFlows(c, sdk) }()
	res := benchJSON(t, bin, hostileTraffic+3*time.Minute,
		"--target", h.grpcAddr, "--target-admin", h.admin, "--sink-listen", h.sinkAddr,
		"--rate", "2000", "--duration", hostileTraffic.String(), "--seed", "3", "--quiet", "8s", "--drain", "60s")
	win := <-attacked
	sdkOK, sdkFailed := sdk.stop(t) // stopped already: while the bench's sink still takes the node's exports
	g := h.settle(t)
	stopWatch()

	for _, e := range h.errs {
		t.Error(e)
	}
	t.Logf("peaks: VmRSS %d MiB (bound %d MiB), RssAnon %d MiB, in-flight %.1f MiB and %.0f requests, connections %v",
		h.peak.rss>>20, int64(hostileRSSBound)>>20, h.peak.anon>>20, h.peak.inflight/(1<<20), h.peak.requests, h.peak.conns)
	t.Logf("the attack took %v to build up; while it was held, %d gRPC requests and %d SDK spans were accepted",
		win.buildUp.Round(time.Millisecond), win.grpcOK, win.sdkOK)

	// The node stayed up.
	if code, _ := httpGet(h.hc, "http://"+h.admin+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz answered %d after the attack", code)
	}
	// Its memory stayed within the bound.
	if h.peak.rss == 0 || h.peak.rss > hostileRSSBound {
		t.Errorf("peak VmRSS %d MiB, want at most memory_limit x 1.5 + %d MiB = %d MiB",
			h.peak.rss>>20, hostileRSSConstant>>20, int64(hostileRSSBound)>>20)
	}
	if h.peak.inflight > hostileInflight {
		t.Errorf("in-flight bytes peaked at %.0f, over max_inflight_bytes %d", h.peak.inflight, hostileInflight)
	}
	// Ordinary traffic kept flowing, during the attack and overall.
	if !win.held {
		t.Errorf("the attack was not held while the ordinary traffic ran: the test did not test what it says")
	}
	if win.grpcOK == 0 || win.sdkOK == 0 {
		t.Errorf("during the attack %d gRPC requests and %d SDK spans were accepted: want both to flow", win.grpcOK, win.sdkOK)
	}
	if res.SpansRefused != 0 || res.SpansSent != int64(res.SpansScheduled) {
		t.Errorf("the bench had %d of %d spans accepted, gave up %d (after %d retries)", res.SpansSent, res.SpansScheduled, res.SpansRefused, res.Retries)
	}
	if sdkFailed != 0 || sdkOK == 0 {
		t.Errorf("the SDK exported %d spans and failed %d", sdkOK, sdkFailed)
	}
	s := res.Sink
	if s.Complete == 0 || s.Completeness() != 1 || s.Fragmented != 0 || s.Duplicated != 0 {
		t.Errorf("kept traces not intact: completeness %.4f, complete %d, fragmented %d, duplicated %d",
			s.Completeness(), s.Complete, s.Fragmented, s.Duplicated)
	}
	// The accounting adds up.
	h.checkAccounting(t, g, res.SpansSent+sdkOK+h.attack.spans.Load(), c.failed)
	if c.check != nil {
		c.check(t, h, g)
	}
}

// hostileWindow is what ordinary traffic achieved while the attack was held.
type hostileWindow struct {
	held          bool // the attack was held while the bench still sent
	buildUp       time.Duration
	grpcOK, sdkOK int64
}

// attackWhileTrafficFlows waits for both ordinary clients' spans to
// arrive, runs the attack for hostileHold and measures the ordinary
// traffic accepted meanwhile. It stops the SDK's traffic a little after
// the attack, well before the bench stops, so that the SDK's kept traces
// are exported while the bench's sink still listens.
func (h *hostileRun) attackWhileTrafficFlows(c hostileCase, sdk *sdkTraffic) hostileWindow {
	deadline := time.Now().Add(30 * time.Second)
	for {
		g, err := scrapeMetrics(h.hc, h.admin)
		if err == nil && mval(g, "tailsift_ingest_spans_received_total", "protocol", "grpc") > 0 && sdk.ok.Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			h.errorf("ordinary traffic did not start within 30s")
			return hostileWindow{}
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	stop := c.attack(h)
	buildUp := time.Since(start)
	grpc0, sdk0 := h.grpcOK(), sdk.ok.Load()
	time.Sleep(hostileHold)
	grpc1, sdk1 := h.grpcOK(), sdk.ok.Load()
	stop()
	time.Sleep(2 * time.Second)
	sdk.stop(h.t)
	// The bench sends for hostileTraffic from about when the node first
	// saw its spans.
	return hostileWindow{held: time.Since(start) < hostileTraffic-5*time.Second, buildUp: buildUp,
		grpcOK: grpc1 - grpc0, sdkOK: sdk1 - sdk0}
}

// grpcOK is the node's count of accepted OTLP/gRPC requests (-1 if the
// scrape failed).
func (h *hostileRun) grpcOK() int64 {
	for range 20 {
		if g, err := scrapeMetrics(h.hc, h.admin); err == nil {
			return int64(mval(g, "tailsift_ingest_requests_total", "protocol", "grpc", "outcome", "ok"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.errorf("the admin endpoint did not answer for 2s")
	return -1
}

// watch samples the node's memory and limits every 200 ms until the
// returned stop is called; it records the node's exit as a failure.
func (h *hostileRun) watch() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-h.exited:
				h.errorf("the sampler exited under attack: %v", h.cmd.ProcessState)
				return
			case <-tick.C:
				h.sample()
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

func (h *hostileRun) sample() {
	rss, anon := procMemory(h.cmd.Process.Pid)
	g, err := scrapeMetrics(h.hc, h.admin)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.peak.rss, h.peak.anon = max(h.peak.rss, rss), max(h.peak.anon, anon)
	if err != nil {
		return // busy; the next sample will do
	}
	h.peak.inflight = max(h.peak.inflight, mval(g, "tailsift_ingest_inflight_bytes"))
	h.peak.requests = max(h.peak.requests, mval(g, "tailsift_ingest_inflight_requests"))
	for _, p := range []string{"grpc", "http"} {
		h.peak.conns[p] = max(h.peak.conns[p], mval(g, "tailsift_ingest_connections", "protocol", p))
	}
}

// procMemory reads VmRSS and RssAnon of a process, in bytes.
func procMemory(pid int) (rss, anon int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "RssAnon:":
			anon = kb << 10
		}
	}
	return rss, anon
}

// settle waits until the node holds nothing: no span buffered or pending
// export, nothing in the in-flight budget, no request in progress; and
// returns its metrics then.
func (h *hostileRun) settle(t *testing.T) prometheus.Gatherer {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		g, err := scrapeMetrics(h.hc, h.admin)
		if err == nil && mval(g, "tailsift_buffer_spans") == 0 && mval(g, "tailsift_export_spans_pending") == 0 &&
			mval(g, "tailsift_ingest_inflight_bytes") == 0 && mval(g, "tailsift_ingest_inflight_requests") == 0 {
			return g
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("the node did not settle in 90s: %v", err)
			}
			t.Errorf("the node did not settle in 90s: buffered %.0f, pending %.0f, in-flight %.0f bytes and %.0f requests",
				mval(g, "tailsift_buffer_spans"), mval(g, "tailsift_export_spans_pending"),
				mval(g, "tailsift_ingest_inflight_bytes"), mval(g, "tailsift_ingest_inflight_requests"))
			return g
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkAccounting checks the node's identities on its settled metrics:
// what the clients had acknowledged is what the node accepted, and every
// accepted span was sent, dropped by a policy, or (exactly wantFailed of
// them) failed at export.
func (h *hostileRun) checkAccounting(t *testing.T, g prometheus.Gatherer, acknowledged, wantFailed int64) {
	t.Helper()
	client := mval(g, "tailsift_cluster_received_spans_total", "source", "client")
	received, refused := mval(g, "tailsift_ingest_spans_received_total"), mval(g, "tailsift_ingest_spans_refused_total")
	accepted, kept := mval(g, "tailsift_decision_spans_accepted_total"), mval(g, "tailsift_decision_spans_kept_total")
	dropped, buffered := mval(g, "tailsift_decision_spans_dropped_total"), mval(g, "tailsift_buffer_spans")
	sent, failed := mval(g, "tailsift_export_spans_sent_total"), mval(g, "tailsift_export_spans_failed_total")
	t.Logf("accounting: clients acknowledged %d; ingest received %.0f, refused %.0f; accepted %.0f = kept %.0f + dropped %.0f + buffered %.0f; sent %.0f, failed %.0f",
		acknowledged, received, refused, accepted, kept, dropped, buffered, sent, failed)
	if client != float64(acknowledged) || received-refused != client || accepted != client {
		t.Errorf("spans acknowledged to clients %d, from clients %.0f, received-refused %.0f, accepted %.0f: want all equal",
			acknowledged, client, received-refused, accepted)
	}
	if accepted != kept+dropped+buffered || sent+failed != kept || failed != float64(wantFailed) {
		t.Errorf("accepted %.0f != kept %.0f + dropped %.0f + buffered %.0f, or sent %.0f + failed %.0f != kept, or failed != %d",
			accepted, kept, dropped, buffered, sent, failed, wantFailed)
	}
}

// checkConnectionCap: the flood reached the listener's cap, and the node
// held no more connections than max_connections.
func (h *hostileRun) checkConnectionCap(t *testing.T, g prometheus.Gatherer, proto string) {
	t.Helper()
	h.mu.Lock()
	peak := h.peak.conns[proto]
	h.mu.Unlock()
	full := mval(g, "tailsift_ingest_connection_limit_reached_total", "protocol", proto)
	t.Logf("%d of %d connections established (the rest found the kernel's accept queue full); the node held at most %.0f, and was full %.0f times",
		h.established.Load(), h.attemptedConns.Load(), peak, full)
	if peak > 1024 || full == 0 || h.established.Load() < 1024 {
		t.Errorf("%s connections: node peak %.0f, listener full %.0f times, %d established: want the 1024 cap reached and held",
			proto, peak, full, h.established.Load())
	}
}

// connFlood opens n connections to addr at once, writes hello on each and
// keeps them open until stop. Connections the node has not accepted wait
// in the kernel's accept queue; past it, dials time out.
func (h *hostileRun) connFlood(addr string, n int, hello string) (stop func()) {
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	sem := make(chan struct{}, 1000)
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			h.attemptedConns.Add(1)
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return
			}
			c.SetWriteDeadline(time.Now().Add(3 * time.Second))
			c.Write([]byte(hello))
			h.established.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
}

// streamFlood opens conns gRPC connections with streams Export calls on
// each, at once; each call sends a max_request_size message, and each
// connection stalls after 3 MiB: most streams are refused at once, and the
// few admitted hold the budget until others need it.
func (h *hostileRun) streamFlood(conns, streams int) (stop func()) {
	body := make([]byte, hostileMaxRequest-1024) // junk: it never arrives whole
	var all []*grpc.ClientConn
	var stallers []*otlptest.StallingConn
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var started atomic.Int64
	for range conns {
		cc, err := grpc.NewClient("passthrough:///"+h.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
				if err != nil {
					return nil, err
				}
				s := otlptest.NewStallingConn(c, 3<<20)
				mu.Lock()
				stallers = append(stallers, s)
				mu.Unlock()
				return s, nil
			}))
		if err != nil {
			h.errorf("grpc.NewClient: %v", err)
			break
		}
		all = append(all, cc)
		for range streams {
			wg.Go(func() {
				started.Add(1)
				var resp []byte
				err := cc.Invoke(ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export", &body, &resp,
					grpc.ForceCodecV2(rawcodec.Codec{}))
				switch status.Code(err) {
				case codes.ResourceExhausted:
					h.streams.exhausted.Add(1)
				case codes.Canceled:
					h.streams.canceled.Add(1)
				default:
					h.streams.other.Add(1)
					h.streams.otherErr.Store(fmt.Sprint(err))
				}
			})
		}
	}
	// In full swing once every call has been made and most have been
	// answered (the rest hold the budget, stalled).
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if started.Load() == int64(conns*streams) && h.streams.exhausted.Load() >= int64(conns*streams)/2 {
			break
		}
	}
	return func() {
		cancel()
		mu.Lock()
		for _, s := range stallers {
			s.Close()
		}
		mu.Unlock()
		for _, cc := range all {
			cc.Close()
		}
		wg.Wait()
	}
}

// bodyFlood sends n OTLP/HTTP requests at once, each announcing size bytes
// and sending sent of them, then stalling until stop.
func (h *hostileRun) bodyFlood(n, size, sent int) (stop func()) {
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	sem := make(chan struct{}, 500)
	part := make([]byte, sent)
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", h.httpAddr, 3*time.Second)
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			c.SetWriteDeadline(time.Now().Add(3 * time.Second))
			fmt.Fprintf(c, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n", size)
			c.Write(part) // refused ones are closed by the node midway
		})
	}
	wg.Wait()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
}

// sdkTraffic is the OpenTelemetry Go SDK exporting over OTLP/HTTP: a
// trace of three spans every 20 ms.
type sdkTraffic struct {
	tp         *sdktrace.TracerProvider
	ok, failed atomic.Int64 // spans
	done       chan struct{}
	wg         sync.WaitGroup
	once       sync.Once
}

func startSDKTraffic(t *testing.T, addr string) *sdkTraffic {
	t.Helper()
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(addr), otlptracehttp.WithInsecure(),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: 100 * time.Millisecond,
			MaxInterval: 2 * time.Second, MaxElapsedTime: 2 * time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	s := &sdkTraffic{done: make(chan struct{})}
	s.tp = sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(&countingExporter{SpanExporter: exp, s: s}, sdktrace.WithBatchTimeout(100*time.Millisecond)),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName("hostile-test-sdk"))))
	tr := s.tp.Tracer("hostile")
	s.wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-tick.C:
				ctx, root := tr.Start(ctx, "GET /checkout")
				_, a := tr.Start(ctx, "SELECT orders")
				a.End()
				_, b := tr.Start(ctx, "POST /pay")
				b.End()
				root.End()
			}
		}
	})
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop ends the traffic, flushes what the SDK holds and returns the spans
// exported and failed.
func (s *sdkTraffic) stop(t *testing.T) (ok, failed int64) {
	s.once.Do(func() {
		close(s.done)
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := s.tp.Shutdown(ctx); err != nil {
			t.Errorf("SDK shutdown: %v", err)
		}
	})
	return s.ok.Load(), s.failed.Load()
}

// countingExporter counts the spans its exporter had acknowledged, and
// those it gave up on.
type countingExporter struct {
	sdktrace.SpanExporter
	s *sdkTraffic
}

func (c *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := c.SpanExporter.ExportSpans(ctx, spans)
	if err != nil {
		c.s.failed.Add(int64(len(spans)))
		return err
	}
	c.s.ok.Add(int64(len(spans)))
	return nil
}

// mval sums the series of name whose labels include the given pairs.
func mval(g prometheus.Gatherer, name string, labelPairs ...string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labelPairs); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labelPairs[i] && l.GetValue() == labelPairs[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return sum
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
