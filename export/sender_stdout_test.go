package export

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tailsift/tailsift/internal/otlpjson"
	"github.com/tailsift/tailsift/internal/otlptest"
)

// lineSink is the Writer of the stdout endpoint in tests: it keeps what was
// written and when, and can fail every write.
type lineSink struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes []time.Time
	fail   error
}

func (s *lineSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes = append(s.writes, time.Now())
	if s.fail != nil {
		return 0, s.fail
	}
	return s.buf.Write(p)
}

func (s *lineSink) attempts() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.writes...)
}

// requests decodes each line as OTLP JSON.
func (s *lineSink) requests(t *testing.T) []*coltracepb.ExportTraceServiceRequest {
	t.Helper()
	s.mu.Lock()
	data := bytes.Clone(s.buf.Bytes())
	s.mu.Unlock()
	var reqs []*coltracepb.ExportTraceServiceRequest
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("output does not end in a newline")
	}
	for line := range bytes.Lines(data) {
		pb, err := otlpjson.Decode(nil, bytes.TrimSuffix(line, []byte("\n")))
		if err != nil {
			t.Fatalf("line %d: %v", len(reqs)+1, err)
		}
		req := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(pb, req); err != nil {
			t.Fatalf("line %d: %v", len(reqs)+1, err)
		}
		reqs = append(reqs, req)
	}
	return reqs
}

func TestStdout(t *testing.T) {
	f := newFixture(t, 7, otlptest.DefaultBatch())
	var out lineSink
	cfg := DefaultConfig()
	cfg.Writer = &out
	cfg.BatchMaxBytes = 32 << 10
	e, reg := newTestExporter(t, cfg)
	for _, tr := range f.traces {
		e.ExportTrace(tr, Keep{})
	}
	shutdown(t, e)

	reqs := out.requests(t)
	if len(reqs) < 2 || len(reqs) != requests(t, reg, "ok") {
		t.Errorf("%d lines, want several, one per request (%d)", len(reqs), requests(t, reg, "ok"))
	}
	checkDelivered(t, f, reqs, true)
	checkAccounting(t, e, reg, Stats{Accepted: f.spans(), Sent: f.spans()}, map[string]int64{})
}

func TestStdoutWriteErrors(t *testing.T) {
	f := newFixture(t, 8, otlptest.Batch{Services: 1, Traces: 1, SpansPerTrace: 3, SpanDurationNs: 1})
	for _, tc := range []struct {
		name   string
		w      *partialWriter
		reason string
		calls  int // 0: more than one
	}{
		{"nothing written is retried", &partialWriter{n: 0}, "retries_exhausted", 0},
		{"partly written is not retried", &partialWriter{n: 5}, "rejected", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fastRetries(DefaultConfig())
			cfg.Writer = tc.w
			cfg.RetryMaxElapsed = 20 * time.Millisecond
			e, reg := newTestExporter(t, cfg)
			e.ExportTrace(f.traces[0], Keep{})
			shutdown(t, e)
			all := f.spans()
			checkAccounting(t, e, reg, Stats{Accepted: all, Failed: all}, map[string]int64{tc.reason: all})
			if calls := tc.w.calls(); tc.calls > 0 && calls != tc.calls || tc.calls == 0 && calls < 2 {
				t.Errorf("%d writes, want %d (0: more than one)", calls, tc.calls)
			}
		})
	}
}

// partialWriter writes n bytes of each line, then fails.
type partialWriter struct {
	n  int
	mu sync.Mutex
	c  int
}

func (w *partialWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.c++
	return min(w.n, len(p)), errors.New("disk full")
}

func (w *partialWriter) calls() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.c
}
