package export

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/tailsift/tailsift/internal/otlpclient"
	"github.com/tailsift/tailsift/internal/otlpjson"
)

// maxPooledLine bounds the encode buffers kept for reuse.
const maxPooledLine = 4 << 20

// stdoutSender writes each request as one line of OTLP JSON. Workers encode
// in parallel into pooled buffers; the mutex keeps lines whole.
type stdoutSender struct {
	mu   sync.Mutex
	w    io.Writer
	bufs sync.Pool // *[]byte
}

func newStdoutSender(w io.Writer) *stdoutSender {
	s := &stdoutSender{w: w}
	s.bufs.New = func() any { return new([]byte) }
	return s
}

func (s *stdoutSender) send(_ context.Context, req []byte) (otlpclient.Result, error) {
	bp := s.bufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxPooledLine {
			s.bufs.Put(bp)
		}
	}()
	line, err := otlpjson.Encode((*bp)[:0], req)
	if err != nil {
		return otlpclient.Result{}, fmt.Errorf("encoding OTLP JSON: %w", err)
	}
	line = append(line, '\n')
	*bp = line
	s.mu.Lock()
	n, err := s.w.Write(line)
	s.mu.Unlock()
	if err != nil {
		if n == 0 {
			// Nothing was written: trying again cannot garble the output.
			return otlpclient.Result{}, &otlpclient.Error{Err: fmt.Errorf("writing OTLP JSON: %w", err), Retryable: true}
		}
		return otlpclient.Result{}, fmt.Errorf("writing OTLP JSON: %d of %d bytes written: %w", n, len(line), err)
	}
	return otlpclient.Result{}, nil
}

func (s *stdoutSender) close() error { return nil }
