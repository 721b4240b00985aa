package otlpjson

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func oneSpan(sp *tracepb.Span) *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{sp}}},
	}}}
}

func encode(t *testing.T, req *coltracepb.ExportTraceServiceRequest) string {
	t.Helper()
	pb, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Encode([]byte("prefix"), pb)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	s, ok := strings.CutPrefix(string(out), "prefix")
	if !ok {
		t.Fatalf("Encode did not append to dst: %q", out)
	}
	return s
}

func TestEncodeExact(t *testing.T) {
	got := encode(t, oneSpan(&tracepb.Span{
		TraceId:           tidBytes,
		SpanId:            sidBytes,
		Name:              "GET /",
		Kind:              tracepb.Span_SPAN_KIND_SERVER,
		StartTimeUnixNano: 1544712660000000000,
		Attributes: []*commonpb.KeyValue{
			otlptest.Int("n", -7),
			{Key: "d", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 1e-7}}},
			{Key: "b", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{0xfb, 0xff}}}},
		},
		Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR},
	}))
	want := `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"` + tid + `","spanId":"` + sid + `","name":"GET /","kind":2,` +
		`"startTimeUnixNano":"1544712660000000000","attributes":[{"key":"n","value":{"intValue":"-7"}},` +
		`{"key":"d","value":{"doubleValue":1e-7}},{"key":"b","value":{"bytesValue":"+/8="}}],"status":{"code":2}}]}]}]}`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestEncodeShape checks the OTLP/JSON rules on a realistic batch: one
// line, lowerCamelCase keys, lowercase hex IDs, 64-bit times as strings.
func TestEncodeShape(t *testing.T) {
	req := otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(1, 2)))
	got := encode(t, req)
	if strings.ContainsAny(got, "\n\r") {
		t.Errorf("output is not a single line")
	}
	if !json.Valid([]byte(got)) {
		t.Fatalf("output is not valid JSON: %s", got)
	}
	sp := req.ResourceSpans[0].ScopeSpans[0].Spans[0]
	for _, want := range []string{
		`"traceId":"` + hex.EncodeToString(sp.TraceId) + `"`,
		`"spanId":"` + hex.EncodeToString(sp.SpanId) + `"`,
		`"startTimeUnixNano":"`,
		`"kind":2`,
		`"intValue":"200"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %s", want)
		}
	}
	keyRE := regexp.MustCompile(`^[a-z][a-zA-Z]*$`)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !keyRE.MatchString(k) {
					t.Errorf("key %q is not lowerCamelCase", k)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(parseJSON(t, []byte(got)))
	for _, m := range regexp.MustCompile(`"(traceId|spanId|parentSpanId)":"([^"]*)"`).FindAllStringSubmatch(got, -1) {
		if !regexp.MustCompile(`^([0-9a-f]{16}|[0-9a-f]{32})$`).MatchString(m[2]) {
			t.Errorf("%s %q is not lowercase hex of an ID", m[1], m[2])
		}
	}
}

// TestEncodeStrings checks escaping against encoding/json's reading.
func TestEncodeStrings(t *testing.T) {
	for _, s := range []string{"", `"quoted" \ back`, "tab\tnl\ncr\r\x00\x01\x1f\x7f", "é€😀", "\u2028</script>"} {
		got := encode(t, oneSpan(&tracepb.Span{Name: s}))
		var v struct {
			ResourceSpans []struct {
				ScopeSpans []struct{ Spans []struct{ Name *string } }
			}
		}
		if err := json.Unmarshal([]byte(got), &v); err != nil {
			t.Fatalf("%q: %v in %s", s, err, got)
		}
		if name := v.ResourceSpans[0].ScopeSpans[0].Spans[0].Name; s != "" && (name == nil || *name != s) {
			t.Errorf("%q encoded as %s", s, got)
		}
	}
}

func TestEncodeFloats(t *testing.T) {
	for _, x := range []float64{0, math.Copysign(0, -1), 1, -1.5, 1e20, 1e21, 1e-6, 1e-7, math.MaxFloat64, math.SmallestNonzeroFloat64,
		math.NaN(), math.Inf(1), math.Inf(-1), 0.1 + 0.2} {
		req := oneSpan(&tracepb.Span{Attributes: []*commonpb.KeyValue{
			{Key: "x", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: x}}}}})
		js := roundTrip(t, req)
		if !json.Valid(js) {
			t.Errorf("%v encoded as invalid JSON %s", x, js)
		}
		got := decodeRequest(t, string(js)).ResourceSpans[0].ScopeSpans[0].Spans[0].Attributes[0].Value.GetDoubleValue()
		if math.Signbit(got) != math.Signbit(x) {
			t.Errorf("%v came back as %v", x, got)
		}
	}
}

func TestEncodeMalformed(t *testing.T) {
	badUTF8 := protowire.AppendTag(nil, 1, protowire.BytesType) // resourceSpans
	inner := protowire.AppendTag(nil, 3, protowire.BytesType)   // schemaUrl
	inner = protowire.AppendBytes(inner, []byte("\xff"))
	badUTF8 = protowire.AppendBytes(badUTF8, inner)
	for name, pb := range map[string][]byte{
		"truncated":    {0x0a, 0x05, 0x01},
		"bad wire":     {0xff, 0xff, 0xff},
		"invalid UTF8": badUTF8,
	} {
		out, err := Encode([]byte("prefix"), pb)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error %v does not wrap ErrMalformed", name, err)
		}
		if !bytes.Equal(out, []byte("prefix")) {
			t.Errorf("%s: dst changed to %q", name, out)
		}
	}
}
