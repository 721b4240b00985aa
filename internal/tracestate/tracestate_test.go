package tracestate_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/tailsift/tailsift/internal/tracestate"
	"github.com/tailsift/tailsift/policy"
)

// Thresholds of common probabilities: (1-p) * 2^56.
const (
	thP10 = 0xe6666666666666 // p = 0.1, as policy.ThresholdFor(0.1)
	thP25 = 0xc0000000000000 // p = 0.25
	thP50 = 0x80000000000000 // p = 0.5
)

const rv = "rv:0123456789abcd"

// members returns n list members "k0=v0" ... starting at k<from>.
func members(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("k%d=v%d", from+i, from+i)
	}
	return out
}

func TestAppendWithThreshold(t *testing.T) {
	long := "x:" + strings.Repeat("a", tracestate.MaxOTValue-len(rv)-len(";x:")) // rv;x fills 256 exactly
	over := "x:" + strings.Repeat("a", tracestate.MaxOTValue)
	vendors31, vendors32, vendors40 := members(0, 31), members(0, 32), members(0, 40)
	wide := strings.Repeat("w", 250)
	for _, tc := range []struct {
		name string
		old  string
		th   uint64
		want string
	}{
		{"absent", "", thP10, "ot=th:e6666666666666"},
		{"absent, p=0.5", "", thP50, "ot=th:8"},
		{"absent, th 0", "", 0, "ot=th:0"},
		{"smallest threshold", "", 1, "ot=th:00000000000001"},
		{"largest threshold", "", tracestate.MaxThreshold - 1, "ot=th:ffffffffffffff"},
		{"only rv", "ot=" + rv, thP10, "ot=th:e6666666666666;" + rv},
		{"other vendors only", "a=1,b@t=2", thP50, "ot=th:8,a=1,b@t=2"},
		{"vendors before and after, ot moves to the front", "a=1,ot=" + rv + ",b=2", thP50, "ot=th:8;" + rv + ",a=1,b=2"},
		{"ot already first", "ot=" + rv + ",a=1", thP50, "ot=th:8;" + rv + ",a=1"},
		{"incoming th less restrictive", "ot=th:8;" + rv, thP10, "ot=th:e6666666666666;" + rv},
		{"incoming th more restrictive", "ot=th:f;" + rv, thP10, "ot=th:f;" + rv},
		{"incoming th equal", "ot=th:8;" + rv, thP50, "ot=th:8;" + rv},
		{"incoming th 0 (kept all)", "ot=th:0;" + rv, thP25, "ot=th:c;" + rv},
		{"incoming uppercase th", "ot=th:F", thP50, "ot=th:f"},
		{"th after other sub-keys", "ot=" + rv + ";th:4;zz:Q.q_-", thP25, "ot=th:c;" + rv + ";zz:Q.q_-"},
		{"invalid th value is replaced", "ot=th:zz;" + rv, thP50, "ot=th:8;" + rv},
		{"empty th value is replaced", "ot=th:;" + rv, thP50, "ot=th:8;" + rv},
		{"15-digit th is replaced", "ot=th:fffffffffffffff;" + rv, thP50, "ot=th:8;" + rv},
		{"malformed ot: no sub-key", "a=1,ot=garbage,b=2", thP50, "ot=th:8,a=1,b=2"},
		{"malformed ot: empty", "ot=,a=1", thP50, "ot=th:8,a=1"},
		{"malformed ot: empty sub-key", "ot=th:f;;" + rv, thP50, "ot=th:8"},
		{"malformed ot: duplicate sub-key", "ot=th:f;" + rv + ";" + rv, thP50, "ot=th:8"},
		{"malformed ot: uppercase key", "ot=TH:f;" + rv, thP50, "ot=th:8"},
		{"malformed ot: bad value char", "ot=th:f;rv:a b", thP50, "ot=th:8"},
		{"malformed ot: too long", "ot=th:f;" + over, thP50, "ot=th:8"},
		{"second ot member dropped", "ot=th:4,a=1,ot=th:f", thP50, "ot=th:8,a=1"},
		{"whitespace and empty members", " a=1 ,\t,ot=" + rv + " ,, b=2\t", thP50, "ot=th:8;" + rv + ",a=1,b=2"},
		{"malformed other members kept", "a=1,garbage,=x,ot=th:1", thP50, "ot=th:8,a=1,garbage,=x"},
		{"ot value at its limit drops what no longer fits", "ot=" + rv + ";" + long, thP50, "ot=th:8;" + rv},
		{"ot value at its limit keeps what fits", "ot=th:e6666666666666;" + rv + ";" + long[:len(long)-18], thP50,
			"ot=th:e6666666666666;" + rv + ";" + long[:len(long)-18]},
		{"31 vendors kept", strings.Join(vendors31, ","), thP50, "ot=th:8," + strings.Join(vendors31, ",")},
		{"32 vendors: the right-most is dropped", strings.Join(vendors32, ","), thP50, "ot=th:8," + strings.Join(vendors31, ",")},
		{"32 members with ot: all kept", strings.Join(vendors31[:10], ",") + ",ot=th:1," + strings.Join(vendors31[10:], ","), thP50,
			"ot=th:8," + strings.Join(vendors31, ",")},
		{"over the member limit", strings.Join(vendors40, ","), thP50, "ot=th:8," + strings.Join(vendors31, ",")},
		{"beyond 512 bytes nothing is dropped", "a=" + wide + ",b=" + wide + ",c=" + wide, thP50,
			"ot=th:8,a=" + wide + ",b=" + wide + ",c=" + wide},
		{"probability 0 has no threshold: unchanged", " a=1 ,ot=th:1", tracestate.MaxThreshold, " a=1 ,ot=th:1"},
		{"out of range: unchanged", "a=1", math.MaxUint64, "a=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(tracestate.AppendWithThreshold([]byte("prefix|"), []byte(tc.old), tc.th))
			if got != "prefix|"+tc.want {
				t.Errorf("AppendWithThreshold(%q, %#x)\n got %q\nwant %q", tc.old, tc.th, got, "prefix|"+tc.want)
			}
			if len(got)-len("prefix|") > len(tc.old)+tracestate.MaxGrowth {
				t.Errorf("grew by %d bytes, more than MaxGrowth %d", len(got)-len("prefix|")-len(tc.old), tracestate.MaxGrowth)
			}
			if tc.th < tracestate.MaxThreshold {
				// Setting the result's own threshold again changes nothing.
				th, ok := tracestate.Threshold([]byte(tc.want))
				if !ok || th < tc.th {
					t.Errorf("Threshold(%q) = %#x, %v; want at least %#x", tc.want, th, ok, tc.th)
				}
				if again := string(tracestate.AppendWithThreshold(nil, []byte(tc.want), th)); again != tc.want {
					t.Errorf("not idempotent: %q -> %q", tc.want, again)
				}
			}
		})
	}
}

