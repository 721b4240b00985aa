// Package capture reads files of captured OTLP trace requests, for replaying
// traffic through policies: OTLP JSON lines (what "sampler run --forward
// stdout" or "--forward file:PATH" writes, one ExportTraceServiceRequest per
// line) or OTLP protobuf (one ExportTraceServiceRequest, or several
// concatenated: protobuf concatenation merges them). The format is detected
// from the first byte.
package capture

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/tailsift/tailsift/internal/otlpjson"
)

// maxLine bounds one JSON line (one request).
const maxLine = 256 << 20

// Read calls fn with each request in the file as protobuf bytes, which are
// valid only during the call.
func Read(path string, fn func(req []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return ReadFrom(bufio.NewReaderSize(f, 1<<20), path, fn)
}

// ReadFrom is Read over a reader; name is used in errors.
func ReadFrom(r *bufio.Reader, name string, fn func(req []byte) error) error {
	head, err := r.Peek(64)
	if len(head) == 0 {
		if err == io.EOF {
			return nil
		}
		return err
	}
	if !looksLikeJSON(head) {
		all, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		return fn(all)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), maxLine)
	var pb []byte
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		if pb, err = otlpjson.Decode(pb[:0], text); err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if err := fn(pb); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// looksLikeJSON tells JSON lines from protobuf by the first bytes: JSON is
// '{' then '"' or '}' (whitespace allowed around them). A protobuf request
// starts with 0x0a, the tag of resource_spans, which is also '\n', and its
// length byte may be '{'; what follows a length is a tag, never '"' or '}'.
func looksLikeJSON(b []byte) bool {
	i := 0
	skip := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
			i++
		}
	}
	skip()
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	skip()
	return i < len(b) && (b[i] == '"' || b[i] == '}')
}
