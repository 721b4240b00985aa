package workload

import (
	"bytes"
	"encoding/hex"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlpwire"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

var testStart = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func build(tb testing.TB, cfg Config, rate float64, d time.Duration) *Schedule {
	tb.Helper()
	s, err := Build(cfg, testStart, rate, d)
	if err != nil {
		tb.Fatalf("Build: %v", err)
	}
	return s
}

// seenSpan is what the checker learns about one span from the bodies.
type seenSpan struct {
	req        int // request index
	start, end time.Duration
	parent     int // span index, -1 for none
	service    string
	kind       tracepb.Span_SpanKind
	err        bool
	attrs      int
	flags      uint32
	user       string // enduser.id
}

// decoded is the schedule as read back from the bodies.
type decoded struct {
	spans [][]seenSpan // by manifest index, then span index
	seen  [][]bool
	attrs int          // attributes over all spans
	conns map[int]bool // connections used
}

func (d *decoded) totalSpans() int {
	n := 0
	for _, s := range d.spans {
		n += len(s)
	}
	return n
}

// checkSchedule reads every request back, with the sampler's scanner and
// with proto.Unmarshal, and checks every structural promise of Build.
func checkSchedule(t *testing.T, s *Schedule) *decoded {
	t.Helper()
	cfg := s.Config
	m := s.Manifest
	if len(m.Traces) == 0 {
		t.Fatal("no traces")
	}
	d := &decoded{spans: make([][]seenSpan, len(m.Traces)), seen: make([][]bool, len(m.Traces))}
	index := make(map[[16]byte]int32, len(m.Traces))
	for i := range m.Traces {
		if _, dup := index[m.Traces[i].ID]; dup || m.Traces[i].ID == ([16]byte{}) {
			t.Fatalf("trace %d: ID %x zero or used twice", i, m.Traces[i].ID)
		}
		index[m.Traces[i].ID] = int32(i)
		d.spans[i] = make([]seenSpan, m.Traces[i].Spans)
		d.seen[i] = make([]bool, m.Traces[i].Spans)
	}
	base := testStart.UnixNano()
	connOf := map[string]int{} // service -> connection
	var scan otlpwire.Request
	spans, bytesTotal := 0, 0
	for ri := range s.Requests {
		r := &s.Requests[ri]
		if ri > 0 && r.At < s.Requests[ri-1].At {
			t.Fatalf("request %d at %v before request %d at %v", ri, r.At, ri-1, s.Requests[ri-1].At)
		}
		if r.Spans < 1 || r.Spans > cfg.BatchSpans {
			t.Fatalf("request %d has %d spans, batches hold 1..%d", ri, r.Spans, cfg.BatchSpans)
		}
		if r.Conn < 0 || r.Conn >= cfg.Connections {
			t.Fatalf("request %d on connection %d of %d", ri, r.Conn, cfg.Connections)
		}
		if err := scan.Scan(r.Body); err != nil {
			t.Fatalf("request %d: otlpwire scan: %v", ri, err)
		}
		if len(scan.Spans) != r.Spans {
			t.Fatalf("request %d: scanned %d spans, Request.Spans = %d", ri, len(scan.Spans), r.Spans)
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(r.Body, &req); err != nil {
			t.Fatalf("request %d: proto.Unmarshal: %v", ri, err)
		}
		spans += r.Spans
		bytesTotal += len(r.Body)

		var traces []int32 // in order of first appearance
		services := map[string]bool{}
		k := 0 // index into scan.Spans, which follows the same order
		for _, rs := range req.ResourceSpans {
			svc := resourceService(rs)
			if svc == "" || services[svc] {
				t.Fatalf("request %d: service %q missing or in two ResourceSpans", ri, svc)
			}
			services[svc] = true
			if c, ok := connOf[svc]; ok && c != r.Conn {
				t.Fatalf("service %s sends on connections %d and %d", svc, c, r.Conn)
			}
			connOf[svc] = r.Conn
			if len(rs.ScopeSpans) != 1 || rs.ScopeSpans[0].Scope.GetName() == "" {
				t.Fatalf("request %d: service %s has %d ScopeSpans, want 1 with a scope", ri, svc, len(rs.ScopeSpans))
			}
			for _, sp := range rs.ScopeSpans[0].Spans {
				w := &scan.Spans[k]
				k++
				ti, ok := index[[16]byte(sp.TraceId)]
				if !ok {
					t.Fatalf("request %d: span of unknown trace %x", ri, sp.TraceId)
				}
				tr := &m.Traces[ti]
				if got, _ := m.Lookup(tr.ID); got != tr {
					t.Fatalf("Manifest.Lookup(%x) is not trace %d", tr.ID, ti)
				}
				if w.TraceID != tr.ID || w.SpanID != [8]byte(sp.SpanId) {
					t.Fatalf("request %d: scanner and proto disagree on span %d", ri, k-1)
				}
				if !slices.Contains(traces, ti) {
					traces = append(traces, ti)
				}
				idx := SpanIndex(tr.ID, [8]byte(sp.SpanId))
				if idx < 0 || idx >= int(tr.Spans) {
					t.Fatalf("trace %d: span ID %x is not SpanID(trace, i) for i < %d", ti, sp.SpanId, tr.Spans)
				}
				if d.seen[ti][idx] {
					t.Fatalf("trace %d: span %d sent twice", ti, idx)
				}
				d.seen[ti][idx] = true
				ss := seenSpan{
					req:     ri,
					start:   time.Duration(int64(sp.StartTimeUnixNano) - base),
					end:     time.Duration(int64(sp.EndTimeUnixNano) - base),
					parent:  -1,
					service: svc,
					kind:    sp.Kind,
					err:     sp.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR,
					attrs:   len(sp.Attributes),
					flags:   sp.Flags,
				}
				if w.StartUnixNano != sp.StartTimeUnixNano || w.EndUnixNano != sp.EndTimeUnixNano || w.IsError() != ss.err {
					t.Fatalf("request %d: scanner and proto disagree on span %d", ri, k-1)
				}
				switch len(sp.ParentSpanId) {
				case 0:
				case 8:
					ss.parent = SpanIndex(tr.ID, [8]byte(sp.ParentSpanId))
					if ss.parent < 0 || ss.parent >= int(tr.Spans) {
						t.Fatalf("trace %d span %d: parent %x is not a span of the trace", ti, idx, sp.ParentSpanId)
					}
				default:
					t.Fatalf("trace %d span %d: parent ID of %d bytes", ti, idx, len(sp.ParentSpanId))
				}
				for _, a := range sp.Attributes {
					switch a.Key {
					case "enduser.id":
						ss.user = a.Value.GetStringValue()
					case "http.request.header.x-request-id":
						if v := a.Value.GetArrayValue().GetValues(); len(v) != 1 || v[0].GetStringValue() != hex.EncodeToString(tr.ID[:]) {
							t.Fatalf("trace %d span %d: x-request-id %v, want the trace ID", ti, idx, a.Value)
						}
					}
				}
				if ss.user == "" {
					t.Fatalf("trace %d span %d: no enduser.id", ti, idx)
				}
				d.attrs += ss.attrs
				d.spans[ti][idx] = ss
			}
		}
		if k != len(scan.Spans) {
			t.Fatalf("request %d: proto has %d spans, scanner %d", ri, k, len(scan.Spans))
		}
		if !slices.Equal(traces, r.Traces) {
			t.Fatalf("request %d: Traces = %v, the body has %v", ri, r.Traces, traces)
		}
	}
	if spans != s.Spans || spans != m.Spans() {
		t.Fatalf("requests carry %d spans; Schedule.Spans = %d, Manifest.Spans() = %d", spans, s.Spans, m.Spans())
	}
	d.conns = map[int]bool{}
	for _, c := range connOf {
		d.conns[c] = true
	}
	if bytesTotal != s.Bytes {
		t.Fatalf("bodies hold %d bytes, Schedule.Bytes = %d", bytesTotal, s.Bytes)
	}

	for ti := range m.Traces {
		checkTrace(t, s, d, ti)
	}
	return d
}

func checkTrace(t *testing.T, s *Schedule, d *decoded, ti int) {
	t.Helper()
	cfg := s.Config
	tr := &s.Manifest.Traces[ti]
	sp := d.spans[ti]
	for i := range sp {
		if !d.seen[ti][i] {
			t.Fatalf("trace %d: span %d of %d never sent", ti, i, len(sp))
		}
	}
	roots, errs := 0, 0
	for i := range sp {
		if sp[i].parent < 0 {
			roots++
		}
		if sp[i].err {
			errs++
		}
	}
	root := &sp[0]
	if roots != 1 || root.parent != -1 || root.kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Fatalf("trace %d: %d roots; span 0 parent %d kind %v, want the one SERVER root", ti, roots, root.parent, root.kind)
	}
	if root.err {
		t.Fatalf("trace %d: the root has status ERROR", ti)
	}
	if want := map[bool]int{false: 0, true: 1}[tr.Error]; errs != want {
		t.Fatalf("trace %d: %d ERROR spans, manifest Error=%v", ti, errs, tr.Error)
	}
	if tr.Duration != root.end-root.start || tr.EndOffset != root.end {
		t.Fatalf("trace %d: manifest Duration %v EndOffset %v, root span [%v, %v]", ti, tr.Duration, tr.EndOffset, root.start, root.end)
	}
	if root.start < 0 || root.start >= s.Duration {
		t.Fatalf("trace %d starts at %v, outside [0, %v)", ti, root.start, s.Duration)
	}

	rootReq := &s.Requests[root.req]
	if root.end > rootReq.At || rootReq.At > root.end+2*cfg.BatchTimeout {
		t.Fatalf("trace %d: root ends at %v, sent at %v", ti, root.end, rootReq.At)
	}
	for i := 1; i < len(sp); i++ {
		c := &sp[i]
		p := &sp[c.parent]
		if !(p.start < c.start && c.end < p.end && c.start <= c.end) {
			t.Fatalf("trace %d: span %d [%v, %v] not strictly inside its parent %d [%v, %v]",
				ti, i, c.start, c.end, c.parent, p.start, p.end)
		}
		depth := 1
		for j := i; j != 0; j = sp[j].parent {
			if depth++; depth > cfg.MaxDepth {
				t.Fatalf("trace %d: span %d deeper than %d levels", ti, i, cfg.MaxDepth)
			}
		}
		remote := p.kind == tracepb.Span_SPAN_KIND_CLIENT && p.service != c.service
		if remote != (c.flags == spanFlagsRemote) || (c.flags != spanFlagsRemote && c.flags != spanFlagsLocal) {
			t.Fatalf("trace %d: span %d flags %#x, parent kind %v in %s, span in %s", ti, i, c.flags, p.kind, p.service, c.service)
		}
		r := &s.Requests[c.req]
		// A span is emitted when it ends, into a batch flushed at most
		// BatchTimeout after its first span.
		if c.end > r.At || c.end < r.At-cfg.BatchTimeout {
			t.Fatalf("trace %d: span %d ends at %v, sent at %v (batch timeout %v)", ti, i, c.end, r.At, cfg.BatchTimeout)
		}
		if r.At > rootReq.At {
			t.Fatalf("trace %d: span %d sent at %v, after the root at %v", ti, i, r.At, rootReq.At)
		}
		if c.user != root.user {
			t.Fatalf("trace %d: span %d has enduser.id %s, the root %s", ti, i, c.user, root.user)
		}
		if c.end >= root.end {
			t.Fatalf("trace %d: span %d ends at %v, not before the root (%v)", ti, i, c.end, root.end)
		}
	}
}

func resourceService(rs *tracepb.ResourceSpans) string {
	for _, a := range rs.GetResource().GetAttributes() {
		if a.Key == "service.name" {
			return a.Value.GetStringValue()
		}
	}
	return ""
}

// sameSchedule reports the first difference between two schedules.
func sameSchedule(a, b *Schedule) (string, bool) {
	if len(a.Requests) != len(b.Requests) || len(a.Manifest.Traces) != len(b.Manifest.Traces) {
		return "sizes differ", false
	}
	for i := range a.Requests {
		x, y := &a.Requests[i], &b.Requests[i]
		if x.At != y.At || x.Conn != y.Conn || x.Spans != y.Spans || !slices.Equal(x.Traces, y.Traces) || !bytes.Equal(x.Body, y.Body) {
			return "request " + strconv.Itoa(i), false
		}
	}
	for i := range a.Manifest.Traces {
		x, y := &a.Manifest.Traces[i], &b.Manifest.Traces[i]
		if x.ID != y.ID || x.Spans != y.Spans || x.Error != y.Error || x.Duration != y.Duration || x.EndOffset != y.EndOffset {
			return "trace " + strconv.Itoa(i), false
		}
	}
	return "", a.Spans == b.Spans && a.Bytes == b.Bytes
}
