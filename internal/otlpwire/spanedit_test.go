package otlpwire

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
)

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func unmarshalSpan(t *testing.T, b []byte) *tracepb.Span {
	t.Helper()
	s := &tracepb.Span{}
	if err := proto.Unmarshal(b, s); err != nil {
		t.Fatalf("edited span does not decode: %v", err)
	}
	return s
}

// editSpan replaces the trace state by cutting the last trace_state field
// and appending a new one, as the exporter does, then adds attributes.
func editSpan(raw []byte, f SpanEditFields, ts string, attrs ...*commonpb.KeyValue) []byte {
	out := append([]byte(nil), raw[:f.TraceStateStart]...)
	out = append(out, raw[f.TraceStateEnd:]...)
	out = AppendSpanTraceState(out, []byte(ts))
	for _, a := range attrs {
		out = AppendSpanStringAttribute(out, a.Key, a.Value.GetStringValue())
	}
	return out
}

// TestSpanEditRoundTrip is the property test: on random spans, the fields
// read are those a decoder sees, and the edited bytes decode to the
// original span with its trace state replaced and the attributes appended,
// everything else unchanged.
func TestSpanEditRoundTrip(t *testing.T) {
	const ts = "ot=th:e6666666666666;rv:0123456789abcd,vendor=x"
	values := []string{"", "keep-slow", "dröp ✓", strings.Repeat("v", 200), strings.Repeat("w", 20000)}
	var req Request
	spans := 0
	for seed := range uint64(500) {
		r := rand.New(rand.NewPCG(seed, 9))
		if err := req.Scan(marshal(t, otlptest.RandomRequest(r))); err != nil {
			t.Fatalf("seed %d: Scan: %v", seed, err)
		}
		for i := range req.Spans {
			raw := req.Spans[i].Raw
			orig := unmarshalSpan(t, raw)
			spans++

			f, ok := ReadSpanEditFields(raw)
			if !ok {
				t.Fatalf("seed %d span %d: ReadSpanEditFields failed on a valid span", seed, i)
			}
			if string(f.TraceState) != orig.TraceState || string(SpanTraceState(raw)) != orig.TraceState {
				t.Fatalf("seed %d span %d: trace state %q, decoder reads %q", seed, i, f.TraceState, orig.TraceState)
			}
			if !bytes.Equal(f.ParentSpanID, orig.ParentSpanId) {
				t.Fatalf("seed %d span %d: parent %x, decoder reads %x", seed, i, f.ParentSpanID, orig.ParentSpanId)
			}
			if f.IsRoot() != req.Spans[i].IsRoot() || SpanIsRoot(raw) != req.Spans[i].IsRoot() {
				t.Fatalf("seed %d span %d: IsRoot %v, Scan says %v", seed, i, f.IsRoot(), req.Spans[i].IsRoot())
			}
			if (f.TraceStateEnd > 0) != (orig.TraceState != "") && f.TraceStateEnd == 0 {
				t.Fatalf("seed %d span %d: trace state present but no field bounds", seed, i)
			}

			attr := strAttr("tailsift.rule", values[r.IntN(len(values))])
			want := proto.Clone(orig).(*tracepb.Span)
			want.TraceState = ts
			want.Attributes = append(want.Attributes, attr)

			// Cut and append (what the exporter writes).
			cut := editSpan(raw, f, ts, attr)
			if got := unmarshalSpan(t, cut); !proto.Equal(got, want) {
				t.Fatalf("seed %d span %d: cut edit decodes to\n%v\nwant\n%v", seed, i, got, want)
			}
			if len(cut) > len(raw)+len(ts)+len(attr.Value.GetStringValue())+len(attr.Key)+16 {
				t.Fatalf("seed %d span %d: edited span has %d bytes from %d: the old trace state was not cut", seed, i, len(cut), len(raw))
			}
			// Plain append (the old trace state stays, overridden).
			app := AppendSpanStringAttribute(AppendSpanTraceState(bytes.Clone(raw), []byte(ts)), attr.Key, attr.Value.GetStringValue())
			if got := unmarshalSpan(t, app); !proto.Equal(got, want) {
				t.Fatalf("seed %d span %d: appended edit decodes to\n%v\nwant\n%v", seed, i, got, want)
			}
			// The edited span reads back the new trace state; cutting its
			// last trace_state field (not the first) and appending works
			// when several occurrences exist.
			g, ok := ReadSpanEditFields(app)
			if !ok || string(g.TraceState) != ts {
				t.Fatalf("seed %d span %d: edited span reads trace state %q, %v", seed, i, g.TraceState, ok)
			}
			again := editSpan(app, g, "b=2")
			want.TraceState = "b=2"
			if got := unmarshalSpan(t, again); !proto.Equal(got, want) {
				t.Fatalf("seed %d span %d: second edit decodes to\n%v\nwant\n%v", seed, i, got, want)
			}

			// Replacing an existing attribute: drop its key, append anew.
			if len(orig.Attributes) > 0 {
				key := orig.Attributes[r.IntN(len(orig.Attributes))].Key
				repl := strAttr(key, "replaced")
				out := AppendSpanWithoutAttributes(nil, raw, func(k []byte) bool { return string(k) == key })
				out = AppendSpanStringAttribute(out, repl.Key, "replaced")
				want := proto.Clone(orig).(*tracepb.Span)
				want.Attributes = want.Attributes[:0]
				for _, a := range orig.Attributes {
					if a.Key != key {
						want.Attributes = append(want.Attributes, a)
					}
				}
				want.Attributes = append(want.Attributes, repl)
				if got := unmarshalSpan(t, out); !proto.Equal(got, want) {
					t.Fatalf("seed %d span %d: replacing %q decodes to\n%v\nwant\n%v", seed, i, key, got, want)
				}
			}
			if out := AppendSpanWithoutAttributes([]byte("x"), raw, func([]byte) bool { return false }); !bytes.Equal(out[1:], raw) {
				t.Fatalf("seed %d span %d: dropping nothing changed the span", seed, i)
			}
		}
	}
	if spans < 1000 {
		t.Fatalf("only %d spans tested", spans)
	}
}

