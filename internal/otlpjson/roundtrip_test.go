package otlpjson

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// roundTrip runs proto -> Encode -> Decode -> proto and returns the JSON.
func roundTrip(t *testing.T, req *coltracepb.ExportTraceServiceRequest) []byte {
	t.Helper()
	pb, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	js, err := Encode(nil, pb)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	back, err := Decode(nil, js)
	if err != nil {
		t.Fatalf("Decode(Encode(req)): %v\njson: %s", err, js)
	}
	got := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(back, got); err != nil {
		t.Fatal(err)
	}
	// proto.Equal treats NaN as equal to NaN, so random doubles compare fine.
	if !proto.Equal(got, req) {
		t.Fatalf("round trip changed the request\njson: %s\ngot:  %v\nwant: %v", js, got, req)
	}
	// Field order may differ from proto.Marshal's, but nothing else: no
	// default values written, no oversized length prefixes.
	if len(back) != len(pb) {
		t.Fatalf("Decode wrote %d bytes, proto.Marshal %d", len(back), len(pb))
	}
	return js
}

func TestRoundTripRandom(t *testing.T) {
	for seed := range uint64(500) {
		roundTrip(t, otlptest.RandomRequest(rand.New(rand.NewPCG(seed, 1))))
	}
}

func TestRoundTripBatch(t *testing.T) {
	roundTrip(t, otlptest.DefaultBatch().Request(rand.New(rand.NewPCG(1, 2))))
}

// TestEncodeMatchesProtojson checks Encode against an independent
// implementation of the proto3 JSON mapping: protojson's output, with its
// base64 IDs rewritten to hex, must be the same JSON value (numbers compared
// as text, so float formatting must match too).
func TestEncodeMatchesProtojson(t *testing.T) {
	for seed := range uint64(200) {
		req := otlptest.RandomRequest(rand.New(rand.NewPCG(seed, 1)))
		pb, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Encode(nil, pb)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := protojson.MarshalOptions{UseEnumNumbers: true}.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		want := parseJSON(t, ref)
		idsToHex(t, want)
		if g := parseJSON(t, got); !reflect.DeepEqual(g, want) {
			t.Fatalf("seed %d: Encode differs from protojson\ngot:  %s\nref:  %s", seed, got, ref)
		}
	}
}

// TestDecodeProtojsonOutput decodes what protojson writes by default (enum
// names, base64 IDs rewritten to hex, escapes from encoding/json).
func TestDecodeProtojsonOutput(t *testing.T) {
	for seed := range uint64(200) {
		req := otlptest.RandomRequest(rand.New(rand.NewPCG(seed, 1)))
		ref, err := protojson.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		tree := parseJSON(t, ref)
		idsToHex(t, tree)
		in, err := json.Marshal(tree)
		if err != nil {
			t.Fatal(err)
		}
		pb, err := Decode(nil, in)
		if err != nil {
			t.Fatalf("seed %d: %v\njson: %s", seed, err, in)
		}
		got := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(pb, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, req) {
			t.Fatalf("seed %d: Decode differs\njson: %s\ngot:  %v\nwant: %v", seed, in, got, req)
		}
	}
}

func parseJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("invalid JSON %s: %v", b, err)
	}
	return v
}

// idsToHex rewrites the ID fields of a protojson tree from base64 to hex.
func idsToHex(t *testing.T, v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			switch k {
			case "traceId", "spanId", "parentSpanId":
				raw, err := base64.StdEncoding.DecodeString(x.(string))
				if err != nil {
					t.Fatal(err)
				}
				v[k] = hex.EncodeToString(raw)
			default:
				idsToHex(t, x)
			}
		}
	case []any:
		for _, x := range v {
			idsToHex(t, x)
		}
	}
}

// TestDecodeOutputScans feeds Decode's output to the hot path's scanner.
// The JSON comes with keys sorted alphabetically (encoding/json's order), so
// the protobuf fields come out of field-number order, which the scanner
// must take as any protobuf parser does.
func TestDecodeOutputScans(t *testing.T) {
	var r otlpwire.Request
	for seed := range uint64(100) {
		req := otlptest.RandomRequest(rand.New(rand.NewPCG(seed, 1)))
		js := roundTrip(t, req)
		sorted, err := json.Marshal(parseJSON(t, js))
		if err != nil {
			t.Fatal(err)
		}
		pb, err := Decode(nil, sorted)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Scan(pb); err != nil {
			t.Fatalf("seed %d: otlpwire cannot scan Decode's output: %v", seed, err)
		}
		var want []*tracepb.Span
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				want = append(want, ss.Spans...)
			}
		}
		if len(r.Spans) != len(want) {
			t.Fatalf("seed %d: scanned %d spans, want %d", seed, len(r.Spans), len(want))
		}
		for i, s := range r.Spans {
			w := want[i]
			if !bytes.Equal(s.TraceID[:], w.TraceId) || !bytes.Equal(s.SpanID[:], w.SpanId) ||
				s.StartUnixNano != w.StartTimeUnixNano || s.EndUnixNano != w.EndTimeUnixNano ||
				s.Kind != int32(w.Kind) || s.StatusCode != int32(w.GetStatus().GetCode()) || spanName(s.Raw) != w.Name {
				t.Fatalf("seed %d span %d: scanned %+v\nwant %v", seed, i, s, w)
			}
		}
	}
}

func spanName(raw []byte) string {
	f, _ := otlpwire.SpanFields(raw)
	return string(f.Name)
}
