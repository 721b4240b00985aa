package export

import (
	"bytes"
	"context"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlpclient"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// thP10 is the threshold of keep probability 0.1: round((1-0.1) * 2^56), as
// policy.ThresholdFor(0.1) (internal/tracestate's tests check the two agree).
const thP10 = 0xe6666666666666

const rv = "rv:0123456789abcd"

// keptAtP10 maps an incoming tracestate to the one a span kept at p=0.1
// must carry.
var keptAtP10 = map[string]string{
	"":                                    "ot=th:e6666666666666",
	"ot=" + rv:                            "ot=th:e6666666666666;" + rv,
	"vendor=a,ot=th:8;" + rv:              "ot=th:e6666666666666;" + rv + ",vendor=a", // 0.5 before: 0.1 now
	"ot=th:f8;" + rv:                      "ot=th:f8;" + rv,                           // more restrictive: kept
	"ot=garbage,vendor=b":                 "ot=th:e6666666666666,vendor=b",
	"ot=th:e6666666666666;" + rv:          "ot=th:e6666666666666;" + rv, // already right
	"ot=" + rv + ",a=1,b=2,c=3,d=4,e=5,f": "ot=th:e6666666666666;" + rv + ",a=1,b=2,c=3,d=4,e=5,f",
}

var ruleAttr = Attribute{"tailsift.rule", "sample-10pct"}

// keepRequest is a realistic request whose traces carry the incoming
// tracestates of keptAtP10 (one per trace, and none on each trace's third
// span), and whose first root span already has a stale rule attribute.
func keepRequest(seed uint64, b otlptest.Batch) *coltracepb.ExportTraceServiceRequest {
	req := b.Request(rand.New(rand.NewPCG(seed, seed^0x51)))
	states := []string{"ot=" + rv, "", "vendor=a,ot=th:8;" + rv, "ot=th:f8;" + rv, "ot=garbage,vendor=b",
		"ot=th:e6666666666666;" + rv, "ot=" + rv + ",a=1,b=2,c=3,d=4,e=5,f"}
	trace := map[string]int{}
	stale := false
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				ti, ok := trace[string(sp.TraceId)]
				if !ok {
					ti = len(trace)
					trace[string(sp.TraceId)] = ti
				}
				sp.TraceState = states[ti%len(states)]
				if sp.EndTimeUnixNano%3 == 2 {
					sp.TraceState = ""
				}
				if len(sp.ParentSpanId) == 0 && !stale {
					sp.Attributes = append(sp.Attributes, otlptest.Str(ruleAttr.Key, "stale"))
					stale = true
				}
			}
		}
	}
	return req
}

// expectKept returns f with the spans a sink must receive for traces kept
// at p=0.1 with root attributes attrs.
func expectKept(t *testing.T, f *fixture, attrs ...Attribute) *fixture {
	t.Helper()
	out := *f
	out.want = maps.Clone(f.want)
	for id, w := range out.want {
		sp := proto.Clone(w.span).(*tracepb.Span)
		ts, ok := keptAtP10[sp.TraceState]
		if !ok {
			t.Fatalf("no expectation for incoming tracestate %q", sp.TraceState)
		}
		sp.TraceState = ts
		if len(sp.ParentSpanId) == 0 && len(attrs) > 0 {
			kept := sp.Attributes[:0:0]
			for _, a := range sp.Attributes {
				if !hasKey(attrs, a.Key) {
					kept = append(kept, a)
				}
			}
			for _, a := range attrs {
				kept = append(kept, otlptest.Str(a.Key, a.Value))
			}
			sp.Attributes = kept
		}
		w.span = sp
		out.want[id] = w
	}
	return &out
}

func hasKey(attrs []Attribute, key string) bool {
	for _, a := range attrs {
		if a.Key == key {
			return true
		}
	}
	return false
}

// exportLate sends tr as late spans: one ExportSpans per run of a group
// key, from copies that are wiped after the call, as ingest reuses its
// request buffers.
func exportLate(e *Exporter, tr *testTrace, k Keep) {
	for i := 0; i < len(tr.spans); {
		j := i
		for j < len(tr.spans) && sameGroup(tr.keys[j], tr.keys[i]) {
			j++
		}
		key := cloneGroup(tr.keys[i])
		spans := make([][]byte, 0, j-i)
		for _, s := range tr.spans[i:j] {
			spans = append(spans, bytes.Clone(s))
		}
		e.ExportSpans(key, spans, k)
		wipeGroup(key)
		for _, s := range spans {
			clear(s)
		}
		i = j
	}
}

