package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/bytesize"
	"github.com/tailsift/tailsift/node"
)

// TestRunHelp: "sampler run -h" lists every setting of the table, with its
// value name, its help and its default.
func TestRunHelp(t *testing.T) {
	var stderr bytes.Buffer
	if code := runNode([]string{"-h"}, io.Discard, &stderr); code != 2 {
		t.Errorf("exit %d, want 2 (as flag.ErrHelp)", code)
	}
	// Each flag's block: its "  -name arg" line, then its usage, wrapped
	// on lines starting with a tab.
	blocks := map[string]string{}
	var name string
	for _, line := range strings.Split(stderr.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "  -"):
			name = strings.TrimPrefix(line, "  -")
			blocks[name] = ""
		case strings.HasPrefix(line, "    \t") && name != "":
			blocks[name] = strings.TrimSpace(blocks[name] + " " + strings.TrimPrefix(line, "    \t"))
		}
	}
	for _, want := range []string{"config file", "shutdown-timeout duration"} {
		if _, ok := blocks[want]; !ok {
			t.Errorf("no -%s in:\n%s", want, stderr.String())
		}
	}
	for _, s := range node.Settings() {
		head := s.Flag
		if s.Arg != "" {
			head += " " + s.Arg
		}
		usage, ok := blocks[head]
		if !ok {
			t.Errorf("%s: no line %q in:\n%s", s.Key, "  -"+head, stderr.String())
			continue
		}
		want := s.Help()
		if d := s.Default(); d != "" {
			want += " (default " + d + ")"
		}
		if usage != want {
			t.Errorf("-%s:\n got %q\nwant %q", s.Flag, usage, want)
		}
	}
	if len(blocks) != len(node.Settings())+2 {
		t.Errorf("%d flags listed, want the %d settings, -config and -shutdown-timeout", len(blocks), len(node.Settings()))
	}
}

// TestRunFlagsEverySetting: each setting's flag sets its field and no
// other.
func TestRunFlagsEverySetting(t *testing.T) {
	want := node.DefaultConfig()
	var args []string
	for _, s := range node.Settings() {
		var arg string
		var v any
		switch p := s.Field(&want).(type) {
		case *string:
			v, arg = "x-"+s.Key, "x-"+s.Key
		case *time.Duration:
			d := *p + 1500*time.Millisecond
			v, arg = d, d.String()
		case *bool:
			v, arg = !*p, strconv.FormatBool(!*p)
		case *int:
			v, arg = *p+7, strconv.Itoa(*p+7)
		case *bytesize.Size:
			sz := *p + 3<<20
			v, arg = sz, sz.String()
		case *[]string:
			v, arg = []string{"a-" + s.Key + ":1", "b:2"}, "a-"+s.Key+":1, b:2"
		default:
			t.Fatalf("%s: no sample for %T", s.Key, p)
		}
		reflect.ValueOf(s.Field(&want)).Elem().Set(reflect.ValueOf(v))
		args = append(args, "--"+s.Flag+"="+arg)
	}
	var stderr bytes.Buffer
	got, _, ok := runConfig(args, &stderr)
	if !ok {
		t.Fatalf("runConfig %q: %s", args, stderr.String())
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("flags %q\n got %+v\nwant %+v", args, got, want)
	}
}

// TestRunConfigPrecedence: flags given override the file, which overrides
// the defaults; flags not given leave the file's keys alone.
func TestRunConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sampler.yaml")
	if err := os.WriteFile(path, []byte("otlp_http: \"\"\ndecision_wait: 1m\nmemory_limit: 64MiB\njoin: [a:1, b:2]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	got, timeout, ok := runConfig([]string{"--config", path, "--decision-wait", "100ms", "--join", "c:3", "--shutdown-timeout", "5s"}, &stderr)
	if !ok {
		t.Fatal(stderr.String())
	}
	want := node.DefaultConfig()
	want.OTLPHTTP, want.DecisionWait, want.MemoryLimit, want.Join = "", 100*time.Millisecond, 64<<20, []string{"c:3"}
	if !reflect.DeepEqual(got, want) || timeout != 5*time.Second {
		t.Fatalf("got %+v, %v\nwant %+v, 5s", got, timeout, want)
	}
}

// TestREADMERunExamples: the README's "sampler run" command lines parse
// (every flag exists and takes its value), and its sampler.yaml example
// loads.
func TestREADMERunExamples(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var commands int
	for i, line := range lines {
		_, rest, ok := strings.Cut(line, "sampler run")
		if !ok || !(strings.HasPrefix(line, "sampler run") || strings.HasPrefix(line, "go run ./cmd/sampler run")) {
			continue
		}
		rest, _, _ = strings.Cut(rest, "#")
		var args []string
		for _, f := range strings.Fields(rest) {
			switch f {
			case "...": // the reader's other flags
			case `""`:
				args = append(args, "")
			default:
				args = append(args, f)
			}
		}
		var stderr bytes.Buffer
		if _, _, ok := runConfig(args, &stderr); !ok {
			first, _, _ := strings.Cut(stderr.String(), "\n")
			t.Errorf("README.md:%d: %q: %s", i+1, line, first)
		}
		commands++
	}
	if commands < 5 {
		t.Errorf("found %d sampler run lines in README.md, want more", commands)
	}

	start := slices.Index(lines, "# sampler.yaml")
	if start < 0 {
		t.Fatal("README.md has no sampler.yaml example (a code block starting with \"# sampler.yaml\")")
	}
	end := start + 1 + slices.Index(lines[start+1:], "```")
	if end <= start {
		t.Fatal("README.md's sampler.yaml example has no end")
	}
	path := filepath.Join(t.TempDir(), "sampler.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(lines[start:end], "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	if err := cfg.LoadFile(path); err != nil {
		t.Fatalf("README.md's sampler.yaml example: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("README.md's sampler.yaml example: %v", err)
	}
}