func TestThreshold(t *testing.T) {
	for _, tc := range []struct {
		ts   string
		want uint64
		ok   bool
	}{
		{"", 0, false},
		{"a=1", 0, false},
		{"ot=" + rv, 0, false},
		{"ot=th:0", 0, true},
		{"ot=th:8", thP50, true},
		{"a=1, ot=" + rv + ";th:e6666666666666", thP10, true},
		{"ot=th:00000000000001", 1, true},
		{"ot=th:zz", 0, false},
		{"ot=th:8;th:8", 0, false}, // duplicate keys: malformed
		{"ot=th:c,ot=th:8", thP25, true},
	} {
		th, ok := tracestate.Threshold([]byte(tc.ts))
		if th != tc.want || ok != tc.ok {
			t.Errorf("Threshold(%q) = %#x, %v; want %#x, %v", tc.ts, th, ok, tc.want, tc.ok)
		}
	}
}

// TestAppendTHMatchesPolicy checks the copy of the "th" encoding against
// the policy package's, for the probabilities users write and edge cases.
func TestAppendTHMatchesPolicy(t *testing.T) {
	ths := []policy.Threshold{0, 1, 0xf, 0x10, policy.MaxThreshold - 1, policy.MaxThreshold}
	for _, p := range []float64{1, 0.9, 0.5, 0.25, 0.1, 0.01, 1e-3, 1e-6, 1.0 / 3, 2.0 / 3, 1e-17} {
		ths = append(ths, policy.ThresholdFor(p))
	}
	for i := range uint64(1000) {
		ths = append(ths, policy.Threshold((i*0x9e3779b97f4a7c15)>>8))
	}
	for _, th := range ths {
		want := string(th.AppendTraceStateTH(nil))
		if got := string(tracestate.AppendTH(nil, uint64(th))); got != want {
			t.Errorf("AppendTH(%#x) = %q, policy writes %q", uint64(th), got, want)
		}
	}
	if got := policy.ThresholdFor(0.1); got != thP10 {
		t.Errorf("policy.ThresholdFor(0.1) = %#x, the tests assume %#x", uint64(got), uint64(thP10))
	}
}

func TestAppendWithThresholdAllocs(t *testing.T) {
	olds := [][]byte{
		nil,
		[]byte("ot=" + rv),
		[]byte("vendor=abc,ot=th:8;" + rv + ",other=x"),
		[]byte("ot=garbage,a=1"),
	}
	dst := make([]byte, 0, 512)
	for _, old := range olds {
		if n := testing.AllocsPerRun(100, func() {
			dst = tracestate.AppendWithThreshold(dst[:0], old, thP10)
		}); n != 0 {
			t.Errorf("AppendWithThreshold(%q) allocates %v times with room in dst", old, n)
		}
	}
}

func BenchmarkAppendWithThreshold(b *testing.B) {
	for _, old := range []string{"", "ot=" + rv, "vendor=abc,ot=th:8;" + rv + ",other=x"} {
		b.Run(fmt.Sprintf("%q", old), func(b *testing.B) {
			dst, in := make([]byte, 0, 512), []byte(old)
			b.ReportAllocs()
			for b.Loop() {
				dst = tracestate.AppendWithThreshold(dst[:0], in, thP10)
			}
		})
	}
}
