package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlptest"
)

// mountLoop makes an ext4 file system of size bytes in a file, mounts it
// on a new directory and returns the directory; unfrozen and unmounted at
// cleanup. Needs root (CI runs as root).
func mountLoop(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a loop file system; CI runs the tests as root")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	for _, cmd := range [][]string{{"mkfs.ext4", "-q", "-F", img}, {"mount", "-o", "loop", img, mnt}} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("fsfreeze", "-u", mnt).Run() // not frozen: an error, ignored
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// postSpans sends one OTLP/HTTP request of realistic spans and returns
// the status, the Retry-After header and the time the answer took. Each
// request's resources are its own (a pod UID from seed), as a fleet's
// short-lived pods make them.
func postSpans(t *testing.T, httpAddr string, seed uint64) (int, string, time.Duration) {
	t.Helper()
	req := otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(seed, 1)))
	for i, rs := range req.ResourceSpans {
		rs.Resource.Attributes = append(rs.Resource.Attributes, otlptest.Str("k8s.pod.uid", fmt.Sprintf("%d-%d", seed, i)))
	}
	body, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 60 * time.Second}
	start := time.Now()
	resp, err := hc.Post("http://"+httpAddr+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /v1/traces: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(start)
}

// readyz returns /readyz's status and body.
func readyz(admin string) (int, string) {
	code, body := httpGet(&http.Client{Timeout: 2 * time.Second}, "http://"+admin+"/readyz")
	return code, string(body)
}

