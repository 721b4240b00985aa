package buffer

import (
	"bytes"
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/tailsift/tailsift/internal/otlpwire"
)

// Resource is an interned resource part (otlpwire.Group.Resource), shared
// by the groups of every scope sent under it.
type Resource struct {
	part   []byte // immutable
	hash   uint64
	refs   int32         // guarded by groupTable.mu: groups, and requests between AcquireResource and ReleaseResource
	walDef atomic.Uint64 // segment<<32 | id: where the write-ahead log last defined it (wal.go)
}

// Group is an interned group: a resource and a scope that spans were sent
// under. Many spans of many traces share one Group. Resources are interned
// apart from scopes so that one large resource under many scopes is held
// once (a request of N bytes could otherwise make N²/4 bytes of groups).
type Group struct {
	res    *Resource
	wire   otlpwire.Group // res.part and the scope part; immutable
	hash   uint64         // of the resource's hash and the scope part
	refs   atomic.Int32   // traces holding it, and requests between AcquireGroup and Release
	walDef atomic.Uint64  // segment<<32 | id: where the write-ahead log last defined it (wal.go)
	gone   bool           // guarded by groupTable.mu: left the table (see release)
}

// Wire returns the group's resource and scope parts. They never change.
func (g *Group) Wire() otlpwire.Group { return g.wire }

// Resource returns the interned resource the group is under.
func (g *Group) Resource() *Resource { return g.res }

// Part returns the resource part bytes. They never change.
func (r *Resource) Part() []byte { return r.part }

// internOverhead is the bookkeeping cost of one interned resource or group
// (struct, map slot, bucket slice).
const internOverhead = 128

// groupTable interns resources and groups. Its lock is taken once per
// resource and group per request (acquire/release) and once per taken
// trace's group, never per span.
type groupTable struct {
	mu        sync.Mutex
	resources map[uint64][]*Resource
	groups    map[uint64][]*Group
	bytes     int64 // guarded by mu
}

// acquireResource returns the interned resource part with one reference
// held by the caller, copying part the first time if reserve(bytes added)
// allows; nil if it does not.
func (t *groupTable) acquireResource(part []byte, reserve func(int64) bool) *Resource {
	h := xxhash.Sum64(part)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.resources[h] {
		if bytes.Equal(r.part, part) {
			r.refs++
			return r
		}
	}
	added := int64(len(part)) + internOverhead
	if !reserve(added) {
		return nil
	}
	r := &Resource{part: bytes.Clone(part), hash: h, refs: 1}
	if t.resources == nil {
		t.resources = make(map[uint64][]*Resource)
	}
	t.resources[h] = append(t.resources[h], r)
	t.bytes += added
	return r
}

// groupHash identifies a group by its resource's hash and its scope part;
// it names the group in the write-ahead log.
func groupHash(res uint64, scope []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], res)
	d.Write(b[:])
	d.Write(scope)
	return d.Sum64()
}

// acquireGroup returns the interned group of scope under r with one
// reference held by the caller, as acquireResource does. A new group takes
// its own reference to r.
func (t *groupTable) acquireGroup(r *Resource, scope []byte, reserve func(int64) bool) *Group {
	h := groupHash(r.hash, scope)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, g := range t.groups[h] {
		if g.res == r && bytes.Equal(g.wire.Scope, scope) {
			g.refs.Add(1)
			return g
		}
	}
	added := int64(len(scope)) + internOverhead
	if !reserve(added) {
		return nil
	}
	g := &Group{res: r, hash: h, wire: otlpwire.Group{Resource: r.part, Scope: bytes.Clone(scope)}}
	g.refs.Store(1)
	r.refs++
	if t.groups == nil {
		t.groups = make(map[uint64][]*Group)
	}
	t.groups[h] = append(t.groups[h], g)
	t.bytes += added
	return g
}

// release drops one reference to g and returns the bytes freed (non-zero
// when the last reference went and the group, and maybe its resource, left
// the table). A holder of the parts' bytes may keep using them: they are
// immutable and garbage collected.
func (t *groupTable) release(g *Group) int64 {
	if g.refs.Add(-1) > 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Re-acquired while we waited for the lock; or re-acquired, released
	// and removed by that release, which got the lock first.
	if g.refs.Load() > 0 || g.gone {
		return 0
	}
	g.gone = true
	removeFrom(t.groups, g.hash, g)
	freed := int64(len(g.wire.Scope)) + internOverhead
	freed += t.releaseResourceLocked(g.res)
	t.bytes -= freed
	return freed
}

// releaseResource drops a reference taken by acquireResource.
func (t *groupTable) releaseResource(r *Resource) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	freed := t.releaseResourceLocked(r)
	t.bytes -= freed
	return freed
}

func (t *groupTable) releaseResourceLocked(r *Resource) int64 {
	if r.refs--; r.refs > 0 {
		return 0
	}
	removeFrom(t.resources, r.hash, r)
	return int64(len(r.part)) + internOverhead
}

// removeFrom deletes x from the bucket m[h], and the bucket if it empties.
func removeFrom[T comparable](m map[uint64][]T, h uint64, x T) {
	list := m[h]
	for i, y := range list {
		if y == x {
			var zero T
			list[i] = list[len(list)-1]
			list[len(list)-1] = zero
			list = list[:len(list)-1]
			break
		}
	}
	if len(list) == 0 {
		delete(m, h)
		return
	}
	m[h] = list
}
