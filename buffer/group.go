package buffer

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Group is an interned group key (the resource and scope a span was sent
// under). Many spans of many traces share one Group.
type Group struct {
	key  []byte // immutable
	hash uint64
	refs atomic.Int32 // a trace holding it, or a request between Acquire and Release
	// persisted: the key is in the write-ahead log's group table.
	persisted atomic.Bool
}

// Key returns the group key bytes. They never change.
func (g *Group) Key() []byte { return g.key }

// groupOverhead is the bookkeeping cost of one interned group.
const groupOverhead = 96

// groupTable interns group keys. Its lock is taken once per group per
// request (Acquire/Release) and once per taken trace's group, never per span.
type groupTable struct {
	mu     sync.Mutex
	byHash map[uint64][]*Group
	bytes  int64 // guarded by mu
}

// acquire returns the interned group for key, copying key the first time,
// with one reference held by the caller. It returns the bytes added.
func (t *groupTable) acquire(key []byte) (*Group, int64) {
	h := xxhash.Sum64(key)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, g := range t.byHash[h] {
		if bytes.Equal(g.key, key) {
			g.refs.Add(1)
			return g, 0
		}
	}
	g := &Group{key: bytes.Clone(key), hash: h}
	g.refs.Store(1)
	if t.byHash == nil {
		t.byHash = make(map[uint64][]*Group)
	}
	t.byHash[h] = append(t.byHash[h], g)
	added := int64(len(key)) + groupOverhead
	t.bytes += added
	return g, added
}

// release drops one reference and returns the bytes freed (non-zero when
// the last reference went and the group left the table). A holder of the
// key bytes may keep using them: they are immutable and garbage collected.
func (t *groupTable) release(g *Group) int64 {
	if g.refs.Add(-1) > 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if g.refs.Load() > 0 { // re-acquired while we waited for the lock
		return 0
	}
	list := t.byHash[g.hash]
	for i, x := range list {
		if x == g {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			break
		}
	}
	if len(list) == 0 {
		delete(t.byHash, g.hash)
	} else {
		t.byHash[g.hash] = list
	}
	freed := int64(len(g.key)) + groupOverhead
	t.bytes -= freed
	return freed
}