// TestDiskProcess runs a sampler with durability wal on a real file
// system of its own, then makes the disk misbehave.
func TestDiskProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sampler and mounts file systems")
	}
	bin := buildSampler(t)

	// A disk that stops answering (fsfreeze blocks every write and sync):
	// requests are refused retryably within about disk_timeout, /readyz
	// says why, and SIGTERM ends the process within its shutdown timeout.
	// Thawed, the node recovers what it acknowledged before.
	t.Run("hung", func(t *testing.T) {
		mnt := mountLoop(t, 256<<20)
		httpAddr, admin := freePort(t), freePort(t)
		args := []string{"--data-dir", filepath.Join(mnt, "data"), "--durability", "wal", "--disk-timeout", "2s",
			"--shutdown-timeout", "5s", "--otlp-grpc", "", "--otlp-http", httpAddr, "--admin", admin, "--cluster-bind", "",
			"--forward", "file:" + filepath.Join(t.TempDir(), "kept.jsonl"), "--decision-wait", "1h", "--root-wait", "1h"}
		p := &clusterProc{name: "sampler", admin: admin}
		startProc(t, bin, p, args...)
		waitProc(t, p, "ready", func() bool { code, _ := readyz(admin); return code == http.StatusOK })
		if code, _, _ := postSpans(t, httpAddr, 1); code != http.StatusOK {
			t.Fatalf("before the freeze: status %d", code)
		}
		g, err := scrapeMetrics(&http.Client{Timeout: 2 * time.Second}, admin)
		if err != nil {
			t.Fatal(err)
		}
		acked := metricstest.Value(t, g, "tailsift_decision_spans_accepted_total", nil)

		if out, err := exec.Command("fsfreeze", "-f", mnt).CombinedOutput(); err != nil {
			t.Fatalf("fsfreeze: %v\n%s", err, out)
		}
		// Thawed before startProc's cleanup waits for the process: a
		// thread blocked on the frozen disk keeps it from being reaped.
		t.Cleanup(func() { exec.Command("fsfreeze", "-u", mnt).Run() })
		code, retryAfter, took := postSpans(t, httpAddr, 2)
		if (code != http.StatusTooManyRequests && code != http.StatusServiceUnavailable) || retryAfter == "" {
			t.Errorf("a request to a node whose disk hangs: status %d, Retry-After %q; want a retryable refusal", code, retryAfter)
		}
		if took > 20*time.Second {
			t.Errorf("the refusal took %v; disk_timeout is 2s", took)
		}
		waitProc(t, p, "not ready", func() bool {
			code, body := readyz(admin)
			return code == http.StatusServiceUnavailable && strings.Contains(body, "disk")
		})
		// SIGTERM: the sampler gives up on the disk at its shutdown
		// timeout and exits. A thread still inside an fsync cannot leave
		// the kernel until the disk answers (no process can), so the
		// process is a zombie until the thaw: exited, not yet reaped.
		start := time.Now()
		p.cmd.Process.Signal(syscall.SIGTERM)
		pid := p.cmd.Process.Pid
		exited := func() bool {
			select {
			case <-p.done:
				return true
			default:
			}
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
			return err == nil && len(fields) > 0 && fields[0] == "Z"
		}
		for !exited() {
			if time.Since(start) > 20*time.Second {
				t.Fatalf("no exit within 20s of SIGTERM with --shutdown-timeout 5s and a hung disk")
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("SIGTERM to exit with the disk frozen: %v; a refused request took %v", time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
		if out, err := exec.Command("fsfreeze", "-u", mnt).CombinedOutput(); err != nil {
			t.Fatalf("fsfreeze -u: %v\n%s", err, out)
		}
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			t.Fatal("the exited sampler was not reaped within 30s of the thaw")
		}
		if !strings.Contains(p.stderr.String(), "shutdown incomplete") && !strings.Contains(p.stderr.String(), "msg=stopped") {
			t.Errorf("the sampler's log does not say how its shutdown ended:\n%s", p.stderr.String())
		}
		again := &clusterProc{name: "restarted", admin: admin}
		startProc(t, bin, again, args...)
		waitProc(t, again, "ready", func() bool { code, _ := readyz(admin); return code == http.StatusOK })
		g, err = scrapeMetrics(&http.Client{Timeout: 2 * time.Second}, admin)
		if err != nil {
			t.Fatal(err)
		}
		if r := metricstest.Value(t, g, "tailsift_decision_spans_recovered_total", nil); r < acked {
			t.Errorf("recovered %.0f spans after the thaw; %.0f were acknowledged before the freeze", r, acked)
		}
		again.stop(t)
	})

	// A data directory at disk_limit: requests are refused with 429 and
	// Retry-After and /readyz says so; every request carries resources
	// of its own (as per-pod resources do), and once the buffered traces
	// are decided the log frees its segments and the node takes spans
	// again, without a restart.
	t.Run("full", func(t *testing.T) {
		httpAddr, admin := freePort(t), freePort(t)
		args := []string{"--data-dir", t.TempDir(), "--durability", "wal", "--disk-limit", "64MiB",
			"--otlp-grpc", "", "--otlp-http", httpAddr, "--admin", admin, "--cluster-bind", "",
			// Traces wait 30s for their decision: the log fills with what
			// arrives in that time, however fast this machine sends.
			"--forward", "file:" + filepath.Join(t.TempDir(), "kept.jsonl"), "--decision-wait", "30s", "--root-wait", "30s",
			"--stress-relief=false"}
		p := &clusterProc{name: "sampler", admin: admin}
		startProc(t, bin, p, args...)
		waitProc(t, p, "ready", func() bool { code, _ := readyz(admin); return code == http.StatusOK })
		var refused int
		var retryAfter string
		seed := uint64(1)
		for ; refused == 0; seed++ {
			if seed > 2000 {
				t.Fatal("400 MB of requests taken without a refusal at a 64 MiB disk_limit")
			}
			code, ra, _ := postSpans(t, httpAddr, seed)
			switch code {
			case http.StatusOK:
			case http.StatusTooManyRequests:
				refused++
				retryAfter = ra
			default:
				t.Fatalf("request %d: status %d, want 200 or 429", seed, code)
			}
		}
		if retryAfter == "" {
			t.Error("429 without Retry-After")
		}
		code, body := readyz(admin)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "full") {
			t.Errorf("readyz at the disk limit: %d %q, want 503 saying the data directory is full", code, body)
		}
		full := time.Now()
		waitProc(t, p, "ready again as decided traces free the log", func() bool { code, _ := readyz(admin); return code == http.StatusOK })
		t.Logf("%d requests taken before the first 429 (Retry-After %s); ready again %v later", seed-2, retryAfter, time.Since(full).Round(time.Millisecond))
		if code, _, _ := postSpans(t, httpAddr, 99999); code != http.StatusOK {
			t.Errorf("after the log freed its segments: status %d, want 200", code)
		}
		g, err := scrapeMetrics(&http.Client{Timeout: 2 * time.Second}, admin)
		if err != nil {
			t.Fatal(err)
		}
		if d := metricstest.Value(t, g, "tailsift_wal_segments_deleted_total", nil); d == 0 {
			t.Error("no write-ahead segment deleted")
		}
		p.stop(t)
	})
}
