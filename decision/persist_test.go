package decision

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/store"
	"github.com/tailsift/tailsift/internal/wal"
	"github.com/tailsift/tailsift/policy"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// openStore opens a real store in dir, closed when the test ends.
func openStore(tb testing.TB, dir string) *store.Store {
	tb.Helper()
	cfg := store.DefaultConfig()
	cfg.Dir = dir
	cfg.MemTableSize, cfg.IndexCacheSize, cfg.BlockCacheSize = 4<<20, 4<<20, 4<<20
	cfg.DeleteInterval = 10 * time.Millisecond
	st, err := store.Open(cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// recorder is an exporter that remembers what it was given, by trace. It
// never reports a trace delivered, so the write-ahead records of the
// traces it takes stay.
type recorder struct {
	mu         sync.Mutex
	traces     map[[16]byte]uint64 // ExportTrace: the threshold
	spans      map[[16]byte]int    // ExportSpans: late spans
	thresholds map[[16]byte]uint64 // ExportSpans: the threshold
	attrs      map[[16]byte][]Attribute
}

func newRecorder() *recorder {
	return &recorder{traces: map[[16]byte]uint64{}, spans: map[[16]byte]int{}, thresholds: map[[16]byte]uint64{},
		attrs: map[[16]byte][]Attribute{}}
}

func (r *recorder) ExportTrace(t *buffer.Trace, threshold uint64, rootAttrs []Attribute) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.traces[t.ID] = threshold
}

func (r *recorder) ExportSpans(_ otlpwire.Group, spans [][]byte, threshold uint64, rootAttrs []Attribute) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, raw := range spans {
		f, _ := otlpwire.SpanFields(raw)
		r.spans[f.TraceID]++
		r.thresholds[f.TraceID] = threshold
		r.attrs[f.TraceID] = slices.Clone(rootAttrs)
	}
}

// spanOf builds a span of trace id; a root if parent is 0.
func spanOf(id [16]byte, spanID, parent byte, errored bool) *tracepb.Span {
	s := &tracepb.Span{TraceId: id[:], SpanId: []byte{spanID, 1, 1, 1, 1, 1, 1, 1}, Name: "op",
		StartTimeUnixNano: 1e18 + uint64(spanID)*1000, EndTimeUnixNano: 1e18 + uint64(spanID)*1000 + 5e6}
	if parent != 0 {
		s.ParentSpanId = []byte{parent, 1, 1, 1, 1, 1, 1, 1}
	}
	if errored {
		s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
	}
	return s
}

// scanned returns a scanned, grouped request of spans under service svc.
func scanned(tb testing.TB, svc string, spans ...*tracepb.Span) *otlpwire.Request {
	tb.Helper()
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{otlptest.Str("service.name", svc)}},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "scope-" + svc}, Spans: spans}}}}})
	if err != nil {
		tb.Fatal(err)
	}
	var req otlpwire.Request
	if err := req.Scan(b); err != nil {
		tb.Fatal(err)
	}
	req.GroupByTrace()
	return &req
}

