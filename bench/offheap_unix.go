//go:build unix

package bench

import "syscall"

// offHeap hands out memory outside the Go heap (anonymous mmap) for the
// pre-encoded load. In the Go heap, gigabytes of load would double the
// engine's GC pacing target, so the engine would barely collect during a
// run and look cheaper than it is when running alone.
type offHeap struct {
	maps  [][]byte
	bytes int
}

// alloc returns n bytes of zeroed memory; on failure, heap memory.
func (o *offHeap) alloc(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n)
	}
	o.maps = append(o.maps, b)
	o.bytes += n
	return b
}

// release unmaps everything. Nothing may touch the memory afterwards.
func (o *offHeap) release() {
	for _, m := range o.maps {
		syscall.Munmap(m)
	}
	o.maps, o.bytes = nil, 0
}
