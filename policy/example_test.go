package policy_test

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tailsift/tailsift"
	"github.com/tailsift/tailsift/policy"
)

// TestExampleBehaviour: what the end-to-end tests and the load benchmark
// rely on. For ordinary traffic, with or without span data, the example
// keeps every error trace, every trace of 1s or more, and 10% of the rest;
// its other rules only decide opt-in traffic.
func TestExampleBehaviour(t *testing.T) {
	s, err := policy.Parse("example", tailsift.ExamplePolicies)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	ordinary := func(d time.Duration, errSpan bool) *policy.Trace {
		child := sp("SELECT").kind(3).attr("db.system.name", "postgresql").svc("orders")
		if errSpan {
			child = child.err().event("exception")
		}
		return mkTrace(sp("GET /api/v1/orders/{id}").root().kind(2).at(0, d).svc("orders").
			rattr("deployment.environment", "production").attr("http.route", "/api/v1/orders/{id}").
			attr("http.response.status_code", 200), child)
	}
	kept := 0
	const n = 20_000
	for i := range n {
		for _, tr := range []*policy.Trace{ordinary(20*time.Millisecond, false), summaryOnly(ordinary(20*time.Millisecond, false))} {
			tr.ID = randomID(rng)
			d := s.Evaluate(tr, now)
			if d.Rule != "sample-rest" || d.Probability != 0.1 {
				t.Fatalf("ordinary trace decided by %+v, want sample-rest at 10%%", d)
			}
			if d.Keep && tr.Spans != nil {
				kept++
			}
		}
		if i%100 == 0 {
			for _, tr := range []*policy.Trace{ordinary(time.Second, true), summaryOnly(ordinary(time.Second, true))} {
				if d := s.Evaluate(tr, now); d != keepD("errors") {
					t.Fatalf("error trace: %+v", d)
				}
			}
			for _, tr := range []*policy.Trace{ordinary(time.Second, false), summaryOnly(ordinary(time.Second, false))} {
				if d := s.Evaluate(tr, now); d != keepD("slow") {
					t.Fatalf("slow trace: %+v", d)
				}
			}
		}
	}
	if kept < n*9/100 || kept > n*11/100 {
		t.Errorf("kept %d of %d ordinary traces, want 10%%", kept, n)
	}

	// Opt-in traffic.
	root := func() memSpan { return sp("GET /").root().kind(2).at(0, 10*time.Millisecond) }
	for _, c := range []struct {
		name string
		tr   *policy.Trace
		rule string
	}{
		{"sampling.priority", mkTrace(root().attr("sampling.priority", 1)), "priority"},
		{"customer tier", mkTrace(root().rattr("customer.tier", "gold")), "priority"},
		{"debug flag", mkTrace(root().attr("tailsift.debug", true)), "debug-flag"},
		{"health check", mkTrace(root().attr("http.route", "/healthz")), "health-checks"},
		{"test environment", mkTrace(root().svc("a").rattr("deployment.environment", "staging")), "test-envs"},
	} {
		if d := s.Evaluate(c.tr, now); d.Rule != c.rule {
			t.Errorf("%s: decided by %+v, want %s", c.name, d, c.rule)
		}
	}
	huge := policy.Trace{ID: idWithRandomness(1<<56 - 1), SpanCount: 10_001, HasRoot: true, StartUnixNano: t0, EndUnixNano: t0 + 1e6}
	if d := s.Evaluate(&huge, now); d != dropD("huge") {
		t.Errorf("huge trace: %+v", d)
	}
}

// TestConcurrentUse: evaluations, explanations, share changes and
// reloads from many goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	src := `
rules:
  - {name: errors, type: error}
  - {name: limit, type: rate_limit, traces_per_second: 50, when: {root.kind: client}}
  - {name: tiers, type: priority, tiers: [{when: {root.attr.p: 1}, percentage: 50}]}
  - {name: adapt, type: adaptive, key: [root.resource.service.name], target: 20, interval: 1s, max_keys: 5}
`
	s := mustParse(t, src)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 3000 {
				at := now.Add(time.Duration(i) * time.Millisecond)
				tr := mkTrace(sp("r").root().kind(int32(1+i%3)).svc([]string{"a", "b", "c", "d", "e", "f", "g"}[rng.IntN(7)]).attr("p", i%2))
				tr.ID = randomID(rng)
				d := s.Evaluate(tr, at)
				if d.Rule == "" {
					t.Error("no rule")
					return
				}
				switch i % 500 {
				case 0:
					s.Explain(tr, at)
				case 1:
					s.SetShare(0.5 + float64(g)/16)
				case 2:
					s.AdaptiveKeys("adapt")
				case 3:
					next := mustParse(t, src)
					next.AdoptState(s)
				}
			}
		}()
	}
	wg.Wait()
	if keys := s.AdaptiveKeys("adapt"); len(keys) != 6 {
		t.Errorf("keys %+v, want 5 and the overflow key", keys)
	}
}
