package decision

import (
	"sync"

	"github.com/cespare/xxhash/v2"
)

// cache remembers decided trace IDs, with a value, for late spans: a map in
// two generations per stripe. Inserting into a full current generation
// drops the previous one and starts a new one, so an ID is remembered for
// between one and two generations' worth of decisions, and memory is
// bounded by 2*size entries.
type cache[V any] struct {
	stripes []cacheStripe[V]
	mask    uint64
}

type cacheStripe[V any] struct {
	mu        sync.Mutex
	cur, prev map[[16]byte]V
	limit     int
	_         [40]byte
}

const cacheStripes = 16

func newCache[V any](size int) *cache[V] {
	c := &cache[V]{stripes: make([]cacheStripe[V], cacheStripes), mask: cacheStripes - 1}
	for i := range c.stripes {
		c.stripes[i].limit = max(1, size/cacheStripes)
		c.stripes[i].cur = make(map[[16]byte]V)
	}
	return c
}

func (c *cache[V]) stripe(id *[16]byte) *cacheStripe[V] {
	return &c.stripes[xxhash.Sum64(id[:])&c.mask]
}

func (c *cache[V]) get(id [16]byte) (V, bool) {
	s := c.stripe(&id)
	s.mu.Lock()
	v, ok := s.cur[id]
	if !ok {
		v, ok = s.prev[id]
	}
	s.mu.Unlock()
	return v, ok
}

func (c *cache[V]) contains(id [16]byte) bool {
	_, ok := c.get(id)
	return ok
}

func (c *cache[V]) add(id [16]byte, v V) {
	s := c.stripe(&id)
	s.mu.Lock()
	s.insert(id, v)
	s.mu.Unlock()
}

// insert adds id to the current generation (locked), starting a new one
// when it is full.
func (s *cacheStripe[V]) insert(id [16]byte, v V) {
	if len(s.cur) >= s.limit {
		s.prev, s.cur = s.cur, make(map[[16]byte]V, s.limit)
	}
	s.cur[id] = v
}

func (c *cache[V]) len() int {
	n := 0
	for i := range c.stripes {
		s := &c.stripes[i]
		s.mu.Lock()
		n += len(s.cur) + len(s.prev)
		s.mu.Unlock()
	}
	return n
}

// addIfAbsent adds id unless it is already remembered.
func (c *cache[V]) addIfAbsent(id [16]byte, v V) {
	s := c.stripe(&id)
	s.mu.Lock()
	_, inCur := s.cur[id]
	_, inPrev := s.prev[id]
	if !inCur && !inPrev {
		s.insert(id, v)
	}
	s.mu.Unlock()
}

// each calls f for every entry, one stripe locked at a time; f must not
// use the cache.
func (c *cache[V]) each(f func(id *[16]byte, v V)) {
	for i := range c.stripes {
		s := &c.stripes[i]
		s.mu.Lock()
		for _, m := range []map[[16]byte]V{s.prev, s.cur} {
			for id, v := range m {
				f(&id, v)
			}
		}
		s.mu.Unlock()
	}
}
