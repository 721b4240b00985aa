package policy_test

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/tailsift/tailsift"
	"github.com/tailsift/tailsift/policy"
)

func mustParse(t testing.TB, yaml string) *policy.Set {
	t.Helper()
	s, err := policy.Parse(t.Name()+".yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return s
}

// idWithRandomness returns a trace ID whose low 56 bits are r and whose
// other bytes are junk that must not matter.
func idWithRandomness(r uint64) [16]byte {
	id := [16]byte{0: 0xde, 1: 0xad, 7: 0xbe, 8: 0xff}
	for i := 15; i >= 9; i-- {
		id[i] = byte(r)
		r >>= 8
	}
	return id
}

const t0 = uint64(1_700_000_000_000_000_000) // a start time in unix nanoseconds

// span returns a trace from t0 lasting d, with errs error spans.
func span(d time.Duration, errs int) policy.Trace {
	return policy.Trace{
		ID:            idWithRandomness(42),
		SpanCount:     3,
		ErrorCount:    errs,
		HasRoot:       true,
		StartUnixNano: t0,
		EndUnixNano:   t0 + uint64(d),
	}
}

func TestEvaluate(t *testing.T) {
	const rules = `
rules:
  - name: errors
    type: error
  - name: band
    type: latency
    threshold: 100ms
    upper: 1s
  - name: slow
    type: latency
    threshold: 2s
`
	dropSet := mustParse(t, rules+"default: drop\n")
	keepSet := mustParse(t, rules+"default: keep\n")
	var (
		errorsD = policy.Decision{Keep: true, Rule: "errors", Probability: 1}
		bandD   = policy.Decision{Keep: true, Rule: "band", Probability: 1}
		slowD   = policy.Decision{Keep: true, Rule: "slow", Probability: 1}
		defDrop = policy.Decision{Keep: false, Rule: "default", Probability: 0}
		defKeep = policy.Decision{Keep: true, Rule: "default", Probability: 1}
		skewed  = policy.Trace{ID: idWithRandomness(1), SpanCount: 2, StartUnixNano: t0, EndUnixNano: t0 - 5e9}
		noSpans = policy.Trace{}
		errSkew = policy.Trace{ErrorCount: 1, StartUnixNano: t0, EndUnixNano: t0 - 1}
		ns      = time.Nanosecond
		cases   = []struct {
			name     string
			tr       policy.Trace
			onDrop   policy.Decision
			onKeepDf policy.Decision
		}{
			{"fast ok trace", span(10*time.Millisecond, 0), defDrop, defKeep},
			{"error beats slow (first match wins)", span(5*time.Second, 1), errorsD, errorsD},
			{"many errors", span(time.Millisecond, 3), errorsD, errorsD},
			{"error with End < Start", errSkew, errorsD, errorsD},
			{"just below threshold", span(100*time.Millisecond-ns, 0), defDrop, defKeep},
			{"at threshold", span(100*time.Millisecond, 0), bandD, bandD},
			{"just below upper", span(time.Second-ns, 0), bandD, bandD},
			{"at upper (exclusive)", span(time.Second, 0), defDrop, defKeep},
			{"between band and slow", span(1500*time.Millisecond, 0), defDrop, defKeep},
			{"just below slow", span(2*time.Second-ns, 0), defDrop, defKeep},
			{"at slow threshold", span(2*time.Second, 0), slowD, slowD},
			{"far above slow threshold", span(time.Hour, 0), slowD, slowD},
			{"End < Start is duration 0", skewed, defDrop, defKeep},
			{"empty trace", noSpans, defDrop, defKeep},
		}
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := dropSet.Evaluate(&c.tr); got != c.onDrop {
				t.Errorf("default drop: Evaluate = %+v, want %+v", got, c.onDrop)
			}
			if got := keepSet.Evaluate(&c.tr); got != c.onKeepDf {
				t.Errorf("default keep: Evaluate = %+v, want %+v", got, c.onKeepDf)
			}
		})
	}
}

