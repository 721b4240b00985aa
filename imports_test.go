package tailsift

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/tailsift/tailsift"

// importRules say which packages of the project each package may import:
// dependencies point one way (STYLE.md, "Shape of the house"). A package
// matches the first rule whose pattern is its path or a prefix of it
// ending in "/..."; a package no rule names fails the test, so a new
// package gets a rule when it arrives.
var importRules = []struct {
	pkg string
	may []string // project packages it may import; "*" for all
	why string
}{
	// Wire codecs and small helpers: leaves.
	{"internal/otlpwire", nil, "the wire package is a leaf: every layer reads OTLP through it"},
	{"internal/otlpjson", nil, "a codec"},
	{"internal/rawcodec", nil, "a codec"},
	{"internal/tracestate", nil, "a codec"},
	{"internal/bytesize", nil, "a helper"},
	{"internal/lograte", nil, "a helper"},
	{"internal/redact", nil, "a helper"},
	{"internal/audit", []string{"internal/lograte"}, "security events as JSON lines"},
	{"internal/auth", []string{"internal/reloadfile"}, "who a client is: API keys, JWT, certificates"},
	{"internal/reloadfile", nil, "values loaded from files, reloaded on change"},
	{"internal/tlsconfig", []string{"internal/reloadfile"}, "TLS files to configs, reloaded on change"},
	{"internal/pki", nil, "makes CAs and certificates"},
	{"internal/testpki", []string{"internal/pki"}, "a test helper"},
	{"internal/metricstest", nil, "a test helper"},
	{"internal/otlptest", nil, "a test helper"},
	{"internal/store", nil, "the store knows keys and values, not what they mean"},
	{"internal/spillfile", nil, "spilled span bytes in plain files"},
	{"internal/wal/waltest", []string{"internal/wal"}, "a test file system for the log"},
	{"internal/wal", nil, "the log knows records, not what they mean"},
	{"internal/otlpserver", nil, "serves OTLP bytes to a handler"},
	{"internal/otlpclient", []string{"internal/otlpwire", "internal/rawcodec"}, "the one OTLP client"},
	{"internal/capture", []string{"internal/otlpjson"}, "reads captures"},
	{"internal/top", nil, "renders scraped metrics"},

	// The engine's layers.
	{"policy", nil, "the policy language touches nothing else"},
	{"buffer", []string{"internal/otlpwire", "internal/wal"}, "holds bytes; the wire package only for the group type; logs them"},
	{"internal/traceview", []string{"buffer", "policy", "internal/otlpwire"}, "policy's view of a buffered trace"},
	{"decision", []string{"buffer", "policy", "internal/otlpwire", "internal/traceview"}, "decides buffered traces; knows no network"},
	{"ingest", []string{"internal/otlpwire", "internal/otlpjson", "internal/otlpserver", "internal/rawcodec"}, "receivers: hand scanned requests to a Consumer they define"},
	{"cluster", []string{"internal/otlpwire", "internal/otlpclient", "internal/otlpserver", "internal/rawcodec", "internal/lograte"}, "moves bytes and trace IDs; knows neither decision nor buffer"},
	{"export", []string{"internal/otlpwire", "internal/otlpjson", "internal/otlpclient", "internal/rawcodec", "internal/tracestate", "internal/lograte"}, "destinations; takes traces through interfaces it defines"},
	{"internal/replay", []string{"buffer", "policy", "internal/otlpwire", "internal/traceview", "internal/capture"}, "the policy dry run"},

	// The composition root and what runs it.
	{"node", []string{"*"}, "the composition root: the one package that knows every other"},
	{"bench/workload", nil, "generates traces"},
	{"bench/sink", []string{"bench/workload", "internal/otlpserver", "internal/otlpwire", "internal/rawcodec"}, "checks what arrives"},
	{"bench", []string{"*"}, "runs nodes in process"},
	{"cmd/...", []string{"*"}, "binaries"},
	{"", nil, "the root: embedded files"},
}

// TestImportRules fails when a package imports one of the project's
// packages its rule does not allow, or when only the composition root
// should import it (node) and another does.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	seen := 0
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/")
		rule := -1
		for i, r := range importRules {
			if r.pkg == pkg || strings.HasSuffix(r.pkg, "/...") && strings.HasPrefix(pkg, strings.TrimSuffix(r.pkg, "...")) {
				rule = i
				break
			}
		}
		if rule < 0 {
			t.Errorf("%s: no import rule: add one to importRules, saying what it may import and why", fields[0])
			continue
		}
		seen++
		r := importRules[rule]
		for _, imp := range fields[1:] {
			dep, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			if !slices.Contains(r.may, "*") && !slices.Contains(r.may, dep) {
				t.Errorf("%s imports %s: its rule allows %v (%s)", fields[0], imp, r.may, r.why)
			}
			if dep == "node" && pkg != "bench" && !strings.HasPrefix(pkg, "cmd/") {
				t.Errorf("%s imports the composition root node: only binaries (and the bench's in-process mode) start nodes", fields[0])
			}
		}
	}
	if seen < 20 {
		t.Fatalf("checked %d packages: go list printed %q", seen, out)
	}
}
