package policy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tailsift/tailsift"
	"github.com/tailsift/tailsift/policy"
)

// tenSpans is a realistic 10-span trace: an HTTP server root, HTTP and
// database clients and internal work, 6 to 8 attributes each, 3 services.
func tenSpans() *policy.Trace {
	svc := func(s memSpan, name string) memSpan {
		return s.svc(name).rattr("service.namespace", "shop").rattr("deployment.environment", "production").rattr("k8s.pod.name", name+"-7d9f")
	}
	http := func(s memSpan, route string, code int) memSpan {
		return s.attr("http.request.method", "GET").attr("http.route", route).attr("url.scheme", "https").
			attr("server.address", "shop.internal").attr("user_agent.original", "Mozilla/5.0").
			attr("http.response.status_code", code).attr("enduser.id", "user-4711")
	}
	db := func(s memSpan) memSpan {
		return s.kind(3).attr("db.system.name", "postgresql").attr("db.namespace", "orders").attr("db.operation.name", "SELECT").
			attr("db.collection.name", "orders").attr("db.query.text", "SELECT * FROM orders WHERE id = $1").attr("server.address", "pg").attr("server.port", 5432)
	}
	internal := func(s memSpan) memSpan {
		return s.attr("code.function.name", "render").attr("code.file.path", "app/render.go").attr("code.line.number", 42).
			attr("app.items", 3).attr("app.cache_hit", true).attr("app.tenant", "acme")
	}
	return mkTrace(
		http(svc(sp("GET /api/v1/orders/{id}").root().kind(2).at(0, 180*time.Millisecond), "frontend"), "/api/v1/orders/{id}", 200),
		http(svc(sp("GET /api/v1/orders/{id}").kind(3).at(5*time.Millisecond, 150*time.Millisecond), "frontend"), "/api/v1/orders/{id}", 200),
		http(svc(sp("GET /api/v1/orders/{id}").kind(2).at(6*time.Millisecond, 140*time.Millisecond), "orders"), "/api/v1/orders/{id}", 200),
		db(svc(sp("SELECT orders").at(10*time.Millisecond, 40*time.Millisecond), "orders")),
		db(svc(sp("SELECT items").at(55*time.Millisecond, 30*time.Millisecond), "orders")),
		internal(svc(sp("render").at(90*time.Millisecond, 20*time.Millisecond), "orders")),
		http(svc(sp("GET /api/v1/prices").kind(3).at(100*time.Millisecond, 30*time.Millisecond), "orders"), "/api/v1/prices", 200),
		http(svc(sp("GET /api/v1/prices").kind(2).at(101*time.Millisecond, 28*time.Millisecond), "prices"), "/api/v1/prices", 200),
		db(svc(sp("SELECT prices").at(105*time.Millisecond, 10*time.Millisecond), "prices")),
		internal(svc(sp("render").at(150*time.Millisecond, 20*time.Millisecond), "frontend")),
	)
}

// spanRules decide with root, any_span and every_span conditions; none of
// them matches tenSpans until the last, so each evaluation runs them all.
const spanRules = `
rules:
  - name: errors
    type: error
    http_status: {gte: 500}
    exception: true
  - name: slow-db
    type: latency
    threshold: 500ms
    spans: {kind: client, attr.db.system.name: {exists: true}}
  - name: vip
    when: {any_span: {attr.enduser.id: {in: [alice, bob, carol, dave, erin, frank, grace, heidi]}}}
    keep: true
  - name: checkout
    when:
      all:
        - root.resource.service.name: {in: [checkout, payments]}
        - any_span: {status: error, attr.http.response.status_code: {gte: 500}}
    keep: true
  - name: internal-only
    when: {every_span: {kind: internal}}
    drop: true
  - name: no-db
    when: {not: {any_span: {attr.db.system.name: {regex: "mysql|mariadb"}}}, root.name: {regex: "POST .*"}}
    percentage: 50
  - name: rest
    type: probabilistic
    percentage: 10
default: drop
`

var sink policy.Decision