func TestSpanIsRoot(t *testing.T) {
	tid, sid := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 8)
	for _, tc := range []struct {
		name   string
		parent []byte
		root   bool
	}{
		{"absent", nil, true},
		{"all zero", make([]byte, 8), true},
		{"set", []byte{0, 0, 0, 0, 0, 0, 0, 1}, false},
	} {
		raw := marshal(t, &tracepb.Span{TraceId: tid, SpanId: sid, ParentSpanId: tc.parent})
		if tc.parent != nil && len(tc.parent) == 8 && tc.root {
			// proto3 omits empty bytes only: write the zero ID explicitly.
			raw = append(raw, 0x22, 8)
			raw = append(raw, tc.parent...)
		}
		if got := SpanIsRoot(raw); got != tc.root {
			t.Errorf("%s: SpanIsRoot = %v, want %v", tc.name, got, tc.root)
		}
	}
	// An explicit empty parent_span_id after a set one: the last wins.
	raw := marshal(t, &tracepb.Span{TraceId: tid, SpanId: sid, ParentSpanId: sid})
	if SpanIsRoot(raw) || !SpanIsRoot(append(raw, 0x22, 0)) {
		t.Error("the last parent_span_id does not decide")
	}
	if SpanIsRoot(raw[:len(raw)-1]) {
		t.Error("a truncated span is a root")
	}
}

