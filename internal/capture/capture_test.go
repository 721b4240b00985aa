package capture

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlpjson"
	"github.com/tailsift/tailsift/internal/otlptest"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

func spansIn(t *testing.T, data []byte) int {
	t.Helper()
	n := 0
	err := ReadFrom(bufio.NewReader(bytes.NewReader(data)), "test", func(pb []byte) error {
		var r otlpwire.Request
		if err := r.Scan(pb); err != nil {
			return err
		}
		n += len(r.Spans)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFormats(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var pb, jsonl []byte
	want := 0
	for range 5 {
		b, _ := proto.Marshal(otlptest.DefaultBatch().Request(r))
		pb = append(pb, b...) // concatenated protobuf merges
		js, err := otlpjson.Encode(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		jsonl = append(append(jsonl, js...), '\n')
		want += 500
	}
	if got := spansIn(t, pb); got != want {
		t.Fatalf("protobuf: %d spans, want %d", got, want)
	}
	if got := spansIn(t, jsonl); got != want {
		t.Fatalf("JSON lines: %d spans, want %d", got, want)
	}
	if got := spansIn(t, append([]byte("\n\n"), jsonl...)); got != want {
		t.Fatalf("JSON lines after blank lines: %d spans, want %d", got, want)
	}
	if got := spansIn(t, nil); got != 0 {
		t.Fatalf("empty file: %d spans", got)
	}
	// A protobuf request whose first length byte is '{' (123) is still protobuf.
	if !looksLikeJSON([]byte(`{"resourceSpans":[]}`)) || looksLikeJSON([]byte{0x0a, '{', 0x0a, 0x00}) {
		t.Fatal("format detection wrong")
	}
	err := ReadFrom(bufio.NewReader(strings.NewReader("{\"resourceSpans\": 7}\n")), "bad.jsonl", func([]byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "bad.jsonl:1") {
		t.Fatalf("bad line: %v", err)
	}
}
