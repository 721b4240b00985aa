package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/internal/capture"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/replay"
	"github.com/tailsift/tailsift/policy"
)

// TestPolicyTestAgainstManifest replays a capture made by the benchmark's
// generator through the example policies and checks every count of the
// report against the generator's manifest.
func TestPolicyTestAgainstManifest(t *testing.T) {
	cfg := workload.DefaultConfig()
	cfg.Seed = 11
	sched, err := workload.Build(cfg, time.Unix(1_700_000_000, 0), 5000, 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "capture.pb")
	var all []byte
	for _, r := range sched.Requests {
		all = append(all, r.Body...)
	}
	if err := os.WriteFile(path, all, 0o644); err != nil {
		t.Fatal(err)
	}

	var out, errb bytes.Buffer
	if code := run([]string{"policy", "test", "--policies", "embedded", "--traces", path, "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep replay.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, out.String())
	}
	// What the example policies must decide, from the manifest.
	want := map[string]replay.RuleStats{}
	add := func(rule string, kept bool, spans int) {
		r := want[rule]
		r.Matched++
		r.Spans += spans
		if kept {
			r.Kept++
			r.KeptSpans += spans
		} else {
			r.Dropped++
		}
		want[rule] = r
	}
	for i := range sched.Manifest.Traces {
		tr := &sched.Manifest.Traces[i]
		switch {
		case tr.Error:
			add("errors", true, int(tr.Spans))
		case tr.Duration >= time.Second:
			add("slow", true, int(tr.Spans))
		default:
			add("sample-rest", policy.KeepByTraceID(tr.ID, 0.1), int(tr.Spans))
		}
	}
	if rep.Traces != len(sched.Manifest.Traces) || rep.Spans != sched.Spans {
		t.Fatalf("replayed %d traces, %d spans; the generator sent %d, %d", rep.Traces, rep.Spans, len(sched.Manifest.Traces), sched.Spans)
	}
	for _, got := range rep.Rules {
		w := want[got.Rule]
		if got.Matched != w.Matched || got.Kept != w.Kept || got.Dropped != w.Dropped || got.KeptSpans != w.KeptSpans {
			t.Errorf("rule %s: got %+v, want %+v", got.Rule, got, w)
		}
	}
	if want["errors"].Matched == 0 || want["slow"].Matched == 0 || want["sample-rest"].Kept == 0 {
		t.Fatalf("the capture lacks a class: %+v", want)
	}

	// The text table and --explain.
	out.Reset()
	id := sched.Manifest.Traces[0].ID
	if code := run([]string{"policy", "test", "--policies", "embedded", "--traces", path, "--explain", strings.ToLower(hexID(id))}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, s := range []string{"rule", "errors", "sample-rest", "keep share", hexID(id)} {
		if !strings.Contains(out.String(), s) {
			t.Fatalf("output lacks %q:\n%s", s, out.String())
		}
	}
}

func hexID(id [16]byte) string {
	const digits = "0123456789abcdef"
	var b strings.Builder
	for _, c := range id {
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&15])
	}
	return b.String()
}

func TestBenchCapture(t *testing.T) {
	path := filepath.Join(t.TempDir(), "load.pb")
	var out, errb bytes.Buffer
	if code := run([]string{"bench", "--capture", path, "--rate", "2000", "--duration", "2s"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	spans := 0
	if err := capture.Read(path, func(pb []byte) error {
		var r otlpwire.Request
		if err := r.Scan(pb); err != nil {
			return err
		}
		spans += len(r.Spans)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if spans < 3000 || !strings.Contains(out.String(), "wrote") {
		t.Fatalf("capture holds %d spans; output %q", spans, out.String())
	}
}

func TestPolicyValidate(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("rules:\n  - name: errors\n    type: error\ndefault: drop\n"), 0o644)
	os.WriteFile(bad, []byte("rules:\n  - name: errors\n    type: eror\n"), 0o644)
	var out, errb bytes.Buffer
	if code := run([]string{"policy", "validate", good}, &out, &errb); code != 0 || !strings.Contains(out.String(), "valid") {
		t.Fatalf("good file: exit %d, %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"policy", "validate", good, bad}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "bad.yaml:3") {
		t.Fatalf("bad file: exit %d, stderr %q", code, errb.String())
	}
}
