package cluster

import (
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// DefaultVirtualNodes is the number of points each member has on the ring.
// With 256, one join or leave among 10 members moves within a few percent
// of the ideal 1/11 of the trace-ID space (TestRingMovement), and a lookup
// is a binary search over a few thousand points.
const DefaultVirtualNodes = 256

// Member is one node of the cluster as the ring sees it.
type Member struct {
	Name string // unique in the cluster
	Addr string // OTLP/gRPC address peers forward to
}

// Ring maps trace IDs to members by consistent hashing. It is immutable:
// membership changes build a new ring, so lookups need no lock.
type Ring struct {
	members []Member
	points  []point // sorted by hash
}

type point struct {
	hash   uint64
	member int32 // index into members
}

// NewRing builds a ring over members (order does not matter; names must be
// unique) with vnodes points each.
func NewRing(members []Member, vnodes int) *Ring {
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	r := &Ring{members: ms, points: make([]point, 0, len(ms)*vnodes)}
	var buf []byte
	for i, m := range ms {
		for v := range vnodes {
			buf = append(strconv.AppendInt(append(buf[:0], m.Name...), int64(v), 10), '#')
			r.points = append(r.points, point{hash: xxhash.Sum64(buf), member: int32(i)})
		}
	}
	slices.SortFunc(r.points, func(a, b point) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return int(a.member - b.member) // equal hashes: any fixed order
	})
	return r
}

// Members returns the ring's members sorted by name. Do not modify.
func (r *Ring) Members() []Member { return r.members }

// Len returns the number of members.
func (r *Ring) Len() int { return len(r.members) }

// TraceHash is the ring position of a trace ID.
func TraceHash(id *[16]byte) uint64 { return xxhash.Sum64(id[:]) }

// Owner returns the index in Members of the member that owns id, or -1 on
// an empty ring.
func (r *Ring) Owner(id *[16]byte) int {
	return r.ownerOf(TraceHash(id))
}

func (r *Ring) ownerOf(h uint64) int {
	if len(r.points) == 0 {
		return -1
	}
	// The first point at or after h, wrapping around.
	lo, hi := 0, len(r.points)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.points[mid].hash < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(r.points) {
		lo = 0
	}
	return int(r.points[lo].member)
}

// Index returns the position of the member named name, or -1.
func (r *Ring) Index(name string) int {
	for i := range r.members {
		if r.members[i].Name == name {
			return i
		}
	}
	return -1
}

// Share returns the fraction of the trace-ID space the named member owns
// (0 if it is not a member). Trace IDs are uniformly random, so this is
// also its expected share of the traffic.
func (r *Ring) Share(name string) float64 {
	idx := r.Index(name)
	if idx < 0 || len(r.points) == 0 {
		return 0
	}
	// Point i owns the arc (points[i-1].hash, points[i].hash]; the first
	// point also owns the wrap-around arc above the last point.
	var owned uint64
	prev := r.points[len(r.points)-1].hash
	for _, p := range r.points {
		if int(p.member) == idx {
			owned += p.hash - prev // wraps correctly for the first point
		}
		prev = p.hash
	}
	if len(r.members) == 1 {
		return 1
	}
	return float64(owned) / (1 << 64)
}
