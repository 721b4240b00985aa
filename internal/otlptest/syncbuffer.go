package otlptest

import (
	"bytes"
	"strings"
	"sync"
)

// SyncBuffer collects what a component writes (its log, its stdout) and
// may be read while the component's goroutines still write to it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Bytes returns a copy of everything written so far.
func (b *SyncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// Lines returns the lines written so far that contain s.
func (b *SyncBuffer) Lines(s string) []string {
	var out []string
	for line := range strings.Lines(b.String()) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}
