package decision

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/export"
	"github.com/tailsift/tailsift/internal/otlpjson"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/policy"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lockedBuffer is the exporter's stdout: JSON lines, one per request.
type lockedBuffer struct{ otlptest.SyncBuffer }

// spanIDs parses what the exporter wrote: the span IDs received, by trace.
func (l *lockedBuffer) spanIDs(t *testing.T) map[[16]byte][][8]byte {
	t.Helper()
	out := map[[16]byte][][8]byte{}
	sc := bufio.NewScanner(bytes.NewReader(l.Bytes()))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		pb, err := otlpjson.Decode(nil, sc.Bytes())
		if err != nil {
			t.Fatalf("exporter wrote a bad line: %v", err)
		}
		var req otlpwire.Request
		if err := req.Scan(pb); err != nil {
			t.Fatal(err)
		}
		for _, s := range req.Spans {
			out[s.TraceID] = append(out[s.TraceID], s.SpanID)
		}
	}
	return out
}

type harness struct {
	t      *testing.T
	engine *Engine
	buf    *buffer.Buffer
	exp    *export.Exporter
	out    *lockedBuffer
	rng    *rand.Rand
	reg    *prometheus.Registry
}

type keptTraces struct{ *export.Exporter }

func (k keptTraces) ExportTrace(t *buffer.Trace, threshold uint64, rootAttrs []Attribute) {
	k.Exporter.ExportTrace(t, export.Keep{Threshold: threshold, RootAttributes: exportAttrs(rootAttrs)})
}

func (k keptTraces) ExportSpans(group otlpwire.Group, spans [][]byte, threshold uint64, rootAttrs []Attribute) {
	k.Exporter.ExportSpans(group, spans, export.Keep{Threshold: threshold, RootAttributes: exportAttrs(rootAttrs)})
}

func exportAttrs(attrs []Attribute) []export.Attribute {
	var out []export.Attribute
	for _, a := range attrs {
		out = append(out, export.Attribute(a))
	}
	return out
}

const testPolicies = `
rules:
  - name: errors
    type: error
  - name: slow
    type: latency
    threshold: 1s
default: drop
`

func newHarness(t *testing.T, cfg Config, memLimit int64) *harness {
	t.Helper()
	bc := buffer.DefaultConfig()
	if memLimit > 0 {
		bc.MemoryLimit = memLimit
	}
	return newHarnessBuffer(t, cfg, bc)
}

func newHarnessBuffer(t *testing.T, cfg Config, bc buffer.Config) *harness {
	t.Helper()
	set, err := policy.Parse("test", []byte(testPolicies))
	if err != nil {
		t.Fatal(err)
	}
	buf, err := buffer.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	ec := export.DefaultConfig()
	ec.Writer = out
	reg := prometheus.NewRegistry()
	exp, err := export.New(ec, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg, buf, set, keptTraces{exp}, reg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, engine: e, buf: buf, exp: exp, out: out, rng: rand.New(rand.NewPCG(1, 2)), reg: reg}
}

func (h *harness) shutdown() {
	h.t.Helper()
	if err := h.engine.Shutdown(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	if err := h.exp.Shutdown(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// span builds a span of trace tid; root if parent is nil.
func (h *harness) span(tid []byte, parent []byte, dur time.Duration, isErr bool) *tracepb.Span {
	s := &tracepb.Span{TraceId: tid, SpanId: otlptest.SpanID(h.rng), ParentSpanId: parent, Name: "op",
		StartTimeUnixNano: 1e18, EndTimeUnixNano: 1e18 + uint64(dur)}
	if isErr {
		s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
	}
	return s
}

func (h *harness) send(spans ...*tracepb.Span) error {
	h.t.Helper()
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}}})
	if err != nil {
		h.t.Fatal(err)
	}
	var req otlpwire.Request
	if err := req.Scan(b); err != nil {
		h.t.Fatal(err)
	}
	return h.engine.Consume(context.Background(), &req)
}

// checkAccounting asserts the engine's invariant at a quiet moment.
func (h *harness) checkAccounting() Stats {
	h.t.Helper()
	s := h.engine.Stats()
	if s.Accepted != s.Kept+s.DroppedPolicy+s.DroppedLate+s.Buffered {
		h.t.Fatalf("accounting: accepted %d != kept %d + dropped %d + late dropped %d + buffered %d",
			s.Accepted, s.Kept, s.DroppedPolicy, s.DroppedLate, s.Buffered)
	}
	return s
}

func testConfig() Config {
	c := DefaultConfig()
	c.DecisionWait, c.RootWait, c.MaxTraceAge, c.Tick = 10*time.Second, 2*time.Second, time.Minute, 100*time.Millisecond
	return c
}

