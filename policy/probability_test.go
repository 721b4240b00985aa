package policy_test

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tailsift/tailsift/policy"
)

// exactThreshold computes round((1-p) * 2^56), halves rounding up, in exact
// rational arithmetic, clamped to [0, 2^56].
func exactThreshold(p float64) policy.Threshold {
	if !(p > 0) {
		return policy.MaxThreshold
	}
	if p >= 1 {
		return 0
	}
	x := new(big.Rat).Sub(big.NewRat(1, 1), new(big.Rat).SetFloat64(p))
	x.Mul(x, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), 56)))
	x.Add(x, big.NewRat(1, 2))
	q := new(big.Int).Quo(x.Num(), x.Denom()) // floor, x > 0
	return policy.Threshold(q.Uint64())
}

func TestThresholdFor(t *testing.T) {
	cases := []struct {
		p    float64
		want policy.Threshold
	}{
		{0, 1 << 56},
		{-0.5, 1 << 56},
		{math.NaN(), 1 << 56},
		{math.Inf(-1), 1 << 56},
		{1, 0},
		{1.5, 0},
		{math.Inf(1), 0},
		{0.5, 1 << 55},
		{0.25, 3 << 54},
		{0.75, 1 << 54},
		{0.125, 7 << 53},
		{0x1p-56, 1<<56 - 1},
		{0x1p-57, 1 << 56},     // rounds to T = 2^56 - 0.5 -> 2^56 (half up): keeps none
		{0x1.8p-57, 1<<56 - 1}, // 0.75 units -> 1 unit of probability
		{1e-30, 1 << 56},
	}
	for _, c := range cases {
		if got := policy.ThresholdFor(c.p); got != c.want {
			t.Errorf("ThresholdFor(%v) = %#x, want %#x", c.p, uint64(got), uint64(c.want))
		}
	}
	// Exactness against rational arithmetic, for typical and random p.
	rng := rand.New(rand.NewPCG(1, 2))
	ps := []float64{0.1, 0.01, 0.001, 0.3, 1.0 / 3, 0.9, 0.99, 0.999999, 1e-9, 1e-15, 1 - 0x1p-53}
	for range 10000 {
		ps = append(ps, rng.Float64(), math.Pow(10, -rng.Float64()*17))
	}
	for _, p := range ps {
		if got, want := policy.ThresholdFor(p), exactThreshold(p); got != want {
			t.Errorf("ThresholdFor(%v) = %#x, want exact %#x", p, uint64(got), uint64(want))
		}
	}
}

func TestRandomness(t *testing.T) {
	id := [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd}
	if got, want := policy.Randomness(id), uint64(0x0123456789abcd); got != want {
		t.Errorf("Randomness = %#x, want %#x (bytes 9..15, big-endian)", got, want)
	}
	if got := policy.Randomness([16]byte{}); got != 0 {
		t.Errorf("Randomness(zero ID) = %#x", got)
	}
}

// TestKeepAtBoundary checks R >= T exactly at the threshold.
func TestKeepAtBoundary(t *testing.T) {
	const r = 0x0123456789abcd
	id := idWithRandomness(r)
	for _, c := range []struct {
		th   policy.Threshold
		want bool
	}{
		{r, true},
		{r - 1, true},
		{r + 1, false},
		{0, true},
		{policy.MaxThreshold, false},
	} {
		if got := c.th.Keep(id); got != c.want {
			t.Errorf("Threshold(%#x).Keep(R=%#x) = %v, want %v", uint64(c.th), uint64(r), got, c.want)
		}
	}
	// The same comparison through a probability: p = 0.5 gives T = 2^55.
	if !policy.KeepByTraceID(idWithRandomness(1<<55), 0.5) {
		t.Error("R = T = 2^55 at p=0.5 dropped, want kept")
	}
	if policy.KeepByTraceID(idWithRandomness(1<<55-1), 0.5) {
		t.Error("R = 2^55-1 at p=0.5 kept, want dropped")
	}
	// Byte 8 and the high half do not count.
	hi := idWithRandomness(1<<55 - 1)
	hi[8], hi[0] = 0xff, 0xff
	if policy.KeepByTraceID(hi, 0.5) {
		t.Error("bytes 0..8 of the trace ID changed the decision")
	}
}

