package policy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/tailsift/tailsift"
	"github.com/tailsift/tailsift/policy"
)

// summary returns a summary-only trace from t0 lasting d, with errs error
// spans.
func summary(d time.Duration, errs int) policy.Trace {
	return policy.Trace{
		ID:            idWithRandomness(42),
		SpanCount:     3,
		ErrorCount:    errs,
		HasRoot:       true,
		StartUnixNano: t0,
		EndUnixNano:   t0 + uint64(d),
	}
}

var (
	keepD = func(rule string) policy.Decision {
		return policy.Decision{Keep: true, Rule: rule, Probability: 1, Threshold: 0}
	}
	dropD = func(rule string) policy.Decision {
		return policy.Decision{Keep: false, Rule: rule, Probability: 0, Threshold: policy.MaxThreshold}
	}
	sampledD = func(rule string, keep bool, p float64) policy.Decision {
		return policy.Decision{Keep: keep, Rule: rule, Probability: p, Threshold: policy.ThresholdFor(p)}
	}
)

func TestEvaluateSummaryRules(t *testing.T) {
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
		skewed  = policy.Trace{ID: idWithRandomness(1), SpanCount: 2, StartUnixNano: t0, EndUnixNano: t0 - 5e9}
		errSkew = policy.Trace{ErrorCount: 1, StartUnixNano: t0, EndUnixNano: t0 - 1}
		ns      = time.Nanosecond
		cases   = []struct {
			name string
			tr   policy.Trace
			want string // deciding rule; "" for the default
		}{
			{"fast ok trace", summary(10*time.Millisecond, 0), ""},
			{"error beats slow (first match wins)", summary(5*time.Second, 1), "errors"},
			{"many errors", summary(time.Millisecond, 3), "errors"},
			{"error with End < Start", errSkew, "errors"},
			{"just below threshold", summary(100*time.Millisecond-ns, 0), ""},
			{"at threshold", summary(100*time.Millisecond, 0), "band"},
			{"just below upper", summary(time.Second-ns, 0), "band"},
			{"at upper (exclusive)", summary(time.Second, 0), ""},
			{"between band and slow", summary(1500*time.Millisecond, 0), ""},
			{"just below slow", summary(2*time.Second-ns, 0), ""},
			{"at slow threshold", summary(2*time.Second, 0), "slow"},
			{"far above slow threshold", summary(time.Hour, 0), "slow"},
			{"End < Start is duration 0", skewed, ""},
			{"empty trace", policy.Trace{}, ""},
		}
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantDrop, wantKeep := dropD("default"), keepD("default")
			if c.want != "" {
				wantDrop, wantKeep = keepD(c.want), keepD(c.want)
			}
			if got := dropSet.Evaluate(&c.tr, now); got != wantDrop {
				t.Errorf("default drop: Evaluate = %+v, want %+v", got, wantDrop)
			}
			if got := keepSet.Evaluate(&c.tr, now); got != wantKeep {
				t.Errorf("default keep: Evaluate = %+v, want %+v", got, wantKeep)
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
		x := summary(d, errs)
		x.ID = id
		return &x
	}
	cases := []struct {
		name  string
		rules string
		tr    *policy.Trace
		want  policy.Decision
	}{
		{"always", "- {name: all, type: always}", tr(zero, 0, 0), keepD("all")},
		{"drop", "- {name: none, type: drop}", tr(top, 1, time.Hour), dropD("none")},
		{"drop after error rule, error trace", "[{name: e, type: error}, {name: none, type: drop}]", tr(zero, 1, 0), keepD("e")},
		{"drop after error rule, ok trace", "[{name: e, type: error}, {name: none, type: drop}]", tr(top, 0, 0), dropD("none")},
		{"p=50 at threshold keeps", "- {name: half, type: probabilistic, percentage: 50}", tr(half, 0, 0), sampledD("half", true, 0.5)},
		{"p=50 below threshold drops", "- {name: half, type: probabilistic, percentage: 50}", tr(belowHalf, 0, 0), sampledD("half", false, 0.5)},
		{"p=100 keeps randomness 0", "- {name: all, type: probabilistic, percentage: 100}", tr(zero, 0, 0), keepD("all")},
		{"p=0 drops max randomness", "- {name: none, type: probabilistic, percentage: 0}", tr(top, 0, 0), dropD("none")},
		{"probabilistic after error rule", "[{name: e, type: error}, {name: s, type: probabilistic, percentage: 0}]", tr(top, 2, 0), keepD("e")},
		{"fractional percentage", "- {name: s, type: probabilistic, percentage: 12.5}", tr(idWithRandomness(7<<53), 0, 0), sampledD("s", true, 0.125)},
		{"fractional percentage, one below", "- {name: s, type: probabilistic, percentage: 12.5}", tr(idWithRandomness(7<<53-1), 0, 0), sampledD("s", false, 0.125)},
		// when narrows any type.
		{"probabilistic with when, matching", "[{name: s, type: probabilistic, percentage: 50, when: {error_count: 0}}, {name: k, type: always}]", tr(belowHalf, 0, 0), sampledD("s", false, 0.5)},
		{"probabilistic with when, not matching", "[{name: s, type: probabilistic, percentage: 50, when: {error_count: 0}}, {name: k, type: always}]", tr(belowHalf, 1, 0), keepD("k")},
		{"always with when", "[{name: a, type: always, when: {span_count: {gt: 5}}}, {name: d, type: drop}]", tr(zero, 0, 0), dropD("d")},
		{"drop with when", "[{name: d, type: drop, when: {duration: {lt: 1s}}}]", tr(zero, 0, 0), dropD("d")},
		{"latency with when", "[{name: l, type: latency, threshold: 1s, when: {error_count: 0}}]", tr(zero, 1, time.Hour), keepD("default")},
		{"error with percentage", "[{name: e, type: error, percentage: 50}]", tr(belowHalf, 1, 0), sampledD("e", false, 0.5)},
		{"error with drop", "[{name: e, type: error, drop: true}]", tr(top, 1, 0), dropD("e")},
		// Rules without type: a condition and an action.
		{"untyped keep", "[{name: r, when: {span_count: 3}, keep: true}]", tr(zero, 0, 0), keepD("r")},
		{"untyped drop", "[{name: r, when: {span_count: 3}, drop: true}]", tr(top, 0, 0), dropD("r")},
		{"untyped percentage", "[{name: r, when: {span_count: 3}, percentage: 50}]", tr(half, 0, 0), sampledD("r", true, 0.5)},
		{"untyped catch-all", "[{name: r, drop: true}]", tr(top, 0, 0), dropD("r")},
		{"attribute type", "[{name: r, type: attribute, when: {span_count: 3}, percentage: 50}]", tr(belowHalf, 0, 0), sampledD("r", false, 0.5)},
		// span_count: inclusive bounds.
		{"span_count min at", "[{name: r, type: span_count, min: 3}]", tr(zero, 0, 0), keepD("r")},
		{"span_count min above", "[{name: r, type: span_count, min: 4}]", tr(zero, 0, 0), keepD("default")},
		{"span_count max at", "[{name: r, type: span_count, max: 3, drop: true}]", tr(zero, 0, 0), dropD("r")},
		{"span_count max below", "[{name: r, type: span_count, max: 2, drop: true}]", tr(zero, 0, 0), keepD("default")},
		{"span_count range", "[{name: r, type: span_count, min: 2, max: 3, percentage: 50}]", tr(half, 0, 0), sampledD("r", true, 0.5)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := mustParse(t, "default: keep\nrules:\n  "+c.rules+"\n")
			if got := s.Evaluate(c.tr, now); got != c.want {
				t.Errorf("Evaluate = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestErrorType(t *testing.T) {
	const rules = `
rules:
  - name: plain
    type: error
    when: {root.attr.rule: plain}
  - name: http
    type: error
    http_status: {gte: 500, lt: 600}
    when: {root.attr.rule: http}
  - name: grpc
    type: error
    grpc_status: {in: [2, 13, 14]}
    when: {root.attr.rule: grpc}
  - name: exception
    type: error
    exception: true
    when: {root.attr.rule: exception}
default: drop
`
	s := mustParse(t, rules)
	root := func(rule string) memSpan { return sp("root").root().attr("rule", rule) }
	cases := []struct {
		name string
		tr   *policy.Trace
		want string
	}{
		{"plain: status error", mkTrace(root("plain"), sp("a").err()), "plain"},
		{"plain: a 500 is not enough", mkTrace(root("plain"), sp("a").attr("http.response.status_code", 500)), "default"},
		{"http: status error still counts", mkTrace(root("http"), sp("a").err()), "http"},
		{"http: 500 int", mkTrace(root("http"), sp("a").attr("http.response.status_code", 500)), "http"},
		{"http: 599 string", mkTrace(root("http"), sp("a").attr("http.response.status_code", "599")), "http"},
		{"http: old attribute name", mkTrace(root("http"), sp("a").attr("http.status_code", 503)), "http"},
		{"http: 404", mkTrace(root("http"), sp("a").attr("http.response.status_code", 404)), "default"},
		{"http: 600", mkTrace(root("http"), sp("a").attr("http.response.status_code", 600)), "default"},
		{"grpc: UNAVAILABLE", mkTrace(root("grpc"), sp("a").attr("rpc.grpc.status_code", 14)), "grpc"},
		{"grpc: NOT_FOUND", mkTrace(root("grpc"), sp("a").attr("rpc.grpc.status_code", 5)), "default"},
		{"exception event", mkTrace(root("exception"), sp("a").event("exception")), "exception"},
		{"other event", mkTrace(root("exception"), sp("a").event("retry")), "default"},
	}
	for _, c := range cases {
		if got := s.Evaluate(c.tr, now); got.Rule != c.want || got.Keep != (c.want != "default") {
			t.Errorf("%s: Evaluate = %+v, want rule %q", c.name, got, c.want)
		}
	}
	// Without spans, an ERROR count still decides; the span-level
	// extras are unknown and do not match.
	s = mustParse(t, "rules: [{name: http, type: error, http_status: {gte: 500}}]\n")
	withErr, noErr := summary(0, 1), summary(0, 0)
	if got := s.Evaluate(&withErr, now); got.Rule != "http" {
		t.Errorf("summary with errors: %+v", got)
	}
	if got := s.Evaluate(&noErr, now); got.Rule != "default" {
		t.Errorf("summary without errors: %+v", got)
	}
}

func TestLatencyOfSpans(t *testing.T) {
	s := mustParse(t, `
rules:
  - name: slow-db
    type: latency
    threshold: 100ms
    upper: 1s
    spans: {kind: client, attr.db.system.name: {exists: true}}
default: drop
`)
	db := func(d time.Duration) memSpan { return sp("SELECT").kind(3).attr("db.system.name", "postgres").at(0, d) }
	cases := []struct {
		name string
		tr   *policy.Trace
		want bool
	}{
		{"slow db span", mkTrace(sp("r").root().at(0, 2*time.Second), db(100*time.Millisecond)), true},
		{"fast db span, slow trace", mkTrace(sp("r").root().at(0, 2*time.Second), db(99*time.Millisecond)), false},
		{"db span at upper", mkTrace(sp("r").root(), db(time.Second)), false},
		{"slow non-db client span", mkTrace(sp("r").root(), sp("GET").kind(3).at(0, 500*time.Millisecond), db(time.Millisecond)), false},
		{"one of several db spans", mkTrace(db(time.Millisecond), db(500*time.Millisecond)), true},
		{"no spans known", summaryOnly(mkTrace(db(500 * time.Millisecond))), false},
	}
	for _, c := range cases {
		if got := s.Evaluate(c.tr, now).Keep; got != c.want {
			t.Errorf("%s: kept = %v, want %v\n%s", c.name, got, c.want, s.Explain(c.tr, now))
		}
	}
}

func TestPriority(t *testing.T) {
	s := mustParse(t, `
rules:
  - name: tiers
    type: priority
    tiers:
      - name: forced
        when: {root.attr.sampling.priority: {gte: 1}}
        percentage: 100
      - name: gold
        when: {root.resource.customer.tier: gold}
        percentage: 50
      - name: muted
        when: {root.attr.sampling.priority: 0}
        percentage: 0
  - name: rest
    type: probabilistic
    percentage: 10
`)
	half := idWithRandomness(1 << 55)
	tr := func(id [16]byte, root memSpan) *policy.Trace {
		x := mkTrace(root)
		x.ID = id
		return x
	}
	cases := []struct {
		name string
		tr   *policy.Trace
		want policy.Decision
	}{
		{"forced", tr(idWithRandomness(0), sp("r").root().attr("sampling.priority", 1)), policy.Decision{Keep: true, Rule: "tiers", Probability: 1, Priority: 3}},
		{"forced beats gold", tr(idWithRandomness(0), sp("r").root().attr("sampling.priority", 5).rattr("customer.tier", "gold")), policy.Decision{Keep: true, Rule: "tiers", Probability: 1, Priority: 3}},
		{"gold kept", tr(half, sp("r").root().rattr("customer.tier", "gold")), policy.Decision{Keep: true, Rule: "tiers", Probability: 0.5, Threshold: policy.ThresholdFor(0.5), Priority: 2}},
		{"gold dropped", tr(idWithRandomness(1), sp("r").root().rattr("customer.tier", "gold")), policy.Decision{Keep: false, Rule: "tiers", Probability: 0.5, Threshold: policy.ThresholdFor(0.5), Priority: 2}},
		{"muted", tr(half, sp("r").root().attr("sampling.priority", 0)), policy.Decision{Keep: false, Rule: "tiers", Probability: 0, Threshold: policy.MaxThreshold, Priority: 1}},
		{"no tier: next rule", tr(half, sp("r").root()), policy.Decision{Keep: false, Rule: "rest", Probability: 0.1, Threshold: policy.ThresholdFor(0.1)}},
		{"no spans: next rule", summaryOnly(tr(half, sp("r").root().attr("sampling.priority", 1))), policy.Decision{Keep: false, Rule: "rest", Probability: 0.1, Threshold: policy.ThresholdFor(0.1)}},
	}
	for _, c := range cases {
		if got := s.Evaluate(c.tr, now); got != c.want {
			t.Errorf("%s: Evaluate = %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestZeroSetDropsEverything(t *testing.T) {
	var s policy.Set
	tr := summary(time.Hour, 5)
	if got, want := s.Evaluate(&tr, now), dropD(policy.DefaultRule); got != want {
		t.Errorf("zero Set: Evaluate = %+v, want %+v", got, want)
	}
	if got := s.RuleNames(); !slices.Equal(got, []string{"default"}) {
		t.Errorf("zero Set: RuleNames = %q", got)
	}
	if s.Hash() != "" || s.Share() != 1 {
		t.Errorf("zero Set: Hash %q, Share %v", s.Hash(), s.Share())
	}
}

func TestRuleNamesIsCallerOwned(t *testing.T) {
	s := mustParse(t, "rules: [{name: a, type: always}]\n")
	s.RuleNames()[0] = "changed"
	if got := s.RuleNames(); !slices.Equal(got, []string{"a", "default"}) {
		t.Errorf("RuleNames after caller modified a copy = %q", got)
	}
}

func TestHash(t *testing.T) {
	s, err := policy.Parse("example", tailsift.ExamplePolicies)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(tailsift.ExamplePolicies)
	if got, want := s.Hash(), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Hash = %s, want %s", got, want)
	}
	other := mustParse(t, string(tailsift.ExamplePolicies)+"# a comment changes the hash\n")
	if other.Hash() == s.Hash() {
		t.Error("different files, same Hash")
	}
}

func TestSetShare(t *testing.T) {
	s := mustParse(t, "rules: [{name: a, type: always}]\n")
	for _, c := range []struct{ in, want float64 }{
		{0.25, 0.25}, {0, 0}, {1, 1}, {-1, 0}, {2, 1}, {math.NaN(), 1}, {math.Inf(-1), 0},
	} {
		s.SetShare(c.in)
		if got := s.Share(); got != c.want {
			t.Errorf("SetShare(%v): Share = %v, want %v", c.in, got, c.want)
		}
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
