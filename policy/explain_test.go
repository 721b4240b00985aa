package policy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tailsift/tailsift"
	"github.com/tailsift/tailsift/policy"
)

func TestExplain(t *testing.T) {
	example, err := policy.Parse("example", tailsift.ExamplePolicies)
	if err != nil {
		t.Fatal(err)
	}
	rest := mkTrace(sp("GET /api").root().kind(2).at(0, 20*time.Millisecond).svc("shop").attr("http.route", "/api"), sp("db").kind(3))
	rest.ID = idWithRandomness(1) // dropped at 10%
	e := example.Explain(rest, now)
	if e.Decision != example.Evaluate(rest, now) {
		t.Errorf("Explain decision %+v, Evaluate %+v", e.Decision, example.Evaluate(rest, now))
	}
	want := []struct{ rule, why string }{
		{"errors", "error_count is 0, want >= 1"},
		{"slow", "duration is 20ms, want >= 1s"},
		{"priority", `no tier matches: tiers[0] "forced": root.attr.sampling.priority is absent, want >= 1; tiers[1] "key-customers": root.resource.customer.tier is absent, want in ["gold", "platinum"]`},
		{"debug-flag", "root.attr.tailsift.debug is absent, want = true"},
		{"health-checks", `root.attr.http.route is "/api", want in ["/healthz", "/readyz", "/livez"]`},
		{"huge", "span_count is 2, want >= 10001"},
		{"test-envs", `root.resource.deployment.environment is absent, want in ["dev", "test", "staging"]`},
		{"sample-rest", "drop at probability 0.1: trace randomness 0x00000000000001 < threshold 0xe6666666666666"},
	}
	if len(e.Rules) != len(want) {
		t.Fatalf("Explain:\n%s", e)
	}
	for i, w := range want {
		r := e.Rules[i]
		if r.Rule != w.rule || r.Why != w.why || r.Matched != (i == len(want)-1) {
			t.Errorf("rule %d: %+v\n want %s: %s", i, r, w.rule, w.why)
		}
	}
	if s := e.String(); !strings.Contains(s, "MATCH    sample-rest: drop at probability 0.1") || !strings.HasSuffix(s, "decision: drop by \"sample-rest\" (probability 0.1)\n") {
		t.Errorf("String():\n%s", s)
	}

	// Without spans, conditions that need them are unknown.
	e = example.Explain(summaryOnly(rest), now)
	if got := e.Rules[3].Why; !strings.HasPrefix(got, "unknown: the trace has no span data, which root.attr.tailsift.debug needs") {
		t.Errorf("debug-flag without spans: %s", got)
	}
}

func TestExplainConditions(t *testing.T) {
	tr := checkout()
	for _, c := range []struct{ when, why string }{
		{"{every_span: {resource.service.name: checkout}}", `every_span: span 2 "render" fails: resource.service.name is "web", want = "checkout"`},
		{"{any_span: {kind: producer}}", `any_span: none of the 3 spans has kind = producer`},
		{"{not: {any_span: {status: error}}}", `not: any_span(status = error) holds`},
		{"{any: [{root.kind: client}, {duration: {lt: 1s}}]}", `none of: root.kind is server, want = client; duration is 1.2s, want < 1s`},
		{"{root.attr.http.response.status_code: {gte: 500, lt: 502}}", `root.attr.http.response.status_code is 502, want >= 500 and < 502`},
		{"{every_span: {any: [{name: x}, {not: {kind: internal}}]}}", `every_span: span 2 "render" fails: none of: name is "render", want = "x"; not: kind = internal holds`},
		{"{root.event: exception}", `the root span has no event "exception"`},
		{"{root.attr.retries: {lt: 1}}", `root.attr.retries is 2.5 (double), want < 1`},
	} {
		s := whenSet(t, c.when)
		e := s.Explain(tr, now)
		if e.Rules[0].Matched || e.Rules[0].Why != c.why {
			t.Errorf("when %s:\n got %s\nwant %s", c.when, e.Rules[0].Why, c.why)
		}
	}
	// Tiers and matches.
	s := mustParse(t, `
rules:
  - name: tiers
    type: priority
    tiers:
      - {name: gold, when: {root.resource.service.name: checkout}, percentage: 100}
`)
	if got := s.Explain(tr, now).Rules[0].Why; got != `tiers[0] "gold" (priority 1): keep (probability 1)` {
		t.Errorf("tier explanation %q", got)
	}
}

// TestExplainHasNoSideEffects: Explain does not count traces in adaptive
// rules nor take rate-limit tokens.
func TestExplainHasNoSideEffects(t *testing.T) {
	s := mustParse(t, `
rules:
  - {name: limit, type: rate_limit, traces_per_second: 1, when: {root.kind: client}}
  - {name: adapt, type: adaptive, target: 1, key: root.name}
`)
	client := mkTrace(sp("c").root().kind(3))
	server := mkTrace(sp("s").root().kind(2))
	for range 100 {
		if e := s.Explain(client, now); !e.Decision.Keep || !strings.Contains(e.Rules[0].Why, "bucket holds 1 tokens: keep") {
			t.Fatalf("Explain of the rate limit: %s", e)
		}
		s.Explain(server, now)
	}
	if !s.Evaluate(client, now).Keep || s.Evaluate(client, now).Keep {
		t.Error("the bucket of 1 did not keep exactly one trace after Explain")
	}
	if e := s.Explain(client, now); e.Decision.Keep || !strings.Contains(e.Rules[0].Why, "over the limit: drop") {
		t.Errorf("Explain of the empty bucket: %s", e)
	}
	if keys := s.AdaptiveKeys("adapt"); len(keys) != 1 {
		t.Errorf("Explain added adaptive keys: %+v", keys)
	}
	s.Evaluate(server, now)
	if e := s.Explain(server, now); !strings.Contains(e.Rules[1].Why, `key "s"`) {
		t.Errorf("adaptive explanation: %s", e)
	}
}