// TestKeepAtP10GRPC: traces kept at p=0.1 reach a real gRPC sink with the
// threshold in every span's tracestate (incoming rv and other members
// kept, a more restrictive incoming threshold kept), the rule attribute on
// root spans only (replacing a stale one), everything else unchanged; late
// spans get the same; every span is accounted for.
func TestKeepAtP10GRPC(t *testing.T) {
	f := fixtureOf(t, keepRequest(1, otlptest.Batch{Services: 3, Traces: 14, SpansPerTrace: 5, AttrsPerSpan: 4, SpanDurationNs: 1}))
	want := expectKept(t, f, ruleAttr)
	sink := startGRPCSink(t, nil)
	cfg := fastRetries(DefaultConfig())
	cfg.Endpoint = sink.addr
	e, reg := newTestExporter(t, cfg)
	k := Keep{Threshold: thP10, RootAttributes: []Attribute{ruleAttr}}
	for i, tr := range f.traces {
		if i%2 == 0 {
			e.ExportTrace(tr, k)
		} else {
			exportLate(e, tr, k)
		}
	}
	shutdown(t, e)

	_, reqs := sink.received()
	checkDelivered(t, want, reqs, true)
	checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: f.spans()}, map[string]int64{})

	// Spelled out for the headline case.
	var withRV, roots int
	for _, r := range reqs {
		for _, rs := range r.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					if sp.TraceState == "ot=th:e6666666666666;"+rv {
						withRV++
					}
					n := 0
					for _, a := range sp.Attributes {
						if a.Key == ruleAttr.Key {
							n++
							if a.Value.GetStringValue() != ruleAttr.Value {
								t.Errorf("span %x: %s = %v", sp.SpanId, a.Key, a.Value)
							}
						}
					}
					if root := len(sp.ParentSpanId) == 0; root && n != 1 || !root && n != 0 {
						t.Errorf("span %x (root %v) has %d %s attributes", sp.SpanId, root, n, ruleAttr.Key)
					}
					if n == 1 {
						roots++
					}
				}
			}
		}
	}
	if withRV == 0 || roots != len(f.traces) {
		t.Errorf("%d spans with th and rv, %d marked roots (want some, and %d)", withRV, roots, len(f.traces))
	}
}

// recordingSender keeps every request it is given.
type recordingSender struct {
	mu   sync.Mutex
	reqs [][]byte
}

func (s *recordingSender) send(_ context.Context, req []byte) (otlpclient.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, bytes.Clone(req))
	return otlpclient.Result{}, nil
}

func (s *recordingSender) close() error { return nil }

// rawSpans scans the recorded requests: span ID -> encoded span.
func (s *recordingSender) rawSpans(t *testing.T) map[[8]byte][]byte {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[[8]byte][]byte{}
	for _, b := range s.reqs {
		var r otlpwire.Request
		if err := r.Scan(b); err != nil {
			t.Fatal(err)
		}
		for _, sp := range r.Spans {
			out[sp.SpanID] = sp.Raw
		}
	}
	return out
}

// traceStateFields counts the trace_state fields of an encoded span.
func traceStateFields(t *testing.T, span []byte) int {
	t.Helper()
	n := 0
	for len(span) > 0 {
		num, typ, m := protowire.ConsumeTag(span)
		if m < 0 {
			t.Fatal("malformed span")
		}
		if num == 3 {
			n++
		}
		span = span[m:]
		m = protowire.ConsumeFieldValue(num, typ, span)
		span = span[m:]
	}
	return n
}

