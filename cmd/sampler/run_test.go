package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
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