func TestEvaluateDecidingRules(t *testing.T) {
	half := idWithRandomness(1 << 55)        // exactly at the p=0.5 threshold: kept
	belowHalf := idWithRandomness(1<<55 - 1) // one below: dropped
	top := idWithRandomness(1<<56 - 1)       // kept by every p > 0
	zero := idWithRandomness(0)              // kept only by p = 1
	tr := func(id [16]byte, errs int, d time.Duration) *policy.Trace {
		x := span(d, errs)
		x.ID = id
		return &x
	}
	cases := []struct {
		name  string
		rules string
		tr    *policy.Trace
		want  policy.Decision
	}{
		{"always", "- {name: all, type: always}", tr(zero, 0, 0), policy.Decision{Keep: true, Rule: "all", Probability: 1}},
		{"drop", "- {name: none, type: drop}", tr(top, 1, time.Hour), policy.Decision{Keep: false, Rule: "none", Probability: 0}},
		{"drop before always", "[{name: none, type: drop}, {name: all, type: always}]", tr(top, 0, 0), policy.Decision{Rule: "none"}},
		{"always before drop", "[{name: all, type: always}, {name: none, type: drop}]", tr(top, 0, 0), policy.Decision{Keep: true, Rule: "all", Probability: 1}},
		{"drop after error rule, error trace", "[{name: e, type: error}, {name: none, type: drop}]", tr(zero, 1, 0), policy.Decision{Keep: true, Rule: "e", Probability: 1}},
		{"drop after error rule, ok trace", "[{name: e, type: error}, {name: none, type: drop}]", tr(top, 0, 0), policy.Decision{Rule: "none"}},
		{"p=50 at threshold keeps", "- {name: half, type: probabilistic, percentage: 50}", tr(half, 0, 0), policy.Decision{Keep: true, Rule: "half", Probability: 0.5}},
		{"p=50 below threshold drops", "- {name: half, type: probabilistic, percentage: 50}", tr(belowHalf, 0, 0), policy.Decision{Keep: false, Rule: "half", Probability: 0.5}},
		{"p=100 keeps randomness 0", "- {name: all, type: probabilistic, percentage: 100}", tr(zero, 0, 0), policy.Decision{Keep: true, Rule: "all", Probability: 1}},
		{"p=0 drops max randomness", "- {name: none, type: probabilistic, percentage: 0}", tr(top, 0, 0), policy.Decision{Keep: false, Rule: "none", Probability: 0}},
		{"probabilistic after error rule", "[{name: e, type: error}, {name: s, type: probabilistic, percentage: 0}]", tr(top, 2, 0), policy.Decision{Keep: true, Rule: "e", Probability: 1}},
		{"fractional percentage", "- {name: s, type: probabilistic, percentage: 12.5}", tr(idWithRandomness(7<<53), 0, 0), policy.Decision{Keep: true, Rule: "s", Probability: 0.125}},
		{"fractional percentage, one below", "- {name: s, type: probabilistic, percentage: 12.5}", tr(idWithRandomness(7<<53-1), 0, 0), policy.Decision{Keep: false, Rule: "s", Probability: 0.125}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := mustParse(t, "default: keep\nrules:\n  "+c.rules+"\n")
			if got := s.Evaluate(c.tr); got != c.want {
				t.Errorf("Evaluate = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestZeroSetDropsEverything(t *testing.T) {
	var s policy.Set
	tr := span(time.Hour, 5)
	if got, want := s.Evaluate(&tr), (policy.Decision{Rule: policy.DefaultRule}); got != want {
		t.Errorf("zero Set: Evaluate = %+v, want %+v", got, want)
	}
	if got := s.RuleNames(); !slices.Equal(got, []string{"default"}) {
		t.Errorf("zero Set: RuleNames = %q", got)
	}
}

func TestRuleNamesIsCallerOwned(t *testing.T) {
	s := mustParse(t, "rules: [{name: a, type: always}]\n")
	s.RuleNames()[0] = "changed"
	if got := s.RuleNames(); !slices.Equal(got, []string{"a", "default"}) {
		t.Errorf("RuleNames after caller modified a copy = %q", got)
	}
}

func TestDuration(t *testing.T) {
	cases := []struct {
		start, end uint64
		want       time.Duration
	}{
		{0, 0, 0},
		{t0, t0, 0},
		{t0, t0 + 1500, 1500},
		{t0, t0 - 1, 0},
		{0, math.MaxUint64, math.MaxInt64},
		{1, math.MaxInt64 + 1, math.MaxInt64},
	}
	for _, c := range cases {
		tr := policy.Trace{StartUnixNano: c.start, EndUnixNano: c.end}
		if got := tr.Duration(); got != c.want {
			t.Errorf("Trace{Start: %d, End: %d}.Duration() = %d, want %d", c.start, c.end, got, c.want)
		}
	}
}

var sink policy.Decision

// TestEvaluateDoesNotAllocate also proves that Evaluate does not make the
// *Trace escape: the Trace lives on the closure's stack.
func TestEvaluateDoesNotAllocate(t *testing.T) {
	s, err := policy.Parse("example", tailsift.ExamplePolicies)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		tr := policy.Trace{
			ID:            idWithRandomness(uint64(i) * 0x9e3779b97f4a7c15),
			SpanCount:     4,
			ErrorCount:    i % 3 / 2,
			StartUnixNano: t0,
			EndUnixNano:   t0 + uint64(i%4)*uint64(400*time.Millisecond),
		}
		sink = s.Evaluate(&tr)
	})
	if allocs != 0 {
		t.Errorf("Evaluate allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	s, err := policy.Parse("example", tailsift.ExamplePolicies)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		tr   policy.Trace
	}{
		{"error", span(time.Millisecond, 1)},
		{"slow", span(3*time.Second, 0)},
		{"rest", span(20*time.Millisecond, 0)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			tr := bc.tr
			for b.Loop() {
				sink = s.Evaluate(&tr)
			}
		})
	}
}
