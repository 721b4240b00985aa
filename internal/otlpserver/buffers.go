package otlpserver

import "sync"

// Buffers pools request buffers. A buffer that grew past max is dropped
// rather than pooled, so one huge request does not pin its memory.
type Buffers struct {
	pool sync.Pool
	max  int
}

// NewBuffers returns a pool of buffers starting at initial bytes, keeping
// those up to max.
func NewBuffers(initial, max int) *Buffers {
	b := &Buffers{max: max}
	b.pool.New = func() any { s := make([]byte, 0, initial); return &s }
	return b
}

// Get returns an empty buffer.
func (b *Buffers) Get() *[]byte { return b.pool.Get().(*[]byte) }

// Put returns a buffer to the pool.
func (b *Buffers) Put(s *[]byte) {
	if cap(*s) <= b.max {
		*s = (*s)[:0]
		b.pool.Put(s)
	}
}
