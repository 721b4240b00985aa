package decision

import (
	"sync"

	"github.com/cespare/xxhash/v2"
)

// cache remembers trace IDs for late spans: a set in two generations per
// stripe. Inserting into a full current generation drops the previous one
// and starts a new one, so an ID is remembered for between one and two
// generations' worth of decisions, and memory is bounded by 2*size IDs.
type cache struct {
	stripes []cacheStripe
	mask    uint64
}

type cacheStripe struct {
	mu        sync.Mutex
	cur, prev map[[16]byte]struct{}
	limit     int
	_         [40]byte
}

const cacheStripes = 16

func newCache(size int) *cache {
	c := &cache{stripes: make([]cacheStripe, cacheStripes), mask: cacheStripes - 1}
	for i := range c.stripes {
		c.stripes[i].limit = max(1, size/cacheStripes)
		c.stripes[i].cur = make(map[[16]byte]struct{})
	}
	return c
}

func (c *cache) stripe(id *[16]byte) *cacheStripe {
	return &c.stripes[xxhash.Sum64(id[:])&c.mask]
}

func (c *cache) contains(id [16]byte) bool {
	s := c.stripe(&id)
	s.mu.Lock()
	_, ok := s.cur[id]
	if !ok {
		_, ok = s.prev[id]
	}
	s.mu.Unlock()
	return ok
}

func (c *cache) add(id [16]byte) {
	s := c.stripe(&id)
	s.mu.Lock()
	if len(s.cur) >= s.limit {
		s.prev, s.cur = s.cur, make(map[[16]byte]struct{}, s.limit)
	}
	s.cur[id] = struct{}{}
	s.mu.Unlock()
}

func (c *cache) len() int {
	n := 0
	for i := range c.stripes {
		s := &c.stripes[i]
		s.mu.Lock()
		n += len(s.cur) + len(s.prev)
		s.mu.Unlock()
	}
	return n
}
