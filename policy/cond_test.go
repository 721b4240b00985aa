package policy_test

import (
	"math"
	"testing"
	"time"

	"github.com/tailsift/tailsift/policy"
)

var now = time.Unix(1_700_000_000, 0)

// whenSet parses a set with one rule "r" that keeps the traces matching
// when, and drops the others by default.
func whenSet(t testing.TB, when string) *policy.Set {
	t.Helper()
	return mustParse(t, "rules:\n  - name: r\n    when: "+when+"\n    keep: true\ndefault: drop\n")
}

func mustParse(t testing.TB, yaml string) *policy.Set {
	t.Helper()
	s, err := policy.Parse(t.Name()+".yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("Parse:\n%v\nof:\n%s", err, yaml)
	}
	return s
}

// checkout is a three-span trace: a SERVER root, a CLIENT call that failed
// with an exception, and an internal span.
func checkout() *policy.Trace {
	return mkTrace(
		sp("POST /checkout").root().kind(2).status(1).at(0, 1200*time.Millisecond).svc("checkout").
			rattr("deployment.environment", "prod").
			attr("http.route", "/checkout").attr("http.response.status_code", 502).attr("retries", 2.5).
			attr("flag", false).attr("code", "500").attr("big", int64(9007199254740993)).attr("nan", math.NaN()).
			attr("novalue", nil).attr("list", []int{1}).attr("user", "alice"),
		sp("POST payments").kind(3).err().at(100*time.Millisecond, 900*time.Millisecond).svc("checkout").
			attr("http.response.status_code", "503").attr("rpc.grpc.status_code", 14).event("exception"),
		sp("render").at(1000*time.Millisecond, 150*time.Millisecond).svc("web").attr("http.response.status_code", 200.0),
	)
}

