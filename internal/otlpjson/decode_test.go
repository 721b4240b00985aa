package otlpjson

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// example is a request as an OTLP/HTTP JSON client sends it, in the style of
// the opentelemetry-proto examples/trace.json, with the variants the spec and
// the proto3 JSON mapping allow: uppercase hex, 64-bit integers as strings
// and as numbers, enum names, base64 bytes.
const example = `{
  "resourceSpans": [
    {
      "resource": {
        "attributes": [
          { "key": "service.name", "value": { "stringValue": "checkout" } }
        ],
        "droppedAttributesCount": 1
      },
      "scopeSpans": [
        {
          "scope": { "name": "my.library", "version": "1.0.0" },
          "spans": [
            {
              "traceId": "5B8EFFF798038103D269B633813FC60C",
              "spanId": "eee19b7ec3c1b174",
              "parentSpanId": "eee19b7ec3c1b173",
              "traceState": "ot=th:8",
              "flags": 257,
              "name": "POST /cart",
              "kind": "SPAN_KIND_SERVER",
              "startTimeUnixNano": "1544712660000000000",
              "endTimeUnixNano": 1544712661000000001,
              "attributes": [
                { "key": "http.response.status_code", "value": { "intValue": "503" } },
                { "key": "retry", "value": { "boolValue": true } },
                { "key": "ratio", "value": { "doubleValue": 0.25 } },
                { "key": "blob", "value": { "bytesValue": "AQID" } },
                { "key": "tags", "value": { "arrayValue": { "values": [ { "stringValue": "a" }, { "intValue": 7 } ] } } },
                { "key": "map", "value": { "kvlistValue": { "values": [ { "key": "x", "value": { "doubleValue": "-Infinity" } } ] } } }
              ],
              "events": [
                { "timeUnixNano": "1544712660500000000", "name": "exception",
                  "attributes": [ { "key": "exception.message", "value": { "stringValue": "timeout \u00e9 \ud83d\ude00" } } ] }
              ],
              "links": [
                { "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "flags": 256 }
              ],
              "status": { "code": "STATUS_CODE_ERROR", "message": "upstream unavailable" },
              "someFutureField": { "ignored": [1, 2, {"deep": null}] }
            }
          ],
          "schemaUrl": "https://opentelemetry.io/schemas/1.26.0"
        }
      ]
    }
  ]
}`

func decodeRequest(t *testing.T, js string) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	pb, err := Decode(nil, []byte(js))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(pb, req); err != nil {
		t.Fatal(err)
	}
	if size := proto.Size(req); size != len(pb) {
		t.Errorf("Decode wrote %d bytes, proto.Marshal would write %d: default values written?", len(pb), size)
	}
	return req
}

func TestDecodeExample(t *testing.T) {
	req := decodeRequest(t, example)
	rs := req.GetResourceSpans()[0]
	if got := rs.GetResource().GetAttributes()[0].GetValue().GetStringValue(); got != "checkout" {
		t.Errorf("service.name = %q", got)
	}
	if got := rs.GetResource().GetDroppedAttributesCount(); got != 1 {
		t.Errorf("resource droppedAttributesCount = %d", got)
	}
	ss := rs.GetScopeSpans()[0]
	if ss.GetScope().GetName() != "my.library" || ss.GetScope().GetVersion() != "1.0.0" {
		t.Errorf("scope = %v", ss.GetScope())
	}
	if got := ss.GetSchemaUrl(); got != "https://opentelemetry.io/schemas/1.26.0" {
		t.Errorf("scope schemaUrl = %q", got)
	}
	sp := ss.GetSpans()[0]
	checkBytes(t, "traceId", sp.GetTraceId(), "5b8efff798038103d269b633813fc60c")
	checkBytes(t, "spanId", sp.GetSpanId(), "eee19b7ec3c1b174")
	checkBytes(t, "parentSpanId", sp.GetParentSpanId(), "eee19b7ec3c1b173")
	if sp.GetTraceState() != "ot=th:8" || sp.GetFlags() != 257 || sp.GetName() != "POST /cart" {
		t.Errorf("traceState, flags, name = %q, %d, %q", sp.GetTraceState(), sp.GetFlags(), sp.GetName())
	}
	if sp.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("kind = %v", sp.GetKind())
	}
	// The number form must not pass through float64, which would round it.
	if sp.GetStartTimeUnixNano() != 1544712660000000000 || sp.GetEndTimeUnixNano() != 1544712661000000001 {
		t.Errorf("times = %d, %d", sp.GetStartTimeUnixNano(), sp.GetEndTimeUnixNano())
	}
	attrs := sp.GetAttributes()
	if len(attrs) != 6 {
		t.Fatalf("%d attributes, want 6", len(attrs))
	}
	if got := attrs[0].GetValue().GetIntValue(); got != 503 {
		t.Errorf("intValue = %d", got)
	}
	if !attrs[1].GetValue().GetBoolValue() {
		t.Errorf("boolValue = false")
	}
	if got := attrs[2].GetValue().GetDoubleValue(); got != 0.25 {
		t.Errorf("doubleValue = %v", got)
	}
	if got := attrs[3].GetValue().GetBytesValue(); !bytes.Equal(got, []byte{1, 2, 3}) {
		t.Errorf("bytesValue = %x", got)
	}
	arr := attrs[4].GetValue().GetArrayValue().GetValues()
	if len(arr) != 2 || arr[0].GetStringValue() != "a" || arr[1].GetIntValue() != 7 {
		t.Errorf("arrayValue = %v", arr)
	}
	kv := attrs[5].GetValue().GetKvlistValue().GetValues()
	if len(kv) != 1 || kv[0].GetKey() != "x" || !math.IsInf(kv[0].GetValue().GetDoubleValue(), -1) {
		t.Errorf("kvlistValue = %v", kv)
	}
	ev := sp.GetEvents()[0]
	if ev.GetTimeUnixNano() != 1544712660500000000 || ev.GetName() != "exception" {
		t.Errorf("event = %v", ev)
	}
	if got := ev.GetAttributes()[0].GetValue().GetStringValue(); got != "timeout é 😀" {
		t.Errorf("escaped string = %q", got)
	}
	link := sp.GetLinks()[0]
	checkBytes(t, "links[0].traceId", link.GetTraceId(), "0102030405060708090a0b0c0d0e0f10")
	checkBytes(t, "links[0].spanId", link.GetSpanId(), "0102030405060708")
	if link.GetFlags() != 256 {
		t.Errorf("link flags = %d", link.GetFlags())
	}
	if sp.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR || sp.GetStatus().GetMessage() != "upstream unavailable" {
		t.Errorf("status = %v", sp.GetStatus())
	}
}

