package decision

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlpjson"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/policy"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// exported decodes what the exporter wrote into spans.
func (l *lockedBuffer) exported(t *testing.T) []*tracepb.Span {
	t.Helper()
	var out []*tracepb.Span
	sc := bufio.NewScanner(bytes.NewReader(l.Bytes()))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		pb, err := otlpjson.Decode(nil, sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(pb, &req); err != nil {
			t.Fatal(err)
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				out = append(out, ss.Spans...)
			}
		}
	}
	return out
}

func attr(s *tracepb.Span, key string) (string, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.GetStringValue(), true
		}
	}
	return "", false
}

func harnessWith(t *testing.T, cfg Config, policies string) *harness {
	t.Helper()
	h := newHarness(t, cfg, 0)
	set, err := policy.Parse("test", []byte(policies))
	if err != nil {
		t.Fatal(err)
	}
	h.engine.SetPolicies(set)
	return h
}

// TestSamplingWeights: a trace kept at p=0.5 carries ot=th:8 on every span,
// late spans included, keeping the incoming rv; a trace kept by a
// condition keeps its tracestate as it came.
func TestSamplingWeights(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.RuleAttribute = true
		h := harnessWith(t, cfg, "rules:\n  - name: errors\n    type: error\n  - name: half\n    type: probabilistic\n    percentage: 50\n")
		var sampled, errTrace []byte
		for sampled == nil { // a trace the 50% rule keeps
			id := otlptest.TraceID(h.rng)
			if policy.KeepByTraceID([16]byte(id), 0.5) {
				sampled = id
			}
		}
		errTrace = otlptest.TraceID(h.rng)
		root := h.span(sampled, nil, time.Millisecond, false)
		root.TraceState = "ot=rv:0123456789abcd,other=1"
		child := h.span(sampled, root.SpanId, time.Millisecond, false)
		errRoot := h.span(errTrace, nil, time.Millisecond, true)
		errRoot.TraceState = "ot=th:c"
		h.send(root, child, errRoot)
		time.Sleep(3 * time.Second)
		late := h.span(sampled, root.SpanId, time.Millisecond, false)
		h.send(late)
		h.shutdown()

		seen := 0
		for _, s := range h.out.exported(t) {
			switch {
			case bytes.Equal(s.TraceId, sampled):
				seen++
				if !strings.HasPrefix(s.TraceState, "ot=th:8") {
					t.Fatalf("span of a trace kept at p=0.5 has tracestate %q, want ot=th:8...", s.TraceState)
				}
				if bytes.Equal(s.SpanId, root.SpanId) && s.TraceState != "ot=th:8;rv:0123456789abcd,other=1" {
					t.Fatalf("root tracestate %q: rv or the other vendor lost", s.TraceState)
				}
				rule, ok := attr(s, AttrRule)
				if ok != bytes.Equal(s.SpanId, root.SpanId) || (ok && rule != "half") {
					t.Fatalf("rule attribute %q (%v) on span %x: want it on the root only", rule, ok, s.SpanId)
				}
			case bytes.Equal(s.TraceId, errTrace):
				if s.TraceState != "ot=th:c" {
					t.Fatalf("a trace kept by a condition changed its tracestate to %q", s.TraceState)
				}
				if rule, _ := attr(s, AttrRule); rule != "errors" {
					t.Fatalf("rule attribute %q, want errors", rule)
				}
			}
		}
		if seen != 3 {
			t.Fatalf("saw %d spans of the sampled trace, want 3 (with the late one)", seen)
		}
	})
}

// TestShadowForwardsEverything: in shadow mode every trace reaches the
// exporter, its root marked with what the policies decided, and nothing
// is counted dropped.
func TestShadowForwardsEverything(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.Shadow = true
		h := harnessWith(t, cfg, testPolicies)
		kept, dropped := otlptest.TraceID(h.rng), otlptest.TraceID(h.rng)
		h.send(h.span(kept, nil, 0, true), h.span(dropped, nil, 0, false))
		time.Sleep(3 * time.Second)
		h.send(h.span(dropped, otlptest.SpanID(h.rng), 0, false)) // late
		h.shutdown()
		s := h.checkAccounting()
		if s.DroppedPolicy != 0 || s.DroppedLate != 0 || s.TracesDropped != 1 || s.TracesKept != 1 || s.ShadowForwarded != 1 {
			t.Fatalf("shadow accounting: %+v", s)
		}
		marks := map[string]string{}
		spans := 0
		for _, sp := range h.out.exported(t) {
			spans++
			if d, ok := attr(sp, AttrDecision); ok {
				rule, _ := attr(sp, AttrRule)
				marks[string(sp.TraceId)] = d + " by " + rule
			}
		}
		if spans != 3 {
			t.Fatalf("exported %d spans, want all 3", spans)
		}
		if marks[string(kept)] != "keep by errors" || marks[string(dropped)] != "drop by default" {
			t.Fatalf("root marks %v", marks)
		}
	})
}

// TestSpanLevelRulesInTheEngine: rules on the root span and on any span read
// the buffered bytes through the trace view.
func TestSpanLevelRulesInTheEngine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := harnessWith(t, testConfig(), `
rules:
  - name: checkout
    when: {root.attr.http.route: /checkout}
    keep: true
  - name: slow-db
    when: {any_span: {name: SELECT, duration: {gte: 100ms}}}
    keep: true
default: drop
`)
		byRoute, bySpan, neither := otlptest.TraceID(h.rng), otlptest.TraceID(h.rng), otlptest.TraceID(h.rng)
		r1 := h.span(byRoute, nil, time.Millisecond, false)
		r1.Attributes = append(r1.Attributes, otlptest.Str("http.route", "/checkout"))
		r2 := h.span(bySpan, nil, time.Second, false)
		db := h.span(bySpan, r2.SpanId, 200*time.Millisecond, false)
		db.Name = "SELECT"
		r3 := h.span(neither, nil, time.Second, false)
		fast := h.span(neither, r3.SpanId, time.Millisecond, false)
		fast.Name = "SELECT"
		h.send(r1, r2, db, r3, fast)
		time.Sleep(3 * time.Second)
		h.shutdown()
		got := map[string]bool{}
		for _, sp := range h.out.exported(t) {
			got[string(sp.TraceId)] = true
		}
		if !got[string(byRoute)] || !got[string(bySpan)] || got[string(neither)] {
			t.Fatalf("kept: by root route %v, by any span %v, neither %v", got[string(byRoute)], got[string(bySpan)], got[string(neither)])
		}
	})
}