func TestConditions(t *testing.T) {
	rootless := mkTrace(sp("orphan").kind(2).err().svc("a"), sp("child").svc("b"))
	noSpans := mkTrace()
	cases := []struct {
		name, when string
		tr         *policy.Trace
		want       bool
	}{
		// Trace fields.
		{"duration gte", "{duration: {gte: 1200ms}}", checkout(), true},
		{"duration gt", "{duration: {gt: 1200ms}}", checkout(), false},
		{"duration eq", "{duration: 1.2s}", checkout(), true},
		{"duration range", "{duration: {gte: 1s, lt: 2s}}", checkout(), true},
		{"duration range above", "{duration: {gte: 100ms, lt: 1200ms}}", checkout(), false},
		{"span_count", "{span_count: 3}", checkout(), true},
		{"span_count in", "{span_count: {in: [1, 2]}}", checkout(), false},
		{"span_count lte", "{span_count: {lte: 3}}", checkout(), true},
		{"span_count lt", "{span_count: {lt: 3}}", checkout(), false},
		{"error_count", "{error_count: {gte: 1}}", checkout(), true},
		{"error_count zero", "{error_count: 0}", checkout(), false},
		{"has_root", "{has_root: true}", checkout(), true},
		{"has_root false", "{has_root: false}", rootless, true},
		{"services", "{services: 2}", checkout(), true},
		{"services gt", "{services: {gt: 2}}", checkout(), false},

		// Root span fields.
		{"root.name", `{root.name: POST /checkout}`, checkout(), true},
		{"root.name is case-sensitive", `{root.name: post /checkout}`, checkout(), false},
		{"root.name in", `{root.name: {in: [GET /, POST /checkout]}}`, checkout(), true},
		{"root.kind", "{root.kind: server}", checkout(), true},
		{"root.kind other", "{root.kind: client}", checkout(), false},
		{"root.kind in", "{root.kind: {in: [client, server]}}", checkout(), true},
		{"root.status", "{root.status: ok}", checkout(), true},
		{"root.status error", "{root.status: error}", checkout(), false},
		{"root.duration", "{root.duration: {gte: 1s}}", checkout(), true},
		{"root.event absent", "{root.event: exception}", checkout(), false},
		{"root.attr", "{root.attr.http.route: /checkout}", checkout(), true},
		{"root.resource", "{root.resource.service.name: checkout}", checkout(), true},
		{"root.resource is not root.attr", "{root.attr.service.name: checkout}", checkout(), false},
		{"root.attr is not root.resource", "{root.resource.http.route: /checkout}", checkout(), false},

		// Equality across value types: the literal's type decides.
		{"int attr = number", "{root.attr.http.response.status_code: 502}", checkout(), true},
		{"int attr = float number", "{root.attr.http.response.status_code: 502.0}", checkout(), true},
		{"int attr != quoted text", `{root.attr.http.response.status_code: "502"}`, checkout(), false},
		{"string attr = number", "{root.attr.code: 500}", checkout(), true},
		{"string attr = quoted text", `{root.attr.code: "500"}`, checkout(), true},
		{"string attr number compare", "{root.attr.code: {gte: 500, lt: 501}}", checkout(), true},
		{"double attr = number", "{root.attr.retries: 2.5}", checkout(), true},
		{"double attr gt int", "{root.attr.retries: {gt: 2}}", checkout(), true},
		{"double attr lt int", "{root.attr.retries: {lt: 2}}", checkout(), false},
		{"bool attr = bool", "{root.attr.flag: false}", checkout(), true},
		{"bool attr != text", `{root.attr.flag: "false"}`, checkout(), false},
		{"bool attr no numbers", "{root.attr.flag: 0}", checkout(), false},
		{"big int exact, gt float", "{root.attr.big: {gt: 9007199254740992.0}}", checkout(), true},
		{"big int exact, ne float", "{root.attr.big: 9007199254740992.0}", checkout(), false},
		{"big int exact, eq int", "{root.attr.big: 9007199254740993}", checkout(), true},
		{"NaN compares with nothing", "{root.attr.nan: {lt: 1}}", checkout(), false},
		{"NaN not lt", "{root.attr.nan: {gte: 1}}", checkout(), false},
		{"NaN exists", "{root.attr.nan: {exists: true}}", checkout(), true},
		{"mixed in-list", `{root.attr.http.response.status_code: {in: ["x", 502]}}`, checkout(), true},
		{"big in-list", "{root.attr.user: {in: [a, b, c, d, e, f, g, h, alice]}}", checkout(), true},
		{"big in-list miss", "{root.attr.user: {in: [a, b, c, d, e, f, g, h, i]}}", checkout(), false},
		{"big in-list with numbers", "{root.attr.code: {in: [a, b, c, d, e, f, g, h, 500]}}", checkout(), true},

		// Regex: RE2, anchored, strings only.
		{"regex full", `{root.name: {regex: "POST /.*"}}`, checkout(), true},
		{"regex is anchored", `{root.name: {regex: "POST"}}`, checkout(), false},
		{"regex substring", `{root.name: {regex: ".*check.*"}}`, checkout(), true},
		{"regex alternation anchored as a whole", `{root.name: {regex: "GET|POST /checkout"}}`, checkout(), true},
		{"regex not on ints", `{root.attr.http.response.status_code: {regex: "5.."}}`, checkout(), false},
		{"regex on numeric string", `{root.attr.code: {regex: "5.."}}`, checkout(), true},

		// exists and absent values.
		{"exists", "{root.attr.user: {exists: true}}", checkout(), true},
		{"exists false", "{root.attr.nope: {exists: false}}", checkout(), true},
		{"absent matches no comparison", "{root.attr.nope: {lt: 1}}", checkout(), false},
		{"not of absent is true", "{not: {root.attr.nope: x}}", checkout(), true},
		{"present without value: exists", "{root.attr.novalue: {exists: true}}", checkout(), true},
		{"present without value: no equality", `{root.attr.novalue: ""}`, checkout(), false},
		{"array: exists only", "{root.attr.list: {exists: true}}", checkout(), true},
		{"array: no comparison", "{root.attr.list: 1}", checkout(), false},
		{"no root: root field absent", "{root.name: {exists: false}}", rootless, true},
		{"no root: no equality", "{root.name: orphan}", rootless, false},
		{"no root: not", "{not: {root.name: orphan}}", rootless, true},

		// Composition.
		{"implicit and", "{root.kind: server, error_count: 0}", checkout(), false},
		{"all", "{all: [{root.kind: server}, {error_count: 1}]}", checkout(), true},
		{"any", "{any: [{root.kind: client}, {error_count: 1}]}", checkout(), true},
		{"any none", "{any: [{root.kind: client}, {error_count: 0}]}", checkout(), false},
		{"not", "{not: {root.kind: client}}", checkout(), true},
		{"not not", "{not: {not: {root.kind: client}}}", checkout(), false},

		// Quantifiers over spans.
		{"any_span", "{any_span: {status: error}}", checkout(), true},
		{"any_span kind", "{any_span: {kind: producer}}", checkout(), false},
		{"any_span attr string-number", "{any_span: {attr.http.response.status_code: {gte: 503}}}", checkout(), true},
		{"any_span double attr", "{any_span: {attr.http.response.status_code: 200}}", checkout(), true},
		{"any_span event", "{any_span: {event: exception}}", checkout(), true},
		{"any_span event in", "{any_span: {event: {in: [retry, exception]}}}", checkout(), true},
		{"any_span resource", "{any_span: {resource.service.name: web}}", checkout(), true},
		{"any_span is_root", "{any_span: {is_root: true, kind: server}}", checkout(), true},
		{"any_span span duration", "{any_span: {duration: {gte: 900ms}, kind: client}}", checkout(), true},
		{"any_span name regex", `{any_span: {name: {regex: "POST .*"}, kind: client}}`, checkout(), true},
		{"every_span", "{every_span: {duration: {lt: 2s}}}", checkout(), true},
		{"every_span fails", "{every_span: {resource.service.name: checkout}}", checkout(), false},
		{"every_span with any", "{every_span: {any: [{resource.service.name: checkout}, {name: render}]}}", checkout(), true},
		{"every_span of no spans is true", "{every_span: {status: error}}", noSpans, true},
		{"any_span of no spans is false", "{any_span: {status: error}}", noSpans, false},

		// The negation traps. "No span is an error" and "some span is not
		// an error" are different conditions, written differently.
		{"no span is error: one is", "{not: {any_span: {status: error}}}", checkout(), false},
		{"some span is not error: some are not", "{any_span: {not: {status: error}}}", checkout(), true},
		{"every span is not error = no span is error", "{every_span: {not: {status: error}}}", checkout(), false},
		{"not every span is error = some span is not", "{not: {every_span: {status: error}}}", checkout(), true},
		{"no span is error: none is", "{not: {any_span: {status: error}}}", mkTrace(sp("a").root(), sp("b")), true},
		{"some span is not error: all are", "{any_span: {not: {status: error}}}", mkTrace(sp("a").err(), sp("b").err()), false},
		// One span with both vs some span with each.
		{"same span: client and ok", "{any_span: {kind: client, status: ok}}", checkout(), false},
		{"different spans: a client, an ok", "{all: [{any_span: {kind: client}}, {any_span: {status: ok}}]}", checkout(), true},
		// A negated attribute test is true where the attribute is absent;
		// say so explicitly to exclude them.
		{"not gold: absent counts", "{not: {root.attr.tier: gold}}", checkout(), true},
		{"present and not gold", "{root.attr.tier: {exists: true}, not: {root.attr.tier: gold}}", checkout(), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := whenSet(t, c.when)
			if got := s.Evaluate(c.tr, now).Rule == "r"; got != c.want {
				t.Errorf("when %s: matched = %v, want %v\n%s", c.when, got, c.want, s.Explain(c.tr, now))
			}
		})
	}
}