func checkBytes(t *testing.T, name string, got []byte, wantHex string) {
	t.Helper()
	if h := hex.EncodeToString(got); h != wantHex {
		t.Errorf("%s = %s, want %s", name, h, wantHex)
	}
}

const (
	tid = "5b8efff798038103d269b633813fc60c"
	sid = "eee19b7ec3c1b174"
)

var (
	tidBytes = []byte{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c}
	sidBytes = []byte{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74}
)

// inSpan wraps the fields of one span into a request.
func inSpan(fields string) string {
	return `{"resourceSpans":[{"scopeSpans":[{"spans":[{` + fields + `}]}]}]}`
}

func attr(v *commonpb.AnyValue) *tracepb.Span {
	return &tracepb.Span{Attributes: []*commonpb.KeyValue{{Key: "k", Value: v}}}
}

// TestDecodeAccepts covers the forms a lenient-but-correct receiver takes.
func TestDecodeAccepts(t *testing.T) {
	str := func(s string) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
	}
	dbl := func(x float64) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: x}}
	}
	i64 := func(n int64) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: n}}
	}
	byt := func(b ...byte) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: b}}
	}
	value := func(v string) string { return `"attributes":[{"key":"k","value":{` + v + `}}]` }
	tests := []struct {
		name, fields string
		want         *tracepb.Span
	}{
		{"snake_case names", `"trace_id":"` + tid + `","span_id":"` + sid + `","start_time_unix_nano":"5","dropped_attributes_count":2`,
			&tracepb.Span{TraceId: tidBytes, SpanId: sidBytes, StartTimeUnixNano: 5, DroppedAttributesCount: 2}},
		{"uppercase hex", `"traceId":"` + strings.ToUpper(tid) + `"`, &tracepb.Span{TraceId: tidBytes}},
		{"empty parentSpanId", `"parentSpanId":""`, &tracepb.Span{}},
		{"escaped key", `"trace\u0049d":"` + tid + `"`, &tracepb.Span{TraceId: tidBytes}},
		{"int64 max as number", `"endTimeUnixNano":18446744073709551615`, &tracepb.Span{EndTimeUnixNano: math.MaxUint64}},
		{"integer exponent forms", `"startTimeUnixNano":1.5e3,"endTimeUnixNano":"120e-1","droppedEventsCount":0.0`,
			&tracepb.Span{StartTimeUnixNano: 1500, EndTimeUnixNano: 12}},
		{"kind and code as numbers", `"kind":3,"status":{"code":2}`,
			&tracepb.Span{Kind: tracepb.Span_SPAN_KIND_CLIENT, Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}}},
		{"unknown enum number", `"kind":99`, &tracepb.Span{Kind: 99}},
		{"flags as string", `"flags":"769"`, &tracepb.Span{Flags: 769}},
		{"explicit defaults", `"name":"","kind":0,"flags":0,"startTimeUnixNano":"0","droppedAttributesCount":0,"traceState":"","status":{"code":0}`,
			&tracepb.Span{Status: &tracepb.Status{}}},
		{"nulls are defaults", `"name":null,"status":null,"events":null,"kind":null`, &tracepb.Span{}},
		{"unknown fields", `"x":{"y":[true,false,null,-1.5e-3,"s",{}]},"name":"n","z":[]`, &tracepb.Span{Name: "n"}},
		{"int min", value(`"intValue":"-9223372036854775808"`), attr(i64(math.MinInt64))},
		{"int as number", value(`"intValue":-42`), attr(i64(-42))},
		{"NaN", value(`"doubleValue":"NaN"`), attr(dbl(math.NaN()))},
		{"Infinity", value(`"doubleValue":"Infinity"`), attr(dbl(math.Inf(1)))},
		{"double as string", value(`"doubleValue":"-2.5e2"`), attr(dbl(-250))},
		{"double underflow", value(`"doubleValue":1e-400`), attr(dbl(0))},
		{"empty string value", value(`"stringValue":""`), attr(str(""))},
		{"empty AnyValue", value(``), attr(&commonpb.AnyValue{})},
		{"base64 url unpadded", value(`"bytesValue":"-_8"`), attr(byt(0xfb, 0xff))},
		{"base64 std unpadded", value(`"bytesValue":"+/8"`), attr(byt(0xfb, 0xff))},
		{"lone surrogate", value(`"stringValue":"a\ud800b"`), attr(str("a\uFFFDb"))},
		{"escapes", value(`"stringValue":"\"\\\/\b\f\n\r\t\u0041"`), attr(str("\"\\/\b\f\n\r\tA"))},
		{"whitespace", " \t\n\r\"name\" \n:\r \"n\" \t", &tracepb.Span{Name: "n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := decodeRequest(t, inSpan(tt.fields))
			got := req.GetResourceSpans()[0].GetScopeSpans()[0].GetSpans()[0]
			if !proto.Equal(got, tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestDecodeEmpty(t *testing.T) {
	for _, in := range []string{`{}`, ` {"resourceSpans":[]} `, `{"resourceSpans":null}`} {
		out, err := Decode([]byte("prefix"), []byte(in))
		if err != nil || string(out) != "prefix" {
			t.Errorf("Decode(%s) = %q, %v; want just the prefix", in, out, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	const span0 = "resourceSpans[0].scopeSpans[0].spans[0]."
	value := func(v string) string { return inSpan(`"attributes":[{"key":"k","value":{` + v + `}}]`) }
	const attr0 = span0 + "attributes[0].value."
	tests := []struct {
		name, in, want string
	}{
		{"empty input", ``, "want object, got end of input"},
		{"top-level array", `[]`, "want object, got array"},
		{"top-level null", `null`, "want object, got null"},
		{"truncated", `{"resourceSpans":[{"scopeSpans":[`, "resourceSpans[0].scopeSpans[0]: want object, got end of input"},
		{"truncated after key", `{"resourceSpans"`, `want ':', got end of input`},
		{"trailing data", `{} {}`, "unexpected data after the request object"},
		{"trailing comma", `{"resourceSpans":[],}`, "want string, got unexpected character '}'"},
		{"string for array", `{"resourceSpans":"x"}`, "resourceSpans: want array, got string"},
		{"string for object", `{"resourceSpans":["x"]}`, "resourceSpans[0]: want object, got string"},
		{"null element", inSpan(`"name":"a"}, null, {"name":"b"`), "resourceSpans[0].scopeSpans[0].spans[1]: null list element"},
		{"second element", `{"resourceSpans":[{},{"scopeSpans":[{},{"spans":[{},{},{},{"traceId":"00"}]}]}]}`,
			"resourceSpans[1].scopeSpans[1].spans[3].traceId: want 16 bytes"},
		{"bad hex digit", inSpan(`"traceId":"5b8efff798038103d269b633813fc6zz"`), span0 + "traceId: invalid hex digit"},
		{"odd hex", inSpan(`"spanId":"eee19b7ec3c1b17"`), span0 + "spanId: odd number of hex digits"},
		{"short trace ID", inSpan(`"traceId":"5b8efff798038103d269b633813fc6"`), span0 + "traceId: want 16 bytes (32 hex digits), got 15"},
		{"empty trace ID", inSpan(`"traceId":""`), span0 + "traceId: want 16 bytes (32 hex digits), got 0"},
		{"long span ID", inSpan(`"spanId":"` + tid + `"`), span0 + "spanId: want 8 bytes"},
		{"short parent ID", inSpan(`"parentSpanId":"eee19b7e"`), span0 + "parentSpanId: want 8 bytes"},
		{"base64 trace ID", inSpan(`"traceId":"W47/95gDgQPSabYzgT/GDA=="`), span0 + "traceId: want 16 bytes (32 hex digits), got 12; IDs are hex in OTLP/JSON, not base64"},
		{"link trace ID", inSpan(`"links":[{"traceId":"` + tid + `","spanId":"xx"}]`), span0 + "links[0].spanId: want 8 bytes"},
		{"ID as number", inSpan(`"spanId":1`), span0 + "spanId: want string, got number"},
		{"unknown kind name", inSpan(`"kind":"SPAN_KIND_BOGUS"`), span0 + `kind: unknown SpanKind name "SPAN_KIND_BOGUS"`},
		{"unknown code name", inSpan(`"status":{"code":"ERROR"}`), span0 + `status.code: unknown StatusCode name "ERROR"`},
		{"fractional enum", inSpan(`"kind":1.5`), span0 + "kind: 1.5 is not an integer"},
		{"enum as bool", inSpan(`"kind":true`), span0 + "kind: want number, got boolean"},
		{"time not a number", inSpan(`"startTimeUnixNano":"abc"`), span0 + `startTimeUnixNano: want number, got string "abc"`},
		{"time with spaces", inSpan(`"startTimeUnixNano":" 1"`), span0 + `startTimeUnixNano: want number`},
		{"negative time", inSpan(`"startTimeUnixNano":"-1"`), span0 + "startTimeUnixNano: -1 out of range for uint64"},
		{"time overflow", inSpan(`"endTimeUnixNano":18446744073709551616`), "out of range for uint64"},
		{"time huge exponent", inSpan(`"endTimeUnixNano":1e99999999999999999999`), "out of range for uint64"},
		{"fractional time", inSpan(`"endTimeUnixNano":"1.5"`), "1.5 is not an integer"},
		{"uint32 overflow", inSpan(`"droppedAttributesCount":4294967296`), span0 + "droppedAttributesCount: 4294967296 out of range for uint32"},
		{"int64 overflow", value(`"intValue":"9223372036854775808"`), attr0 + "intValue: 9223372036854775808 out of range for int64"},
		{"leading zero", inSpan(`"flags":01`), "spans[0]: want '}', got number"},
		{"lowercase nan", value(`"doubleValue":"nan"`), attr0 + `doubleValue: want number, got string "nan"`},
		{"double overflow", value(`"doubleValue":1e400`), attr0 + "doubleValue: 1e400 out of range for float64"},
		{"bool as string", value(`"boolValue":"true"`), attr0 + "boolValue: want boolean, got string"},
		{"bad base64", value(`"bytesValue":"!!!!"`), attr0 + "bytesValue: invalid base64"},
		{"two oneof members", value(`"stringValue":"a","intValue":"1"`), attr0 + "intValue: oneof value already set by stringValue"},
		{"oneof null then set", value(`"stringValue":null,"intValue":"1","boolValue":true`), attr0 + "boolValue: oneof value already set by intValue"},
		{"duplicate key", inSpan(`"name":"a","name":"b"`), span0 + "name: field given twice"},
		{"duplicate key, both spellings", `{"resourceSpans":[],"resource_spans":[]}`, "resourceSpans: field given twice"},
		{"name as number", inSpan(`"name":5`), span0 + "name: want string, got number"},
		{"unterminated string", inSpan(`"name":"abc`), span0 + "name: unterminated string"},
		{"invalid escape", inSpan(`"name":"a\x"`), `invalid escape 'x' in string`},
		{"short unicode escape", inSpan(`"name":"\u12"`), `invalid \u escape`},
		{"control character", inSpan("\"name\":\"a\nb\""), "control character 0x0a in string"},
		{"invalid UTF-8", inSpan("\"name\":\"a\xffb\""), span0 + "name: invalid UTF-8"},
		{"invalid UTF-8 in key", "{\"\xff\":1}", "invalid UTF-8"},
		{"bad literal", inSpan(`"x":nul`), "invalid literal"},
		{"unknown field bad value", inSpan(`"x":[1,]`), "want number, got unexpected character ']'"},
		{"unknown field deep", `{"x":` + strings.Repeat("[", maxDepth+1), "nesting deeper than 512"},
		{"known fields deep", inSpan(`"attributes":[{"key":"k","value":` + strings.Repeat(`{"arrayValue":{"values":[`, 200)), "nesting deeper than 512"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("prefix")
			out, err := Decode(dst, []byte(tt.in))
			if err == nil {
				t.Fatalf("Decode(%s) succeeded, want error containing %q", tt.in, tt.want)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %q does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\ndoes not contain %q", err, tt.want)
			}
			if string(out) != "prefix" {
				t.Errorf("dst changed to %q on error", out)
			}
		})
	}
}