// TestKeepBytes checks the edits at the byte level: a span that needs no
// change is forwarded byte for byte and without a copy; a changed span
// loses its old trace_state field instead of carrying two.
func TestKeepBytes(t *testing.T) {
	f := fixtureOf(t, keepRequest(2, otlptest.Batch{Services: 2, Traces: 7, SpansPerTrace: 3, AttrsPerSpan: 2, SpanDurationNs: 1}))
	orig := map[[8]byte][]byte{}
	for _, tr := range f.traces {
		for _, s := range tr.spans {
			orig[[8]byte(spanID(t, s))] = s
		}
	}
	for _, tc := range []struct {
		name      string
		keep      Keep
		unchanged func(in string) bool // which spans must arrive byte for byte
	}{
		{"threshold 0", Keep{}, func(string) bool { return true }},
		{"probability 0 has no encoding", Keep{Threshold: 1 << 56}, func(string) bool { return true }},
		{"p=0.1", Keep{Threshold: thP10}, func(in string) bool { return keptAtP10[in] == in }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &recordingSender{}
				e, err := newExporter(DefaultConfig().EnsureDefaults(), nil, nil, s)
				if err != nil {
					t.Fatal(err)
				}
				copied := 0
				for _, tr := range f.traces {
					e.ExportTrace(tr, tc.keep)
					e.mu.Lock()
					copied = len(e.arena) // the batch holds every trace: never reset
					e.mu.Unlock()
				}
				shutdown(t, e)
				got := s.rawSpans(t)
				wantCopied := 0
				for id, in := range orig {
					out, ok := got[id]
					if !ok {
						t.Fatalf("span %x not sent", id)
					}
					ts := string(otlpwire.SpanTraceState(in))
					if tc.unchanged(ts) {
						if !bytes.Equal(out, in) {
							t.Errorf("span %x (tracestate %q) changed", id, ts)
						}
						continue
					}
					wantCopied += len(out)
					if got := string(otlpwire.SpanTraceState(out)); got != keptAtP10[ts] {
						t.Errorf("span %x: tracestate %q, want %q", id, got, keptAtP10[ts])
					}
					if n := traceStateFields(t, out); n != 1 {
						t.Errorf("span %x has %d trace_state fields, want 1", id, n)
					}
				}
				if copied != wantCopied {
					t.Errorf("%d bytes copied into the arena, want %d (the changed spans)", copied, wantCopied)
				}
			})
		})
	}
}

func spanID(t *testing.T, span []byte) []byte {
	t.Helper()
	sp := &tracepb.Span{}
	if err := proto.Unmarshal(span, sp); err != nil {
		t.Fatal(err)
	}
	return sp.SpanId
}

// keptSize is what the trace adds to a batch once edited by k.
func (t *testTrace) keptSize(k Keep) int {
	c := newCollector().(*collector)
	t.Spans()(c.yield)
	c.edit(&k)
	return estimate(c.refs)
}

// TestKeepBatchLimits: edited spans count with their new size, so requests
// stay within BatchMaxBytes and traces stay whole.
func TestKeepBatchLimits(t *testing.T) {
	k := Keep{Threshold: thP10, RootAttributes: []Attribute{ruleAttr, {"tailsift.shadow", "would-drop"}}}
	attrs := k.RootAttributes
	synctest.Test(t, func(t *testing.T) {
		f := fixtureOf(t, keepRequest(3, otlptest.DefaultBatch()))
		if grown, plain := f.traces[0].keptSize(k), f.traces[0].requestSize(); grown <= plain {
			t.Fatalf("edited trace size %d, plain %d: the edit should grow it", grown, plain)
		}
		cfg := DefaultConfig()
		cfg.BatchMaxBytes = 3*f.traces[0].keptSize(k) + 100
		e, reg, out := newSyncExporter(t, cfg)
		for _, tr := range f.traces {
			e.ExportTrace(tr, k)
		}
		shutdown(t, e)
		reqs := out.requests(t)
		if len(reqs) < len(f.traces)/4 {
			t.Errorf("%d requests, want about %d", len(reqs), len(f.traces)/3)
		}
		checkDelivered(t, expectKept(t, f, attrs...), reqs, true)
		for i, r := range reqs {
			if n := proto.Size(r); n > cfg.BatchMaxBytes {
				t.Errorf("request %d has %d bytes, more than BatchMaxBytes %d", i, n, cfg.BatchMaxBytes)
			}
		}
		checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: f.spans()}, map[string]int64{})
	})
	synctest.Test(t, func(t *testing.T) {
		f := fixtureOf(t, keepRequest(4, otlptest.Batch{Services: 3, Traces: 2, SpansPerTrace: 40, AttrsPerSpan: 8, SpanDurationNs: 1}))
		cfg := DefaultConfig()
		cfg.BatchMaxBytes = f.traces[0].keptSize(k) / 3
		e, reg, out := newSyncExporter(t, cfg)
		e.ExportTrace(f.traces[0], k)
		exportLate(e, f.traces[1], k)
		shutdown(t, e)
		reqs := out.requests(t)
		checkDelivered(t, expectKept(t, f, attrs...), reqs, false)
		for i, r := range reqs {
			if n := proto.Size(r); n > cfg.BatchMaxBytes {
				t.Errorf("split request %d has %d bytes, more than BatchMaxBytes %d", i, n, cfg.BatchMaxBytes)
			}
		}
		checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: f.spans()}, map[string]int64{})
	})
}