// TestEvaluateDoesNotAllocate: no allocation per evaluation, for summary
// and span conditions, regex, big in-lists, priority tiers, rate limits and
// adaptive keys seen before. It also proves that Evaluate does not make the
// *Trace escape: traces live on the closure's stack.
func TestEvaluateDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool (regexp) allocate")
	}
	example, err := policy.Parse("example", tailsift.ExamplePolicies)
	if err != nil {
		t.Fatal(err)
	}
	spans := mustParse(t, spanRules)
	conds, err := policy.Load("testdata/conditions.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	all, err := policy.Load("testdata/all-types.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ten := tenSpans()
	check := checkout()
	for name, c := range map[string]struct {
		set  *policy.Set
		full *policy.Trace
	}{
		"example, summary only": {example, nil},
		"example, 10 spans":     {example, ten},
		"span rules, 10 spans":  {spans, ten},
		"conditions":            {conds, check},
		"all types":             {all, check},
		"all types, 10 spans":   {all, ten},
	} {
		i := 0
		at := now
		f := func() {
			i++
			at = at.Add(time.Millisecond)
			tr := policy.Trace{
				ID:            idWithRandomness(uint64(i) * 0x9e3779b97f4a7c15),
				SpanCount:     4,
				ErrorCount:    i % 3 / 2,
				StartUnixNano: t0,
				EndUnixNano:   t0 + uint64(i%4)*uint64(400*time.Millisecond),
			}
			if c.full != nil {
				tr = *c.full
				tr.ID = idWithRandomness(uint64(i) * 0x9e3779b97f4a7c15)
			}
			sink = c.set.Evaluate(&tr, at)
		}
		f() // adaptive rules see their keys for the first time
		if allocs := testing.AllocsPerRun(1000, f); allocs != 0 {
			t.Errorf("%s: Evaluate allocates %v times per call, want 0", name, allocs)
		}
	}
}

func BenchmarkEvaluate(b *testing.B) {
	example, err := policy.Parse("example", tailsift.ExamplePolicies)
	if err != nil {
		b.Fatal(err)
	}
	spans := mustParse(b, spanRules)
	adaptive := mustParse(b, `
rules:
  - name: adapt
    type: adaptive
    key: [root.resource.service.name, root.attr.http.route]
    target: 100
`)
	withSpans := func(d time.Duration, errs int) policy.Trace {
		tr := *tenSpans()
		tr.EndUnixNano = tr.StartUnixNano + uint64(d)
		tr.ErrorCount = errs
		return tr
	}
	for _, bc := range []struct {
		name string
		set  *policy.Set
		tr   policy.Trace
	}{
		{"example/error", example, summary(time.Millisecond, 1)},
		{"example/slow", example, summary(3*time.Second, 0)},
		{"example/rest", example, summary(20*time.Millisecond, 0)},
		{"example/rest-10-spans", example, withSpans(20*time.Millisecond, 0)},
		{"span-rules/10-spans", spans, withSpans(180*time.Millisecond, 0)},
		{"adaptive/10-spans", adaptive, withSpans(180*time.Millisecond, 0)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			tr := bc.tr
			at := now
			i := uint64(0)
			for b.Loop() {
				i++
				tr.ID = idWithRandomness(i * 0x9e3779b97f4a7c15)
				at = at.Add(time.Microsecond)
				sink = bc.set.Evaluate(&tr, at)
			}
		})
	}
}

func BenchmarkParseExample(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policy.Parse("example", tailsift.ExamplePolicies); err != nil {
			b.Fatal(err)
		}
	}
}

func ExampleSet_Explain() {
	s, _ := policy.Parse("policies.yaml", []byte(`
rules:
  - name: errors
    type: error
  - name: checkout
    when:
      root.resource.service.name: checkout
      any_span: {kind: client, duration: {gte: 500ms}}
    keep: true
  - name: rest
    type: probabilistic
    percentage: 10
`))
	tr := mkTrace(
		sp("POST /checkout").root().kind(2).svc("checkout"),
		sp("POST payments").kind(3).at(0, 300*time.Millisecond).svc("checkout"),
	)
	tr.ID = idWithRandomness(0x00ff_0000_0000_00)
	fmt.Print(s.Explain(tr, time.Now()))
	// Output:
	// no match errors: error_count is 0, want >= 1
	// no match checkout: any_span: none of the 2 spans has all(kind = client, duration >= 500ms)
	// MATCH    rest: drop at probability 0.1: trace randomness 0x00ff0000000000 < threshold 0xe6666666666666
	// decision: drop by "rest" (probability 0.1)
}
