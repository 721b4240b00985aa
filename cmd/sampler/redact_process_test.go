package main

import (
	"bytes"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/metricstest"
	"github.com/tailsift/tailsift/internal/otlptest"
)

// The secrets of a --forward URL (issue 11, item 8).
const (
	secretUser     = "alice-forwarder"
	secretPassword = "s3cret-Passw0rd"
	secretAPIKey   = "t0ps3cret-apikey"
)

func checkNoSecrets(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range []string{secretUser, secretPassword, secretAPIKey} {
		if strings.Contains(text, s) {
			t.Errorf("%s shows %q:\n%s", what, s, text)
		}
	}
}

// A sampler started with user, password and an API key in its --forward
// URL shows none of them: not in its log (the start-up line shows the
// redacted URL), not in /debug/pprof/cmdline, not in the lines it writes
// while the backend is unreachable and at shutdown.
func TestForwardSecretsRedacted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildSampler(t)
	_, backendPort, _ := strings.Cut(freePort(t), ":") // nobody listens: every export fails
	forward := "https://" + secretUser + ":" + secretPassword + "@127.0.0.1:" + backendPort +
		"/v1/traces?api_key=" + secretAPIKey + "&tenant=acme"
	redacted := "https://REDACTED@127.0.0.1:" + backendPort + "/v1/traces?api_key=REDACTED&tenant=acme"
	httpAddr, adminAddr := freePort(t), freePort(t)
	cmd := exec.Command(bin, "run", "--otlp-grpc", freePort(t), "--otlp-http", httpAddr, "--admin", adminAddr,
		"--cluster-bind", "", "--forward", forward, "--root-wait", "100ms", "--shutdown-timeout", "2s")
	var stderr otlptest.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(stderr.String(), "sampler started"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no start-up line within 60s:\n%s", stderr.String())
		}
	}
	if !strings.Contains(stderr.String(), `forward="`+redacted+`"`) {
		t.Errorf("the start-up line does not show the redacted forward URL %s:\n%s", redacted, stderr.String())
	}

	hc := &http.Client{Timeout: 10 * time.Second}
	code, body := httpGet(hc, "http://"+adminAddr+"/debug/pprof/cmdline")
	args := strings.Split(string(body), "\x00")
	if code != http.StatusOK || !strings.HasSuffix(args[0], "sampler") || !strings.Contains(string(body), "\x00--forward\x00"+redacted+"\x00") {
		t.Errorf("/debug/pprof/cmdline: %d %q; want the command line with --forward %s", code, args, redacted)
	}
	checkNoSecrets(t, "/debug/pprof/cmdline", string(body))

	// A kept trace, which the exporter fails to send until shutdown.
	resp, err := hc.Post("http://"+httpAddr+"/v1/traces", "application/json", strings.NewReader(errorTrace))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if g, err := scrapeMetrics(hc, adminAddr); err == nil && metricstest.Value(t, g, "tailsift_decision_spans_kept_total", nil) == 1 {
			break // kept; the exporter is failing to send it
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trace was not kept within 60s:\n%s", stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cmd.Wait() // exit 1: the trace could not be exported
	if !strings.Contains(stderr.String(), `msg="shutdown incomplete"`) {
		t.Errorf("no line on the failed export at shutdown:\n%s", stderr.String())
	}
	checkNoSecrets(t, "the log", stderr.String())
}

// Configurations that fail validation quote the forward URL in their
// error; the secrets are redacted there too.
func TestForwardSecretsRedactedInErrors(t *testing.T) {
	for _, forward := range []string{
		"https://" + secretUser + ":" + secretPassword + "@collector:notaport/v1/traces?api_key=" + secretAPIKey,
		secretUser + ":" + secretPassword + "@collector:4317", // userinfo in a gRPC address
	} {
		var out, errb bytes.Buffer
		code := run([]string{"run", "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "", "--admin", "", "--cluster-bind", "", "--forward", forward}, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), "forward (--forward)") || !strings.Contains(errb.String(), "REDACTED") {
			t.Errorf("--forward %s: exit %d, %q; want 2 and an error on forward, redacted", forward, code, errb.String())
		}
		checkNoSecrets(t, "the error", errb.String())
	}
}