func TestKeepByTraceIDFraction(t *testing.T) {
	const n = 100_000
	for i, p := range []float64{0.01, 0.1, 0.5} {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(42, uint64(i)))
			kept := 0
			for range n {
				if policy.KeepByTraceID(randomID(rng), p) {
					kept++
				}
			}
			sd := math.Sqrt(n * p * (1 - p))
			if dev := math.Abs(float64(kept) - n*p); dev > 4.5*sd {
				t.Errorf("p=%v: kept %d of %d, want %v ± %.0f (4.5 sd)", p, kept, n, n*p, 4.5*sd)
			}
		})
	}
}

func TestKeepByTraceIDExtremesAndDeterminism(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	ps := []float64{0.001, 0.01, 0.1, 0.3, 0.5, 0.9}
	for range 10_000 {
		id := randomID(rng)
		if policy.KeepByTraceID(id, 0) {
			t.Fatalf("p=0 kept %x", id)
		}
		if !policy.KeepByTraceID(id, 1) {
			t.Fatalf("p=1 dropped %x", id)
		}
		prev := false
		for _, p := range ps {
			keep := policy.KeepByTraceID(id, p)
			if keep != policy.KeepByTraceID(id, p) || keep != policy.ThresholdFor(p).Keep(id) {
				t.Fatalf("p=%v: decision for %x is not deterministic", p, id)
			}
			if prev && !keep {
				t.Fatalf("%x kept at a lower p but dropped at p=%v: not consistent", id, p)
			}
			prev = keep
		}
	}
}

// TestProbabilisticRuleMatchesThreshold checks that a probabilistic rule
// decides exactly as Decision.Threshold = ThresholdFor(Decision.Probability),
// the tracestate threshold downstream.
func TestProbabilisticRuleMatchesThreshold(t *testing.T) {
	s := mustParse(t, "rules: [{name: s, type: probabilistic, percentage: 10}]\n")
	rng := rand.New(rand.NewPCG(3, 4))
	kept := 0
	for range 10_000 {
		tr := policy.Trace{ID: randomID(rng)}
		d := s.Evaluate(&tr, now)
		if d.Rule != "s" || d.Probability != 0.1 || d.Threshold != policy.ThresholdFor(0.1) {
			t.Fatalf("Evaluate = %+v, want rule s with probability 0.1", d)
		}
		if d.Keep != policy.ThresholdFor(d.Probability).Keep(tr.ID) {
			t.Fatalf("Evaluate(%x).Keep = %v disagrees with ThresholdFor(%v)", tr.ID, d.Keep, d.Probability)
		}
		if d != s.Evaluate(&tr, now) {
			t.Fatal("second Evaluate of the same trace differs")
		}
		if d.Keep {
			kept++
		}
	}
	if kept < 800 || kept > 1200 {
		t.Errorf("kept %d of 10000 at 10%%", kept)
	}
}

func TestThresholdProbability(t *testing.T) {
	for _, p := range []float64{0, 0.5, 0.25, 0.125, 1, 0x1p-56} {
		if got := policy.ThresholdFor(p).Probability(); got != p {
			t.Errorf("ThresholdFor(%v).Probability() = %v", p, got)
		}
	}
	if got := policy.ThresholdFor(0.1).Probability(); math.Abs(got-0.1) > 1e-15 {
		t.Errorf("ThresholdFor(0.1).Probability() = %v", got)
	}
}

func TestAppendTraceStateTH(t *testing.T) {
	for _, c := range []struct {
		th   policy.Threshold
		want string
	}{
		{policy.ThresholdFor(1), "0"},
		{policy.ThresholdFor(0.5), "8"},
		{policy.ThresholdFor(0.25), "c"},
		{policy.ThresholdFor(0.75), "4"},
		{policy.ThresholdFor(0.125), "e"},
		{policy.ThresholdFor(0.1), strings.TrimRight(fmt.Sprintf("%014x", uint64(policy.ThresholdFor(0.1))), "0")},
		{1, "00000000000001"},
		{1<<56 - 1, "ffffffffffffff"},
		{0x12300000000000, "123"},
		{policy.MaxThreshold, ""}, // p = 0 has no encoding
	} {
		if got := string(c.th.AppendTraceStateTH([]byte("th:"))); got != "th:"+c.want && !(c.want == "" && got == "th:") {
			t.Errorf("Threshold(%#x).AppendTraceStateTH = %q, want %q", uint64(c.th), got, "th:"+c.want)
		}
	}
}

func randomID(rng *rand.Rand) [16]byte {
	var id [16]byte
	for i := range id {
		id[i] = byte(rng.Uint32())
	}
	return id
}