func TestReadiness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig(), 0)
		defer h.shutdown()
		rootless := otlptest.TraceID(h.rng)
		withRoot := otlptest.TraceID(h.rng)
		h.send(h.span(rootless, otlptest.SpanID(h.rng), 2*time.Second, false))
		h.send(h.span(withRoot, otlptest.SpanID(h.rng), 2*time.Second, false))
		time.Sleep(5 * time.Second)
		h.send(h.span(withRoot, nil, 2*time.Second, false)) // root arrives at 5s

		time.Sleep(1900 * time.Millisecond) // 6.9s: root_wait not yet over
		if s := h.checkAccounting(); s.TracesKept != 0 || s.Buffered != 3 {
			t.Fatalf("decided early: %+v", s)
		}
		time.Sleep(300 * time.Millisecond) // 7.2s: root_wait over for withRoot
		if s := h.checkAccounting(); s.TracesKept != 1 || s.Buffered != 1 {
			t.Fatalf("root_wait: %+v, want the rooted trace decided", s)
		}
		time.Sleep(2700 * time.Millisecond) // 9.9s
		if s := h.checkAccounting(); s.Buffered != 1 {
			t.Fatalf("rootless trace decided before decision_wait: %+v", s)
		}
		time.Sleep(300 * time.Millisecond) // 10.2s
		if s := h.checkAccounting(); s.Buffered != 0 || s.TracesKept != 2 {
			t.Fatalf("decision_wait: %+v, want both kept", s)
		}
	})
}

func TestMaxTraceAgeCapsDecisionWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.DecisionWait, cfg.MaxTraceAge = time.Hour, 3*time.Second
		h := newHarness(t, cfg, 0)
		defer h.shutdown()
		h.send(h.span(otlptest.TraceID(h.rng), otlptest.SpanID(h.rng), 0, true))
		time.Sleep(2900 * time.Millisecond)
		if s := h.engine.Stats(); s.Buffered != 1 {
			t.Fatalf("decided before max_trace_age: %+v", s)
		}
		time.Sleep(200 * time.Millisecond)
		if s := h.engine.Stats(); s.Buffered != 0 || s.TracesKept != 1 {
			t.Fatalf("not decided at max_trace_age: %+v", s)
		}
	})
}

func TestKeptAndDroppedWithLateSpans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig(), 0)
		kept, dropped := otlptest.TraceID(h.rng), otlptest.TraceID(h.rng)
		root := h.span(kept, nil, 10*time.Millisecond, false)
		h.send(root, h.span(kept, root.SpanId, time.Millisecond, true))
		h.send(h.span(dropped, nil, 10*time.Millisecond, false))
		time.Sleep(3 * time.Second) // root_wait passes: both decided

		if s := h.checkAccounting(); s.TracesKept != 1 || s.TracesDropped != 1 {
			t.Fatalf("after decisions: %+v", s)
		}
		lateKept := h.span(kept, root.SpanId, time.Millisecond, false)
		lateDropped := h.span(dropped, nil, time.Millisecond, false)
		if err := h.send(lateKept, lateDropped); err != nil {
			t.Fatal(err)
		}
		s := h.checkAccounting()
		if s.LateKept != 1 || s.DroppedLate != 1 || s.Buffered != 0 {
			t.Fatalf("late spans: %+v, want one forwarded and one dropped, none buffered", s)
		}
		h.shutdown()
		got := h.out.spanIDs(t)
		if n := len(got[[16]byte(kept)]); n != 3 {
			t.Fatalf("kept trace arrived with %d spans, want 3 (2 + the late one)", n)
		}
		if n := len(got[[16]byte(dropped)]); n != 0 {
			t.Fatalf("dropped trace has %d spans at the exporter", n)
		}
		found := false
		for _, id := range got[[16]byte(kept)] {
			found = found || bytes.Equal(id[:], lateKept.SpanId)
		}
		if !found {
			t.Fatal("late span of the kept trace was not forwarded")
		}
	})
}

// TestSpansRacingADecisionFollowIt covers spans buffered as a new trace
// while their trace was being decided: at their own decision time they
// follow the decision already made instead of being judged as a fragment.
func TestSpansRacingADecisionFollowIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig(), 0)
		kept := otlptest.TraceID(h.rng)
		h.send(h.span(kept, nil, 0, true))
		time.Sleep(3 * time.Second)
		// Bypass Consume's cache check, as a span that raced the decision.
		g, err := h.buf.Acquire(otlpwire.Group{})
		if err != nil {
			t.Fatal(err)
		}
		var bt buffer.Batch
		bt.StartTrace([16]byte(kept))
		bt.AddSpan(buffer.Span{Group: g, Raw: []byte{}, StartUnixNano: 1, EndUnixNano: 2})
		if _, err := h.buf.Append(&bt, time.Now().UnixNano()); err != nil {
			t.Fatal(err)
		}
		h.buf.Release(g)
		h.engine.count.accepted.Add(1)
		time.Sleep(11 * time.Second) // its decision_wait
		s := h.checkAccounting()
		if s.TracesKept != 1 || s.LateKept != 1 {
			t.Fatalf("%+v: want the fragment to follow the kept decision, not a second decision", s)
		}
		h.shutdown()
	})
}

func TestFullBufferRefusesAndChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig(), 8<<10)
		defer h.shutdown()
		var err error
		for i := 0; err == nil && i < 1000; i++ {
			err = h.send(h.span(otlptest.TraceID(h.rng), nil, 0, false), h.span(otlptest.TraceID(h.rng), nil, 0, false))
		}
		if !errors.Is(err, buffer.ErrFull) {
			t.Fatalf("err = %v, want buffer.ErrFull", err)
		}
		var ra interface{ RetryAfter() time.Duration }
		if !errors.As(err, &ra) || ra.RetryAfter() <= 0 {
			t.Fatal("ErrFull does not say when to retry")
		}
		s := h.checkAccounting()
		if s.Accepted != s.Buffered || s.Accepted%2 != 0 {
			t.Fatalf("refused request changed the accounting: %+v", s)
		}
		time.Sleep(3 * time.Second) // decisions free the buffer
		if err := h.send(h.span(otlptest.TraceID(h.rng), nil, 0, false)); err != nil {
			t.Fatalf("after decisions freed memory: %v", err)
		}
	})
}

func TestShutdownDecidesEverythingAndRefusesMore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, testConfig(), 0)
		errTrace := otlptest.TraceID(h.rng)
		h.send(h.span(errTrace, otlptest.SpanID(h.rng), 0, true))
		h.send(h.span(otlptest.TraceID(h.rng), otlptest.SpanID(h.rng), 0, false))
		h.shutdown()
		h.shutdown() // idempotent
		s := h.checkAccounting()
		if s.Buffered != 0 || s.TracesKept != 1 || s.TracesDropped != 1 {
			t.Fatalf("after shutdown: %+v", s)
		}
		if len(h.out.spanIDs(t)[[16]byte(errTrace)]) != 1 {
			t.Fatal("error trace decided at shutdown was not exported")
		}
		if err := h.send(h.span(otlptest.TraceID(h.rng), nil, 0, false)); !errors.Is(err, ErrStopped) {
			t.Fatalf("Consume after Shutdown = %v, want ErrStopped", err)
		}
	})
}

func TestConcurrentConsumeAccounting(t *testing.T) {
	h := newHarness(t, testConfig(), 0)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for range 20 {
				b, _ := proto.Marshal(otlptest.DefaultBatch().Request(r))
				var req otlpwire.Request
				if err := req.Scan(b); err != nil {
					t.Error(err)
					return
				}
				if err := h.engine.Consume(context.Background(), &req); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	h.shutdown()
	s := h.checkAccounting()
	if s.Accepted != 4*20*500 || s.Buffered != 0 {
		t.Fatalf("accepted %d spans (want %d), %d still buffered", s.Accepted, 4*20*500, s.Buffered)
	}
	// DefaultBatch marks traces 0, 20 and 40 of each 50 with an error:
	// exactly those are kept.
	if want := int64(4 * 20 * 3); s.TracesKept != want {
		t.Fatalf("kept %d traces, want %d", s.TracesKept, want)
	}
	es := h.exp.Stats()
	if es.Sent != s.Kept || es.Failed != 0 {
		t.Fatalf("exporter sent %d failed %d, engine kept %d", es.Sent, es.Failed, s.Kept)
	}
}

// TestTraceLimitDecidesAtOnce: a trace reaching max_trace_spans is decided
// by the policies at the next tick, not at decision_wait, and its later
// spans follow the decision like any late span.
func TestTraceLimitDecidesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bc := buffer.DefaultConfig()
		bc.MaxTraceSpans = 50
		h := newHarnessBuffer(t, testConfig(), bc)
		big, bigDropped := otlptest.TraceID(h.rng), otlptest.TraceID(h.rng)
		parent := otlptest.SpanID(h.rng) // no root yet: only the limit can make them due
		for r := range 5 {
			var spans []*tracepb.Span
			for i := range 10 {
				spans = append(spans, h.span(big, parent, time.Millisecond, r == 0 && i == 0),
					h.span(bigDropped, parent, time.Millisecond, false))
			}
			if err := h.send(spans...); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond) // a few ticks, far from decision_wait
		s := h.checkAccounting()
		if s.TracesKept != 1 || s.TracesDropped != 1 || s.LimitedTraces != 2 || s.Buffered != 0 {
			t.Fatalf("after 50 spans each: %+v, want both decided at once (one kept, one dropped)", s)
		}
		if err := h.send(h.span(big, parent, time.Millisecond, false), h.span(bigDropped, parent, time.Millisecond, false)); err != nil {
			t.Fatal(err)
		}
		if s = h.checkAccounting(); s.LateKept != 1 || s.DroppedLate != 1 || s.Buffered != 0 {
			t.Fatalf("later spans: %+v, want them to follow the decisions", s)
		}
		if x := h.engine.Explain([16]byte(big)); x.Status != "kept" || !x.TraceLimit || x.Spans != 50 {
			t.Fatalf("explain: %+v", x)
		}
		h.shutdown()
		if n := len(h.out.spanIDs(t)[[16]byte(big)]); n != 51 {
			t.Fatalf("kept trace arrived with %d spans, want 51", n)
		}
	})
}