// logSpans appends the request's traces to buf at now, as first seen at
// first (0: now) with a root seen at root (0: now), as a node does before
// it crashes: one write-ahead record per trace.
func logSpans(tb testing.TB, buf *buffer.Buffer, req *otlpwire.Request, now, first, root int64) {
	tb.Helper()
	var in buffer.Interner
	in.Reset(buf, req)
	defer in.Release()
	var bt buffer.Batch
	for t := range req.Traces {
		bt.StartTraceSeen(req.Traces[t].ID, first, root)
		if err := bt.AddRequestSpans(req, req.TraceSpans(t), &in); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := buf.Append(&bt, now); err != nil {
		tb.Fatal(err)
	}
}

// Recover restores what a crashed node left: every logged trace is
// buffered again as it was (summary, arrival times, groups), and spans of
// traces decided before the crash follow the persisted decision: a kept
// trace's are logged and due at once with the log on, exported at once
// with it off; a dropped trace's are counted dropped. Records of spans
// that are gone are deleted.
func TestRecoverRestoresTheLog(t *testing.T) {
	for _, durable := range []bool{true, false} {
		t.Run(map[bool]string{true: "wal", false: "no-wal"}[durable], func(t *testing.T) {
			testRecover(t, durable)
		})
	}
}

func testRecover(t *testing.T, durable bool) {
	dir := t.TempDir()
	st := openStore(t, dir)
	set, err := policy.Parse("test", []byte(testPolicies))
	if err != nil {
		t.Fatal(err)
	}
	kept, dropped, pending, rootless := [16]byte{1, 1}, [16]byte{2, 2}, [16]byte{3, 3}, [16]byte{4, 4}

	// An earlier run decided kept (an error) and dropped, and persisted
	// the decisions.
	cfg := testConfig()
	cfg.Decisions, cfg.RuleAttribute = st, true
	plain, err := buffer.New(buffer.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	first, err := New(cfg, plain, set, newRecorder(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []*otlpwire.Request{
		scanned(t, "a", spanOf(kept, 1, 0, true)),
		scanned(t, "a", spanOf(dropped, 1, 0, false)),
	} {
		if err := first.ConsumeGrouped(context.Background(), req, Input{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := first.Stats(); s.TracesKept != 1 || s.TracesDropped != 1 {
		t.Fatalf("first run: %+v, want one trace kept and one dropped", s)
	}

	// Then it logged late spans of both, and two undecided traces (one in
	// two records, under two services), and crashed.
	bc := buffer.DefaultConfig()
	bc.Disk, bc.Log = st, openLog(t, dir)
	crashed, err := buffer.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	logSpans(t, crashed, scanned(t, "a", spanOf(kept, 2, 1, false), spanOf(dropped, 2, 1, false)), 1000, 0, 0)
	logSpans(t, crashed, scanned(t, "a", spanOf(pending, 2, 1, false)), 2000, 0, 0)
	logSpans(t, crashed, scanned(t, "b", spanOf(pending, 1, 0, true), spanOf(pending, 3, 1, false)), 2500, 0, 0)
	logSpans(t, crashed, scanned(t, "b", spanOf(rootless, 2, 1, false)), 3500, 3000, 0) // handed off: first seen earlier
	want := map[[16]byte]buffer.Summary{}
	wantGroups := map[[16]byte][]otlpwire.Group{}
	for _, id := range [][16]byte{pending, rootless} {
		s, groups, ok := crashed.Peek(id)
		if !ok {
			t.Fatal("not buffered")
		}
		s.LastSeen = 0
		want[id] = s
		for _, g := range groups {
			wantGroups[id] = append(wantGroups[id], g.Wire())
		}
	}
	crashed.Close()
	bc.Log.Close(context.Background())

	// The restarted node recovers.
	if bc.Log = openLog(t, dir); !durable {
		bc.Log, bc.Replay = nil, bc.Log
	}
	buf, err := buffer.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	cfg.Tick = time.Hour // nothing is decided before Shutdown
	rec := newRecorder()
	e, err := New(cfg, buf, set, rec, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.LoadDecisions(); err != nil {
		t.Fatal(err)
	}
	spans, err := e.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if spans != 6 {
		t.Fatalf("Recover returned %d spans, want 6", spans)
	}
	for id, w := range want {
		s, groups, ok := buf.Peek(id)
		if !ok {
			t.Fatalf("trace %x not recovered", id[:2])
		}
		s.LastSeen = 0
		if s != w {
			t.Errorf("trace %x recovered as\n%+v, want\n%+v", id[:2], s, w)
		}
		var got []otlpwire.Group
		for _, g := range groups {
			got = append(got, g.Wire())
		}
		if !slices.EqualFunc(got, wantGroups[id], func(a, b otlpwire.Group) bool {
			return string(a.Resource) == string(b.Resource) && string(a.Scope) == string(b.Scope)
		}) {
			t.Errorf("trace %x recovered under groups %q, want %q", id[:2], got, wantGroups[id])
		}
	}
	if _, _, ok := buf.Peek(dropped); ok {
		t.Error("late span of a dropped trace buffered")
	}
	s := e.Stats()
	if s.Recovered != 6 || s.Accepted != 0 || s.DroppedLate != 1 {
		t.Errorf("%+v: want 6 spans recovered, none accepted, one dropped late", s)
	}
	if ks, _, ok := buf.Peek(kept); durable != ok || (ok && ks.FirstSeen != 1) {
		t.Errorf("late span of a kept trace: buffered %v (first seen %d), want buffered and due at once with the log on only", ok, ks.FirstSeen)
	}
	rec.mu.Lock()
	if n := rec.spans[kept]; durable == (n == 1) || (n == 1 && (rec.thresholds[kept] != 0 ||
		!slices.Equal(rec.attrs[kept], []Attribute{{AttrRule, "errors"}}))) {
		t.Errorf("late span of a kept trace exported %d times (threshold %d, attributes %v); want once, at p=1 with the rule, with the log off only",
			n, rec.thresholds[kept], rec.attrs[kept])
	}
	rec.mu.Unlock()
	if s.Recovered != s.Kept+s.DroppedLate+s.Buffered {
		t.Errorf("accounting: %+v", s)
	}

	// Deciding everything forgets the records of the traces dropped; those
	// of kept traces wait for the exporter, which never reports them
	// delivered: pending (an error), and kept's late span with the log on.
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !durable {
		return // the node deletes a log it no longer writes once replayed
	}
	if live := bc.Log.Stats().LiveRecords; live != 3 {
		t.Errorf("%d write-ahead records live, want 3: pending's two and kept's late one", live)
	}
}

// openLog opens a write-ahead log in dir/wal, closed when the test ends.
func openLog(tb testing.TB, dir string) *wal.Log {
	tb.Helper()
	cfg := wal.DefaultConfig()
	cfg.Dir = filepath.Join(dir, "wal")
	l, err := wal.Open(cfg, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// BenchmarkRecover reads back a write-ahead log of 2,000 realistic traces
// (20,000 spans in 40 requests) into a new buffer, as a node restarting
// on its data directory does. The timer covers Recover only.
func BenchmarkRecover(b *testing.B) {
	dir := b.TempDir()
	keep, err := policy.Parse("keep", []byte("rules:\n  - name: all\n    type: always\ndefault: keep\n"))
	if err != nil {
		b.Fatal(err)
	}
	bc := buffer.DefaultConfig()
	bc.Log = openLog(b, dir)
	crashed, err := buffer.New(bc)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var logged int64
	for range 40 {
		raw, err := proto.Marshal(otlptest.DefaultBatch().Request(rng))
		if err != nil {
			b.Fatal(err)
		}
		var req otlpwire.Request
		if err := req.Scan(raw); err != nil {
			b.Fatal(err)
		}
		req.GroupByTrace()
		logSpans(b, crashed, &req, time.Now().UnixNano(), 0, 0)
		logged += int64(req.SpanBytes())
	}
	spans := crashed.Stats().Spans
	crashed.Close()
	bc.Log.Close(context.Background())

	cfg := testConfig()
	cfg.Tick = time.Hour
	b.SetBytes(logged)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		bc.Log = openLog(b, dir)
		buf, err := buffer.New(bc)
		if err != nil {
			b.Fatal(err)
		}
		// Everything is kept, and the exporter never reports a trace
		// delivered: the log stays for the next round.
		e, err := New(cfg, buf, keep, newRecorder(), prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		n, err := e.Recover(context.Background())
		b.StopTimer()
		if err != nil || n != spans {
			b.Fatalf("recovered %d spans (%v), want %d", n, err, spans)
		}
		e.Shutdown(context.Background())
		buf.Close()
		bc.Log.Close(context.Background())
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*spans), "ns/span")
}

// TestRecoverLargerThanMemory: a log holding more than the buffer's memory
// limit, on a node with no disk to spill to, recovers on the first try:
// when the buffer is full the oldest traces are decided early (stress
// relief) and replay goes on. No span goes missing from the accounting.
func TestRecoverLargerThanMemory(t *testing.T) {
	dir := t.TempDir()
	keep, err := policy.Parse("keep", []byte("rules:\n  - name: all\n    type: always\ndefault: keep\n"))
	if err != nil {
		t.Fatal(err)
	}
	bc := buffer.DefaultConfig()
	bc.Log = openLog(t, dir)
	crashed, err := buffer.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var logged int64
	for logged < 8<<20 {
		raw, err := proto.Marshal(otlptest.DefaultBatch().Request(rng))
		if err != nil {
			t.Fatal(err)
		}
		var req otlpwire.Request
		if err := req.Scan(raw); err != nil {
			t.Fatal(err)
		}
		req.GroupByTrace()
		logSpans(t, crashed, &req, time.Now().UnixNano(), 0, 0)
		logged += int64(req.SpanBytes())
	}
	spans := crashed.Stats().Spans
	crashed.Close()
	bc.Log.Close(context.Background())

	bc.Log, bc.MemoryLimit = openLog(t, dir), 2<<20 // a quarter of the log
	buf, err := buffer.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	cfg := testConfig()
	cfg.Tick = time.Hour // only relief decides during the replay
	rec := newRecorder()
	e, err := New(cfg, buf, keep, rec, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.Recover(context.Background())
	if err != nil || n != spans {
		t.Fatalf("recovered %d spans (%v), want %d", n, err, spans)
	}
	s := e.Stats()
	if s.RelievedTraces == 0 || s.Recovered != spans || s.Recovered != s.Kept+s.Buffered {
		t.Fatalf("%+v: want every recovered span kept (decided early: relieved) or still buffered", s)
	}
	if err := e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.Kept != spans {
		t.Fatalf("after shutdown %d of %d spans kept", s.Kept, spans)
	}
}
