package cluster

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func members(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{Name: fmt.Sprintf("sampler-%d", i), Addr: fmt.Sprintf("10.0.0.%d:4317", i)}
	}
	return ms
}

func randomIDs(n int, seed uint64) [][16]byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	ids := make([][16]byte, n)
	for i := range ids {
		binary.LittleEndian.PutUint64(ids[i][:8], rng.Uint64())
		binary.LittleEndian.PutUint64(ids[i][8:], rng.Uint64())
	}
	return ids
}

// One join or one leave among 10 nodes must move close to 1/N of a million
// trace IDs (ideal: 1/11 = 9.1% on join, 1/10 on leave), never more than
// 15%, and only to or from the member that changed.
func TestRingMovement(t *testing.T) {
	ids := randomIDs(1_000_000, 1)
	ten := NewRing(members(10), DefaultVirtualNodes)
	owners := func(r *Ring) []string {
		out := make([]string, len(ids))
		for i := range ids {
			out[i] = r.Members()[r.Owner(&ids[i])].Name
		}
		return out
	}
	before := owners(ten)
	for _, tc := range []struct {
		name    string
		members []Member
		changed string
	}{
		{"join", members(11), "sampler-10"},
		{"leave", append(members(10)[:4:4], members(10)[5:]...), "sampler-4"},
	} {
		after := owners(NewRing(tc.members, DefaultVirtualNodes))
		moved := 0
		for i := range ids {
			if before[i] == after[i] {
				continue
			}
			moved++
			if before[i] != tc.changed && after[i] != tc.changed {
				t.Fatalf("%s: trace moved from %s to %s, neither of which changed", tc.name, before[i], after[i])
			}
		}
		frac := float64(moved) / float64(len(ids))
		t.Logf("%s: %.2f%% of trace IDs moved", tc.name, 100*frac)
		if frac < 0.05 || frac > 0.15 {
			t.Errorf("%s moved %.2f%% of trace IDs, want 5%%..15%%", tc.name, 100*frac)
		}
	}
}

// Each member's share of the space (what adaptive rules scale their targets
// by) matches the share of random IDs it owns, and shares sum to 1.
func TestRingShare(t *testing.T) {
	r := NewRing(members(3), DefaultVirtualNodes)
	ids := randomIDs(300_000, 2)
	counts := make([]int, r.Len())
	for i := range ids {
		counts[r.Owner(&ids[i])]++
	}
	sum := 0.0
	for i, m := range r.Members() {
		share := r.Share(m.Name)
		sum += share
		observed := float64(counts[i]) / float64(len(ids))
		if math.Abs(share-observed) > 0.01 {
			t.Errorf("%s: Share = %.4f, owns %.4f of random IDs", m.Name, share, observed)
		}
		if share < 0.25 || share > 0.42 {
			t.Errorf("%s: Share = %.4f, want about 1/3", m.Name, share)
		}
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("shares sum to %v", sum)
	}
	if s := NewRing(members(1), DefaultVirtualNodes).Share("sampler-0"); s != 1 {
		t.Errorf("single member share = %v", s)
	}
	if s := r.Share("stranger"); s != 0 {
		t.Errorf("non-member share = %v", s)
	}
}

// The ring depends only on the member set, not on the order it was listed
// in: every node must compute the same owner.
func TestRingOrderIndependent(t *testing.T) {
	ms := members(5)
	a := NewRing(ms, 64)
	rev := []Member{ms[4], ms[2], ms[0], ms[3], ms[1]}
	b := NewRing(rev, 64)
	for _, id := range randomIDs(10_000, 3) {
		if a.Members()[a.Owner(&id)] != b.Members()[b.Owner(&id)] {
			t.Fatal("owner depends on member order")
		}
	}
	if (&Ring{}).Owner(&[16]byte{}) != -1 {
		t.Error("empty ring has an owner")
	}
}

func BenchmarkRingOwner(b *testing.B) {
	r := NewRing(members(10), DefaultVirtualNodes)
	ids := randomIDs(4096, 4)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		_ = r.Owner(&ids[i&4095])
	}
}
