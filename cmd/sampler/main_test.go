package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/otlptest"
)

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func buildSampler(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sampler")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

const errorTrace = `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /pay",
"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000","status":{"code":2}}]}]}]}`

// TestRunProcess runs the real binary with its defaults but free ports:
// it accepts OTLP, prints the kept trace to stdout, and on SIGTERM decides,
// flushes and exits 0.
func TestRunProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildSampler(t)
	grpcAddr, httpAddr, adminAddr := freePort(t), freePort(t), freePort(t)
	cmd := exec.Command(bin, "run", "--otlp-grpc", grpcAddr, "--otlp-http", httpAddr, "--admin", adminAddr,
		"--cluster-bind", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0", "--decision-wait", "1m", "--root-wait", "1m")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	var resp *http.Response
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err = http.Post("http://"+httpAddr+"/v1/traces", "application/json", strings.NewReader(errorTrace))
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("sampler never accepted OTLP/HTTP: %v\n%s", err, stderr.String())
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /v1/traces: %d", resp.StatusCode)
	}
	if c, err := net.Dial("tcp", grpcAddr); err != nil {
		t.Fatalf("OTLP/gRPC port not listening: %v", err)
	} else {
		c.Close()
	}
	// Decision waits are a minute: SIGTERM must decide the trace now.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if !strings.Contains(line, `"traceId":"5b8efff798038103d269b633813fc60c"`) || !strings.Contains(line, `"name":"GET /pay"`) {
		t.Fatalf("stdout line %q is not the kept trace\nstderr:\n%s", line, stderr.String())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\nstderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "traces_kept=1") {
		t.Fatalf("final log line missing the accounting:\n%s", stderr.String())
	}
}

func TestRunRejectsBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "sampler.yaml")
	os.WriteFile(badYAML, []byte("otlp_grpc: 127.0.0.1:0\nforwrd: stdout\n"), 0o644)
	badPolicies := filepath.Join(dir, "policies.yaml")
	os.WriteFile(badPolicies, []byte("rules:\n  - name: slow\n    type: latency\n    threshold: 1x\n"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--memory-limit", "lots"}, `invalid size "lots"`},
		{[]string{"run", "--decision-wait", "-1s"}, "decision_wait (--decision-wait) must be positive"},
		{[]string{"run", "--config", badYAML}, "line 2: field forwrd not found"},
		{[]string{"run", "--forward", "ftp://x"}, "forward"},
		{[]string{"run", "--otlp-grpc", "", "--otlp-http", ""}, "no receiver"},
		{[]string{"run", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--admin", "", "--policies", badPolicies}, "policies.yaml:4"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{nil, "usage: sampler"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("sampler %v: exit %d, stderr %q; want non-zero and %q", c.args, code, errb.String(), c.want)
		}
	}
}

func TestConfigFileWithFlagOverride(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sampler.yaml")
	grpcAddr := freePort(t)
	os.WriteFile(path, []byte(fmt.Sprintf("otlp_grpc: %s\notlp_http: \"\"\nadmin: \"\"\ncluster_bind: 127.0.0.1:0\nmemory_limit: 64MiB\ndecision_wait: 1m\n", grpcAddr)), 0o644)
	// The flag wins over the file: with the file's 1m wait the trace would
	// not be decided before the check below.
	var out, errb otlptest.SyncBuffer
	done := make(chan int)
	go func() {
		done <- run([]string{"run", "--config", path, "--decision-wait", "100ms", "--otlp-grpc", grpcAddr}, &out, &errb)
	}()
	// Until it has started (and so handles SIGTERM), however long a busy
	// machine makes that take; the bound only ends a hung test.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(errb.String(), "sampler started"); time.Sleep(10 * time.Millisecond) {
		select {
		case code := <-done:
			t.Fatalf("exited early with %d: %s", code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not started after a minute:\n%s", errb.String())
		}
	}
	if !strings.Contains(errb.String(), "otlp_http=<nil>") {
		t.Fatalf("file's otlp_http: \"\" not applied:\n%s", errb.String())
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a load")
	}
	plot := filepath.Join(t.TempDir(), "bench.png")
	var out, errb bytes.Buffer
	code := run([]string{"bench", "--duration", "2s", "--rate", "2000", "--root-wait", "200ms", "--decision-wait", "3s",
		"--no-progress", "--json", "--plot", plot}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var res struct {
		AchievedRate float64 `json:"achieved_spans_per_s"`
		Sink         struct {
			Complete   int `json:"complete"`
			Fragmented int `json:"fragmented"`
		} `json:"sink"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out.String())
	}
	if res.Sink.Complete == 0 || res.Sink.Fragmented != 0 || res.AchievedRate <= 0 {
		t.Fatalf("report: %+v", res)
	}
	if st, err := os.Stat(plot); err != nil || st.Size() < 1000 {
		t.Fatalf("plot not written: %v", err)
	}

	out.Reset()
	if code := run([]string{"bench", "--protocol", "udp", "--rate", "-5"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "--protocol") || !strings.Contains(errb.String(), "--rate") {
		t.Fatalf("bad flags: exit %d, %s", code, errb.String())
	}
}

// TestSIGHUPReloadsPolicies runs the binary with file polling off: a SIGHUP
// reloads the changed policy file, and an invalid file is rejected while
// the process keeps running.
func TestSIGHUPReloadsPolicies(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildSampler(t)
	path := filepath.Join(t.TempDir(), "policies.yaml")
	os.WriteFile(path, []byte("rules:\n  - name: errors\n    type: error\ndefault: drop\n"), 0o644)
	cmd := exec.Command(bin, "run", "--otlp-grpc", freePort(t), "--otlp-http", "", "--admin", "",
		"--cluster-bind", "", "--policies", path, "--policy-poll", "0")
	var stderr otlptest.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitLog := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if strings.Contains(stderr.String(), want) {
				return
			}
		}
		t.Fatalf("log never said %q:\n%s", want, stderr.String())
	}
	waitLog("sampler started")
	os.WriteFile(path, []byte("rules:\n  - name: errors\n    type: error\n  - name: all\n    type: always\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(`msg="policies reloaded" trigger=SIGHUP`)
	os.WriteFile(path, []byte("rules:\n  - name: errors\n    type: eror\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog("policy reload rejected")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after a rejected reload: %v\n%s", err, stderr.String())
	}
}
