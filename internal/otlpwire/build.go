package otlpwire

import (
	"bytes"
	"encoding/binary"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// Builder writes an ExportTraceServiceRequest from groups and raw spans.
// Spans added under equal groups share one ScopeSpans, and groups with
// equal resource parts share one ResourceSpans, in order of first
// appearance.
//
// Add retains the group's and the span's slices without copying them: the
// caller must leave them unchanged until Reset. The zero value is ready to
// use.
type Builder struct {
	resources []builderResource
	groups    []builderGroup
	spans     int
	size      int // span bytes plus framing, an estimate of the request size

	byResource keyIndex         // resource part -> index into resources
	byGroup    map[uint64]int32 // hash of (resource index, scope part) -> index into groups
	// groupAt finds a group by the addresses of its parts: spans of
	// interned groups share the slices, so most lookups need no hashing.
	// Both addresses: one scope part is often shared by several resources.
	groupAt   map[groupAddr]int32
	lastRes   []byte // fast path: consecutive spans usually share a group
	lastScope []byte
	lastIdx   int32
}

// fewGroups is how many groups a linear search by address handles faster
// than groupAt (a two-pointer key hashes slowly).
const fewGroups = 8

type groupAddr struct{ resource, scope *byte }

func addrOf(g Group) groupAddr {
	return groupAddr{unsafe.SliceData(g.Resource), unsafe.SliceData(g.Scope)}
}

type builderResource struct {
	part        []byte
	size        int   // encoded size of the ResourceSpans body, set by AppendRequest
	first, last int32 // its groups in order, linked by builderGroup.next
}

type builderGroup struct {
	res   int32
	next  int32 // the resource's next group, -1 for none
	size  int   // encoded size of the ScopeSpans body, set by AppendRequest
	scope []byte
	spans [][]byte
}

// frameSlack bounds a field's tag and length prefix.
const frameSlack = 1 + binary.MaxVarintLen32

// GroupSize is the most that spans under a new group add to Size beyond
// their own framing: the group's parts and the framing of a ResourceSpans
// and a ScopeSpans (less when the resource is already in the request).
func GroupSize(g Group) int { return len(g.Resource) + len(g.Scope) + 2*frameSlack }

// Add appends one span under group g.
func (b *Builder) Add(g Group, span []byte) {
	idx := b.groupIndex(g)
	grp := &b.groups[idx]
	grp.spans = append(grp.spans, span)
	b.spans++
	b.size += 1 + protowire.SizeVarint(uint64(len(span))) + len(span)
}

// Spans returns the number of spans added since the last Reset.
func (b *Builder) Spans() int { return b.spans }

// Size returns the approximate size in bytes of the request AppendRequest
// would write (never less than it).
func (b *Builder) Size() int { return b.size }

// Reset empties the builder, keeping capacity and dropping references to
// added slices.
func (b *Builder) Reset() {
	for i := range b.groups {
		clear(b.groups[i].spans)
		b.groups[i].spans = b.groups[i].spans[:0]
		b.groups[i].scope = nil
	}
	b.groups = b.groups[:0]
	clear(b.resources)
	b.resources = b.resources[:0]
	b.byResource.reset()
	clear(b.byGroup)
	clear(b.groupAt)
	b.lastRes, b.lastScope = nil, nil
	b.spans, b.size = 0, 0
}

func (b *Builder) groupIndex(g Group) int32 {
	if len(b.groups) > 0 && sameSlice(g.Scope, b.lastScope) && sameSlice(g.Resource, b.lastRes) {
		return b.lastIdx
	}
	if len(b.groups) <= fewGroups {
		for i := range b.groups {
			if grp := &b.groups[i]; sameSlice(grp.scope, g.Scope) && sameSlice(b.resources[grp.res].part, g.Resource) {
				b.lastRes, b.lastScope, b.lastIdx = g.Resource, g.Scope, int32(i)
				return int32(i)
			}
		}
	} else if i, ok := b.groupAt[addrOf(g)]; ok {
		if grp := &b.groups[i]; sameSlice(grp.scope, g.Scope) && sameSlice(b.resources[grp.res].part, g.Resource) {
			b.lastRes, b.lastScope, b.lastIdx = g.Resource, g.Scope, i
			return i
		}
	}
	r, ok := b.byResource.find(g.Resource, func(i int32) []byte { return b.resources[i].part })
	if !ok {
		r = int32(len(b.resources))
		b.resources = append(b.resources, builderResource{part: g.Resource, first: -1, last: -1})
		b.byResource.add(g.Resource, r)
		b.size += len(g.Resource) + frameSlack
	}
	h := xxhash.Sum64(g.Scope) ^ (uint64(r)+1)*0x9e3779b97f4a7c15
	idx, seen := b.byGroup[h]
	if !seen || b.groups[idx].res != r || !bytes.Equal(b.groups[idx].scope, g.Scope) {
		idx = int32(len(b.groups))
		if len(b.groups) < cap(b.groups) {
			b.groups = b.groups[:idx+1] // reuse the spans slice's capacity
		} else {
			b.groups = append(b.groups, builderGroup{})
		}
		grp := &b.groups[idx]
		grp.res, grp.next, grp.scope = r, -1, g.Scope
		res := &b.resources[r]
		if res.last >= 0 {
			b.groups[res.last].next = idx
		} else {
			res.first = idx
		}
		res.last = idx
		if !seen { // a collision makes a second group: still a valid request
			if b.byGroup == nil {
				b.byGroup = make(map[uint64]int32)
			}
			b.byGroup[h] = idx
		}
		b.size += len(g.Scope) + frameSlack
	}
	if b.groupAt == nil {
		b.groupAt = make(map[groupAddr]int32)
	}
	b.groupAt[addrOf(g)] = idx
	b.lastRes, b.lastScope, b.lastIdx = g.Resource, g.Scope, idx
	return idx
}

// sameSlice reports whether a and b are the same bytes in memory.
func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// AppendRequest appends the encoded ExportTraceServiceRequest to dst. Its
// work is linear in the number of spans and groups added.
func (b *Builder) AppendRequest(dst []byte) []byte {
	// Pass 1: encoded sizes, bottom-up.
	for i := range b.resources {
		b.resources[i].size = len(b.resources[i].part)
	}
	for i := range b.groups {
		g := &b.groups[i]
		g.size = scopeSpansSize(g.scope, g.spans)
		b.resources[g.res].size += 1 + protowire.SizeVarint(uint64(g.size)) + g.size
	}
	total := 0
	for _, r := range b.resources {
		total += 1 + protowire.SizeVarint(uint64(r.size)) + r.size
	}
	dst = grow(dst, total)

	// Pass 2: each ResourceSpans with its ScopeSpans, in first-seen order.
	for _, res := range b.resources {
		dst = protowire.AppendTag(dst, fieldRequestResourceSpans, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(res.size))
		dst = append(dst, res.part...)
		for i := res.first; i >= 0; i = b.groups[i].next {
			g := &b.groups[i]
			dst = protowire.AppendTag(dst, fieldResourceSpansScopeSpans, protowire.BytesType)
			dst = protowire.AppendVarint(dst, uint64(g.size))
			dst = append(dst, g.scope...)
			for _, s := range g.spans {
				dst = protowire.AppendTag(dst, fieldScopeSpansSpans, protowire.BytesType)
				dst = protowire.AppendVarint(dst, uint64(len(s)))
				dst = append(dst, s...)
			}
		}
	}
	return dst
}

func scopeSpansSize(scope []byte, spans [][]byte) int {
	n := len(scope)
	for _, s := range spans {
		n += 1 + protowire.SizeVarint(uint64(len(s))) + len(s)
	}
	return n
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	out := make([]byte, len(b), len(b)+n)
	copy(out, b)
	return out
}

// keyIndex maps byte strings to small indexes without allocating once warm
// (a map[string] insert would copy every key). Equal contents map to the same
// index; slices seen before are found by address without hashing.
type keyIndex struct {
	byAddr map[*byte]int32
	byHash map[uint64]int32
}

func (k *keyIndex) reset() {
	clear(k.byAddr)
	clear(k.byHash)
}

// find returns the index of key; keyOf returns the bytes of an index, to
// rule out hash collisions.
func (k *keyIndex) find(key []byte, keyOf func(int32) []byte) (int32, bool) {
	if i, ok := k.byAddr[unsafe.SliceData(key)]; ok && sameSlice(key, keyOf(i)) {
		return i, true
	}
	i, ok := k.byHash[xxhash.Sum64(key)]
	if !ok || !bytes.Equal(keyOf(i), key) {
		return 0, false // a collision makes a second group: still a valid request
	}
	if k.byAddr != nil {
		k.byAddr[unsafe.SliceData(key)] = i
	}
	return i, true
}

func (k *keyIndex) add(key []byte, i int32) {
	if k.byAddr == nil {
		k.byAddr = make(map[*byte]int32)
		k.byHash = make(map[uint64]int32)
	}
	k.byAddr[unsafe.SliceData(key)] = i
	h := xxhash.Sum64(key)
	if _, taken := k.byHash[h]; !taken {
		k.byHash[h] = i
	}
}
