//go:build !unix

package bench

// offHeap falls back to the Go heap where there is no mmap.
type offHeap struct{ bytes int }

func (o *offHeap) alloc(n int) []byte { o.bytes += n; return make([]byte, n) }
func (o *offHeap) release()           {}
