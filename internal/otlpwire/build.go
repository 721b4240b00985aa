package otlpwire

import (
	"bytes"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// Builder writes an ExportTraceServiceRequest from group keys and raw spans.
// Spans added under equal group keys share one ScopeSpans, and groups with
// equal resource parts share one ResourceSpans, in order of first appearance.
//
// Add retains the key and span slices without copying them: the caller must
// leave them unchanged until Reset. The zero value is ready to use.
type Builder struct {
	groups []builderGroup
	spans  int
	size   int // span bytes plus framing, an estimate of the request size

	byKey   keyIndex // group key -> index into groups
	lastKey []byte   // fast path: consecutive spans usually share a key
	lastIdx int32

	byResource keyIndex // scratch for AppendRequest
	resources  []builderResource
	groupRes   []int32
}

type builderGroup struct {
	key   []byte
	spans [][]byte
}

type builderResource struct {
	part []byte
	size int // encoded size of the ResourceSpans body
}

// Add appends one span under a group key.
func (b *Builder) Add(groupKey, span []byte) {
	idx := b.groupIndex(groupKey)
	g := &b.groups[idx]
	g.spans = append(g.spans, span)
	b.spans++
	b.size += 1 + protowire.SizeVarint(uint64(len(span))) + len(span)
}

// Spans returns the number of spans added since the last Reset.
func (b *Builder) Spans() int { return b.spans }

// Size returns the approximate size in bytes of the request AppendRequest
// would write.
func (b *Builder) Size() int { return b.size }

// Reset empties the builder, keeping capacity and dropping references to
// added slices.
func (b *Builder) Reset() {
	for i := range b.groups {
		clear(b.groups[i].spans)
		b.groups[i].spans = b.groups[i].spans[:0]
		b.groups[i].key = nil
	}
	b.groups = b.groups[:0]
	b.byKey.reset()
	b.lastKey = nil
	b.spans, b.size = 0, 0
}

func (b *Builder) groupIndex(key []byte) int32 {
	if b.lastKey != nil && sameSlice(key, b.lastKey) {
		return b.lastIdx
	}
	idx, ok := b.byKey.find(key, func(i int32) []byte { return b.groups[i].key })
	if !ok {
		idx = int32(len(b.groups))
		if len(b.groups) < cap(b.groups) {
			b.groups = b.groups[:idx+1] // reuse the spans slice's capacity
			b.groups[idx].key = key
		} else {
			b.groups = append(b.groups, builderGroup{key: key})
		}
		b.byKey.add(key, idx)
		b.size += len(key) + 16 // key plus two levels of framing
	}
	b.lastKey, b.lastIdx = key, idx
	return idx
}

// sameSlice reports whether a and b are the same bytes in memory.
func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && unsafe.SliceData(a) == unsafe.SliceData(b)
}

// AppendRequest appends the encoded ExportTraceServiceRequest to dst. Group
// keys that are not well formed (not produced by Scan) are skipped with their
// spans; Add's callers only pass keys from Scan.
func (b *Builder) AppendRequest(dst []byte) []byte {
	// Pass 1: resource of each group, and encoded sizes bottom-up.
	b.byResource.reset()
	b.resources = b.resources[:0]
	b.groupRes = b.groupRes[:0]
	total := 0
	for i := range b.groups {
		g := &b.groups[i]
		res, scope, ok := splitGroupKey(g.key)
		if !ok {
			b.groupRes = append(b.groupRes, -1)
			continue
		}
		r, seen := b.byResource.find(res, func(i int32) []byte { return b.resources[i].part })
		if !seen {
			r = int32(len(b.resources))
			b.byResource.add(res, r)
			b.resources = append(b.resources, builderResource{part: res, size: len(res)})
		}
		b.groupRes = append(b.groupRes, r)
		ss := scopeSpansSize(scope, g.spans)
		b.resources[r].size += 1 + protowire.SizeVarint(uint64(ss)) + ss
	}
	for _, r := range b.resources {
		total += 1 + protowire.SizeVarint(uint64(r.size)) + r.size
	}
	dst = grow(dst, total)

	// Pass 2: write each ResourceSpans with its ScopeSpans in first-seen order.
	for r, res := range b.resources {
		dst = protowire.AppendTag(dst, fieldRequestResourceSpans, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(res.size))
		dst = append(dst, res.part...)
		for i := range b.groups {
			if b.groupRes[i] != int32(r) {
				continue
			}
			g := &b.groups[i]
			_, scope, _ := splitGroupKey(g.key)
			dst = protowire.AppendTag(dst, fieldResourceSpansScopeSpans, protowire.BytesType)
			dst = protowire.AppendVarint(dst, uint64(scopeSpansSize(scope, g.spans)))
			dst = append(dst, scope...)
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
