package otlpjson

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlptest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

// FuzzDecode checks that Decode never panics, accepts only valid JSON, and
// that what it accepts survives Encode -> Decode unchanged. The checked-in
// corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte(`{}`))
	f.Add([]byte(inSpan(`"traceId":"` + tid + `","spanId":"` + sid + `","parentSpanId":"","kind":"SPAN_KIND_CLIENT"`)))
	f.Add([]byte(inSpan(`"attributes":[{"key":"k","value":{"doubleValue":"NaN"}},{"key":"e","value":{"intValue":1.5e1}}]`)))
	f.Add([]byte(inSpan(`"name":"\ud83d\ude00\ud800\u0000"`)))
	for seed := range uint64(3) {
		pb, err := proto.Marshal(otlptest.RandomRequest(rand.New(rand.NewPCG(seed, 1))))
		if err != nil {
			f.Fatal(err)
		}
		js, err := Encode(nil, pb)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(js)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pb, err := Decode([]byte("x"), data)
		if err != nil {
			if string(pb) != "x" {
				t.Fatalf("dst changed on error: %q", pb)
			}
			return
		}
		pb = pb[1:]
		// The transcode never takes more than the JSON did: every field
		// costs at least its key in JSON and at most that in protobuf, so
		// an in-flight request's budget covers its transcode.
		if len(pb) > len(data) {
			t.Fatalf("%d bytes of JSON decoded to %d bytes of protobuf", len(data), len(pb))
		}
		if !json.Valid(data) {
			t.Fatalf("Decode accepted invalid JSON %q", data)
		}
		first := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(pb, first); err != nil {
			t.Fatalf("Decode output does not unmarshal: %v", err)
		}
		if size := proto.Size(first); size != len(pb) {
			t.Fatalf("Decode wrote %d bytes, proto.Marshal would write %d", len(pb), size)
		}
		js, err := Encode(nil, pb)
		if err != nil {
			t.Fatalf("Encode(Decode(x)): %v", err)
		}
		if !json.Valid(js) || bytes.ContainsAny(js, "\n\r") {
			t.Fatalf("Encode wrote invalid or multi-line JSON: %s", js)
		}
		pb2, err := Decode(nil, js)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(x))): %v\njson: %s", err, js)
		}
		second := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(pb2, second); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(first, second) {
			t.Fatalf("Encode -> Decode changed the request\njson: %s\nfirst:  %v\nsecond: %v", js, first, second)
		}
		// Encode's output is canonical: encoding it again changes nothing.
		if js2, err := Encode(nil, pb2); err != nil || !bytes.Equal(js2, js) {
			t.Fatalf("Encode not stable: %v\n%s\n%s", err, js, js2)
		}
	})
}

// TestFuzzCorpus keeps the checked-in corpus honest: files named valid_*
// must decode, files named invalid_* must not.
func TestFuzzCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzDecode/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	for _, name := range files {
		base := filepath.Base(name)
		valid, invalid := strings.HasPrefix(base, "valid_"), strings.HasPrefix(base, "invalid_")
		if !valid && !invalid {
			continue // a fuzzer finding: FuzzDecode itself runs it
		}
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lit, ok := strings.CutPrefix(string(raw), "go test fuzz v1\n[]byte(")
		lit, ok2 := strings.CutSuffix(strings.TrimSpace(lit), ")")
		data, err := strconv.Unquote(lit)
		if !ok || !ok2 || err != nil {
			t.Fatalf("%s: not a []byte corpus file: %v", base, err)
		}
		if _, err := Decode(nil, []byte(data)); (err == nil) != valid {
			t.Errorf("%s: Decode error = %v", base, err)
		}
	}
}