// TestKeepConcurrent runs edited exports from several goroutines (pooled
// collectors, one arena) against Shutdown, under the race detector in CI.
func TestKeepConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fixtureOf(t, keepRequest(5, otlptest.DefaultBatch()))
		cfg := DefaultConfig()
		cfg.BatchMaxBytes = 8 << 10
		cfg.QueueSize = 1000
		e, reg, out := newSyncExporter(t, cfg)
		k := Keep{Threshold: thP10, RootAttributes: []Attribute{ruleAttr}}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := g; i < len(f.traces); i += 4 {
					if i%3 == 0 {
						exportLate(e, f.traces[i], k)
					} else {
						e.ExportTrace(f.traces[i], k)
					}
				}
			})
		}
		wg.Wait()
		shutdown(t, e)
		checkDelivered(t, expectKept(t, f, ruleAttr), out.requests(t), false)
		checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: f.spans()}, map[string]int64{})
	})
}

// TestKeepInvalidUTF8Attribute: an attribute that is not UTF-8 must not make
// the request undecodable (proto3 strings are UTF-8).
func TestKeepInvalidUTF8Attribute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 6, otlptest.Batch{Services: 1, Traces: 2, SpansPerTrace: 2, SpanDurationNs: 1})
		e, _, out := newSyncExporter(t, DefaultConfig())
		e.ExportTrace(f.traces[0], Keep{RootAttributes: []Attribute{{"rule", "bad\xff"}}})
		shutdown(t, e)
		reqs := out.requests(t) // decodes, or fails the test
		var got []*commonpb.KeyValue
		for _, rs := range reqs[0].ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					for _, a := range sp.Attributes {
						if a.Key == "rule" {
							got = append(got, a)
						}
					}
				}
			}
		}
		if len(got) != 1 || got[0].Value.GetStringValue() != "bad\uFFFD" {
			t.Errorf("rule attributes %v, want one \"bad\\uFFFD\"", got)
		}
	})
}

var keepCases = []struct {
	name string
	keep Keep
}{
	{"keep=1", Keep{}},
	{"threshold", Keep{Threshold: thP10}},
	{"threshold+rule", Keep{Threshold: thP10, RootAttributes: []Attribute{ruleAttr}}},
}

// TestExportTraceKeepAllocs guards the edit path: changed spans are built
// into reused buffers, with no allocation per span.
func TestExportTraceKeepAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	f := fixtureOf(t, keepRequest(22, otlptest.DefaultBatch()))
	for _, kc := range keepCases {
		t.Run(kc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.QueueSize = 1024
			e, err := newExporter(cfg.EnsureDefaults(), nil, nil, discardSender{})
			if err != nil {
				t.Fatal(err)
			}
			defer shutdown(t, e)
			i := 0
			export := func() {
				e.ExportTrace(f.traces[i%len(f.traces)], kc.keep)
				i++
			}
			for range 1000 {
				export()
			}
			if avg := testing.AllocsPerRun(1000, export); avg > 1.1 {
				t.Errorf("ExportTrace allocates %.2f times per trace, want at most the iterator's 1 (+ a request buffer per batch)", avg)
			}
		})
	}
}

// BenchmarkExportTraceKeep compares ExportTrace of 10-span traces with
// incoming tracestates, unchanged and with a threshold (and a root
// attribute) written into them.
func BenchmarkExportTraceKeep(b *testing.B) {
	f := fixtureOf(b, keepRequest(21, otlptest.DefaultBatch()))
	spans := 0
	for _, tr := range f.traces {
		spans += len(tr.spans)
	}
	for _, kc := range keepCases {
		b.Run(kc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.QueueSize = 1024
			e, err := newExporter(cfg.EnsureDefaults(), nil, nil, discardSender{})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(f.raw) / len(f.traces)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e.ExportTrace(f.traces[i%len(f.traces)], kc.keep)
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i)/(float64(spans)/float64(len(f.traces))), "ns/span")
			b.StopTimer()
			if err := e.Shutdown(context.Background()); err != nil {
				b.Fatal(err)
			}
			if s := e.Stats(); s.Failed != 0 {
				b.Fatalf("Stats = %+v: the queue overflowed", s)
			}
		})
	}
}