func TestSpanEditMalformed(t *testing.T) {
	raw := marshal(t, &tracepb.Span{TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{2}, 8),
		TraceState: "a=1", Attributes: []*commonpb.KeyValue{strAttr("k", "v")}})
	for n := range len(raw) {
		b := raw[:n]
		f, ok := ReadSpanEditFields(b) // must not panic
		if ok && (f.TraceStateEnd > n || f.TraceStateStart > f.TraceStateEnd) {
			t.Fatalf("prefix %d: field bounds %d:%d out of range", n, f.TraceStateStart, f.TraceStateEnd)
		}
		if out := AppendSpanWithoutAttributes(nil, b, func([]byte) bool { return true }); len(out) > n {
			t.Fatalf("prefix %d: dropping attributes grew the span", n)
		}
	}
}

func TestSpanEditAllocs(t *testing.T) {
	var req Request
	if err := req.Scan(marshal(t, otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(1, 2))))); err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, 0, 4096)
	ts := []byte("ot=th:8")
	i := 0
	n := testing.AllocsPerRun(1000, func() {
		raw := req.Spans[i%len(req.Spans)].Raw
		i++
		f, _ := ReadSpanEditFields(raw)
		dst = append(dst[:0], raw[:f.TraceStateStart]...)
		dst = append(dst, raw[f.TraceStateEnd:]...)
		dst = AppendSpanTraceState(dst, ts)
		if f.IsRoot() {
			dst = AppendSpanWithoutAttributes(dst[:0], raw, func(k []byte) bool { return string(k) == "tailsift.rule" })
			dst = AppendSpanStringAttribute(dst, "tailsift.rule", "keep-slow")
		}
	})
	if n != 0 {
		t.Errorf("editing a span allocates %v times with room in dst", n)
	}
}

// FuzzSpanEdit: reading and editing arbitrary bytes never panics, and on
// whatever the reference decoder accepts as a Span, the edit means what it
// says.
func FuzzSpanEdit(f *testing.F) {
	seeds := 0
	for seed := uint64(0); seeds < 30; seed++ {
		var req Request
		if err := req.Scan(marshal(f, otlptest.RandomRequest(rand.New(rand.NewPCG(seed, 13))))); err != nil {
			f.Fatal(err)
		}
		for _, s := range req.Spans {
			f.Add(s.Raw)
			seeds++
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x1a, 0x03, 'a', '=', '1', 0x1a, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		fields, ok := ReadSpanEditFields(raw)
		dropped := AppendSpanWithoutAttributes(nil, raw, func(k []byte) bool { return len(k)%2 == 0 })
		orig := &tracepb.Span{}
		if err := proto.Unmarshal(raw, orig); err != nil {
			return
		}
		if !ok {
			t.Fatal("ReadSpanEditFields fails on a span the decoder accepts")
		}
		if string(fields.TraceState) != orig.TraceState || !bytes.Equal(fields.ParentSpanID, orig.ParentSpanId) {
			t.Fatalf("read %q/%x, decoder reads %q/%x", fields.TraceState, fields.ParentSpanID, orig.TraceState, orig.ParentSpanId)
		}
		got := unmarshalSpan(t, editSpan(raw, fields, "ot=th:8", strAttr("k", "v")))
		want := proto.Clone(orig).(*tracepb.Span)
		want.TraceState = "ot=th:8"
		want.Attributes = append(want.Attributes, strAttr("k", "v"))
		if !proto.Equal(got, want) {
			t.Fatalf("edit decodes to\n%v\nwant\n%v", got, want)
		}
		got = unmarshalSpan(t, dropped)
		want = proto.Clone(orig).(*tracepb.Span)
		want.Attributes = want.Attributes[:0]
		for _, a := range orig.Attributes {
			if len(a.Key)%2 != 0 {
				want.Attributes = append(want.Attributes, a)
			}
		}
		if !proto.Equal(got, want) {
			t.Fatalf("dropping even-length keys decodes to\n%v\nwant\n%v", got, want)
		}
	})
}

func BenchmarkReadSpanEditFields(b *testing.B) {
	var req Request
	if err := req.Scan(marshal(b, otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(1, 2))))); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(req.SpanBytes() / len(req.Spans)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ReadSpanEditFields(req.Spans[i%len(req.Spans)].Raw)
		i++
	}
}
