package top

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	addrA = "10.0.0.1:8888"
	addrB = "10.0.0.2:8888"
)

func load(t *testing.T, addr, file string) NodeSnapshot {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := Parse(addr, f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return s
}

func frame(t *testing.T, prev, cur []NodeSnapshot, elapsed time.Duration, width int) string {
	t.Helper()
	var b strings.Builder
	if err := Render(&b, prev, cur, elapsed, width); err != nil {
		t.Fatal(err)
	}
	t.Logf("frame:\n%s", b.String())
	return b.String()
}

// fields returns the whitespace-separated cells of the first line starting
// with prefix (after the prefix, the prefix's own fields included).
func fields(t *testing.T, frame, prefix string) []string {
	t.Helper()
	for line := range strings.Lines(frame) {
		if strings.HasPrefix(line, prefix) {
			return strings.Fields(line)
		}
	}
	t.Fatalf("no line starting with %q", prefix)
	return nil
}

// TestRenderRates renders two scrapes 2s apart of a loaded node (A: under
// memory pressure, refusing) and an older one without store and cluster
// metrics (B), and checks the numbers.
func TestRenderRates(t *testing.T) {
	prev := []NodeSnapshot{load(t, addrA, "node-a-1.prom"), load(t, addrB, "node-b-1.prom")}
	cur := []NodeSnapshot{load(t, addrA, "node-a-2.prom"), load(t, addrB, "node-b-2.prom")}
	f := frame(t, prev, cur, 2*time.Second, 0)

	if !strings.Contains(f, "nodes 2/2 up") || !strings.Contains(f, "rates over 2s") {
		t.Errorf("header missing node count or interval")
	}
	if got := fields(t, f, "NODE"); !reflect.DeepEqual(got, []string{"NODE", "SPANS", "IN", "IN/S", "SPANS", "OUT", "OUT/S", "KEEP",
		"LATE/S", "REFUSED/S", "MEM", "LIMIT", "MEM%", "SPILLED", "DISK", "MEMBERS", "STATE"}) {
		t.Errorf("header: %q", got)
	}
	// A: in (16000+3000) total, (6000+1000)/2 = 3500/s; out 1000/2 = 500/s;
	// keep 1000/4000 = 25%; late (2+4)/2 = 3/s; refused 200/2 = 100/s;
	// 992MiB of 1GiB = 96.9%, under pressure and refusing.
	wantA := []string{addrA, "19000", "3500", "3400", "500", "25.0%", "3.0", "100",
		"992.0MiB", "1.0GiB", "96.9%", "50.0MiB", "200.0MiB", "3", "!", "pressure,refusing"}
	if got := fields(t, f, addrA); !reflect.DeepEqual(got, wantA) {
		t.Errorf("node A row:\n got %q\nwant %q", got, wantA)
	}
	// B: older node without store or cluster metrics: "-" there; no refused
	// series yet: 0/s.
	wantB := []string{addrB, "1400", "200", "200", "50.0", "50.0%", "-", "0.0",
		"1.0MiB", "512.0MiB", "0.2%", "-", "-", "-", "ok"}
	if got := fields(t, f, addrB); !reflect.DeepEqual(got, wantB) {
		t.Errorf("node B row:\n got %q\nwant %q", got, wantB)
	}
	// Total: keep (1000+200)/(4000+400) = 27.3%.
	wantT := []string{"TOTAL", "20400", "3700", "3600", "550", "27.3%", "3.0", "100",
		"993.0MiB", "1.5GiB", "64.6%", "50.0MiB", "200.0MiB", "3", "!", "pressure,refusing"}
	if got := fields(t, f, "TOTAL "); !reflect.DeepEqual(got, wantT) {
		t.Errorf("total row:\n got %q\nwant %q", got, wantT)
	}

	// Ingest by protocol: SPANS, TOTAL/S, then A and B.
	if got, want := fields(t, f, "grpc"), []string{"grpc", "16000", "3000", "3000", "0.0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("grpc row: got %q want %q", got, want)
	}
	if got, want := fields(t, f, "http"), []string{"http", "4400", "700", "500", "200"}; !reflect.DeepEqual(got, want) {
		t.Errorf("http row: got %q want %q", got, want)
	}
	// Decisions per rule: TRACES, TOTAL/S, then A and B.
	for prefix, want := range map[string][]string{
		"baseline": {"baseline", "dropped", "1300", "200", "200", "0.0"},
		"errors":   {"errors", "kept", "79", "12.0", "10.0", "2.0"},
		"slow":     {"slow", "kept", "26", "3.0", "3.0", "0.0"},
	} {
		if got := fields(t, f, prefix); !reflect.DeepEqual(got, want) {
			t.Errorf("rule %s: got %q want %q", prefix, got, want)
		}
	}
	// Columns line up: STATE starts at the same column in every row.
	header := f[strings.Index(f, "NODE "):]
	stateCol := strings.Index(header, "STATE")
	for _, a := range []string{addrA, addrB} {
		line := f[strings.Index(f, a):]
		if !strings.HasPrefix(line[stateCol:], "ok") && !strings.HasPrefix(line[stateCol:], "!") {
			t.Errorf("%s: STATE not at column %d: %q", a, stateCol, line[:strings.Index(line, "\n")])
		}
	}
}

// TestRenderFirstFrame: without a previous scrape, totals are shown and
// rates are "-"; keep share comes from the totals.
func TestRenderFirstFrame(t *testing.T) {
	cur := []NodeSnapshot{load(t, addrA, "node-a-1.prom")}
	f := frame(t, nil, cur, 0, 0)
	want := []string{addrA, "12000", "-", "2400", "-", "25.0%", "-", "-",
		"128.0MiB", "1.0GiB", "12.5%", "0B", "200.0MiB", "3", "ok"}
	if got := fields(t, f, addrA); !reflect.DeepEqual(got, want) {
		t.Errorf("node row:\n got %q\nwant %q", got, want)
	}
	if strings.Contains(f, "TOTAL ") {
		t.Errorf("a single node has no TOTAL row")
	}
	if got, want := fields(t, f, "errors"), []string{"errors", "kept", "50", "-", "-"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rule row: got %q want %q", got, want)
	}
	if !strings.Contains(f, "rates: - until the next scrape") {
		t.Errorf("header does not say rates come later")
	}
}

// TestRenderWidth cuts lines at the terminal width.
func TestRenderWidth(t *testing.T) {
	cur := []NodeSnapshot{load(t, addrA, "node-a-1.prom")}
	f := frame(t, nil, cur, 0, 40)
	for line := range strings.Lines(f) {
		if len(strings.TrimRight(line, "\n")) > 40 {
			t.Errorf("line longer than 40: %q", line)
		}
	}
}

// TestUnreachableNode scrapes a closed port and a live fake node: the
// closed one renders as an error row, the live one as usual.
func TestUnreachableNode(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "node-a-1.prom"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write(body)
	}))
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	live := strings.TrimPrefix(srv.URL, "http://")

	hc := &http.Client{Timeout: 2 * time.Second}
	cur := ScrapeAll(context.Background(), hc, []string{dead, live})
	if cur[0].Err == nil || cur[1].Err != nil {
		t.Fatalf("errors: dead %v, live %v", cur[0].Err, cur[1].Err)
	}
	f := frame(t, nil, cur, 0, 0)
	row := fields(t, f, dead)
	if len(row) < 2 || row[1] != "error:" || !strings.Contains(strings.Join(row, " "), "refused") {
		t.Errorf("dead node row: %q", row)
	}
	if got := fields(t, f, live); got[1] != "12000" {
		t.Errorf("live node row: %q", got)
	}
	if !strings.Contains(f, "nodes 1/2 up") {
		t.Errorf("header does not count the dead node")
	}
	// All nodes down: still a frame, no panic.
	f = frame(t, nil, cur[:1], 0, 0)
	if !strings.Contains(f, "nodes 0/1 up") {
		t.Errorf("all-down frame: %q", f)
	}
	// A node going down between scrapes.
	prev := cur
	cur2 := []NodeSnapshot{cur[1], {Addr: dead, Err: cur[0].Err}}
	_ = frame(t, prev, cur2, time.Second, 0)
}