// TestUnknownWithoutSpans: on a summary-only trace, conditions that need
// spans are unknown, and a rule matches only if its condition is true
// whatever they would say: negation does not turn "could not look" into
// "not there".
func TestUnknownWithoutSpans(t *testing.T) {
	tr := summaryOnly(checkout()) // 1 error, 3 spans, 1.2s, has a root
	cases := []struct {
		when string
		want bool
	}{
		{"{any_span: {status: error}}", false},
		{"{not: {any_span: {status: error}}}", false}, // not unknown = unknown
		{"{every_span: {status: ok}}", false},
		{"{not: {every_span: {status: ok}}}", false},
		{"{root.name: x}", false},
		{"{not: {root.name: x}}", false},
		{"{root.name: {exists: false}}", false},
		{"{root.event: exception}", false},
		{"{services: 1}", false},
		{"{not: {services: 1}}", false},
		{"{any: [{error_count: {gte: 1}}, {any_span: {status: error}}]}", true}, // true or unknown
		{"{any: [{error_count: 0}, {any_span: {status: error}}]}", false},       // false or unknown
		{"{all: [{error_count: 0}, {any_span: {status: error}}]}", false},       // false and unknown
		{"{not: {all: [{error_count: 0}, {any_span: {status: error}}]}}", true}, // not (false and unknown)
		{"{not: {any: [{error_count: 1}, {root.name: x}]}}", false},             // not (true or unknown)
		{"{span_count: 3, duration: {gte: 1s}, has_root: true, error_count: 1}", true},
	}
	for _, c := range cases {
		s := whenSet(t, c.when)
		if got := s.Evaluate(tr, now).Rule == "r"; got != c.want {
			t.Errorf("summary-only trace, when %s: matched = %v, want %v\n%s", c.when, got, c.want, s.Explain(tr, now))
		}
	}
}
