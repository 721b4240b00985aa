package policy

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestParseNumber(t *testing.T) {
	for _, c := range []struct {
		in    string
		i     int64
		f     float64
		isInt bool
		ok    bool
	}{
		{"0", 0, 0, true, true},
		{"500", 500, 0, true, true},
		{"-42", -42, 0, true, true},
		{"+7", 7, 0, true, true},
		{"007", 7, 0, true, true},
		{"123456789012345678", 123456789012345678, 0, true, true},
		{"9223372036854775807", math.MaxInt64, 0, true, true},
		{"-9223372036854775808", math.MinInt64, 0, true, true},
		{"9223372036854775808", 0, 9223372036854775808, false, true}, // past int64: a float
		{"1.5", 0, 1.5, false, true},
		{"-0.25", 0, -0.25, false, true},
		{"1.", 0, 1, false, true},
		{".5", 0, 0.5, false, true},
		{"5e2", 0, 500, false, true},
		{"5E-1", 0, 0.5, false, true},
		{"1e999", 0, math.Inf(1), false, true},
		{"", 0, 0, false, false},
		{"-", 0, 0, false, false},
		{".", 0, 0, false, false},
		{"1e", 0, 0, false, false},
		{"1e+", 0, 0, false, false},
		{" 1", 0, 0, false, false},
		{"1 ", 0, 0, false, false},
		{"0x1F", 0, 0, false, false},
		{"1_000", 0, 0, false, false},
		{"NaN", 0, 0, false, false},
		{"Inf", 0, 0, false, false},
		{"--1", 0, 0, false, false},
		{"1.2.3", 0, 0, false, false},
	} {
		i, f, isInt, ok := parseNumber([]byte(c.in))
		if i != c.i || f != c.f || isInt != c.isInt || ok != c.ok {
			t.Errorf("parseNumber(%q) = %v, %v, %v, %v; want %v, %v, %v, %v", c.in, i, f, isInt, ok, c.i, c.f, c.isInt, c.ok)
		}
	}
	b := []byte("-12345.678e-2")
	if n := testing.AllocsPerRun(100, func() { parseNumber(b) }); n != 0 {
		t.Errorf("parseNumber allocates %v times", n)
	}
}

// TestCmpIntFloat checks the exact comparison against big.Float.
func TestCmpIntFloat(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ints := []int64{0, 1, -1, 1 << 53, 1<<53 + 1, -(1<<53 + 1), math.MaxInt64, math.MinInt64, math.MaxInt64 - 1}
	floats := []float64{0, 0.5, -0.5, 1, 0x1p53, 0x1p53 + 2, 0x1p63, -0x1p63, math.MaxFloat64, -math.MaxFloat64,
		math.Inf(1), math.Inf(-1), math.Nextafter(0x1p63, 0), 1e-300}
	for range 300 {
		ints = append(ints, int64(rng.Uint64()), rng.Int64N(1<<20)-1<<19)
		floats = append(floats, rng.NormFloat64()*math.Pow(2, float64(rng.IntN(130)-10)))
	}
	for _, i := range ints {
		for _, f := range append(floats, float64(i), math.Nextafter(float64(i), math.Inf(1)), math.Nextafter(float64(i), math.Inf(-1))) {
			want := new(big.Float).SetInt64(i).Cmp(new(big.Float).SetFloat64(f))
			if got := cmpIntFloat(i, f); got != want {
				t.Fatalf("cmpIntFloat(%d, %v) = %d, want %d", i, f, got, want)
			}
		}
	}
}
