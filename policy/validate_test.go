package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tailsift/tailsift"
	"github.com/tailsift/tailsift/policy"
)

func TestGoodFiles(t *testing.T) {
	cases := map[string][]string{ // file -> RuleNames
		"../policies.example.yaml":      {"errors", "slow", "priority", "debug-flag", "health-checks", "huge", "test-envs", "sample-rest", "default"},
		"testdata/no-default.good.yaml": {"errors", "default"},
		"testdata/all-types.good.yaml": {"errors", "errors-http-grpc", "slow_band", "slow-db", "very-slow", "tiers", "vip", "no-type",
			"huge", "tiny", "noisy", "per-service", "sample-0_5", "keep-all", "budget", "default"},
		"testdata/conditions.good.yaml": {"trace-fields", "root-fields", "quantifiers", "catch-all", "default"},
		"testdata/anchors.good.yaml":    {"fast-band", "slow", "default"},
		"testdata/edges.good.yaml":      {"0", "all", "default"},
	}
	files, err := filepath.Glob("testdata/*.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := cases[f]; !ok {
			t.Errorf("%s has no case in TestGoodFiles", f)
		}
	}
	for file, want := range cases {
		t.Run(file, func(t *testing.T) {
			s, err := policy.Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := s.RuleNames(); !slices.Equal(got, want) {
				t.Errorf("RuleNames() = %q, want %q", got, want)
			}
		})
	}
}

func TestEmbeddedExample(t *testing.T) {
	s, err := policy.Parse("policies.example.yaml", tailsift.ExamplePolicies)
	if err != nil {
		t.Fatalf("embedded example: %v", err)
	}
	if s.KeepByDefault() {
		t.Error("example default is keep, want drop")
	}
	onDisk, err := os.ReadFile("../policies.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(onDisk) != string(tailsift.ExamplePolicies) {
		t.Error("embedded ExamplePolicies differs from policies.example.yaml")
	}
}

// wantErr is one expected problem: its position and a substring of its
// message (Msg, then " (" Hint ")").
type wantErr struct {
	line, col int
	msg       string
}

func TestBadFiles(t *testing.T) {
	cases := map[string][]wantErr{
		"bad-duration.bad.yaml": {{7, 16, `rules[1] "slow": threshold: invalid duration "1x" (want a number with a unit`}},
		"unknown-keys.bad.yaml": {
			{2, 5, `rules[0] "slow": threshold: missing`},
			{4, 5, `rules[0] "slow": unknown key "treshold" (did you mean "threshold"? valid keys: name, type, when, threshold, upper, spans, keep, drop, percentage)`},
			{6, 1, `unknown key "defualt" (did you mean "default"? valid keys: rules, default)`},
		},
		"missing-name-type.bad.yaml": {
			{2, 5, `rules[0]: name: missing`},
			{3, 5, `rules[1] "no-type": neither a type nor a when and an action`},
			{4, 5, `rules[2]: name: missing`},
			{4, 5, `rules[2]: neither a type nor a when and an action`},
		},
		"unknown-type.bad.yaml": {
			{3, 11, `rules[0] "errors": type: unknown type "errors" (did you mean "error"? valid types: error, latency, priority, adaptive, probabilistic, attribute, span_count, rate_limit, always, drop)`},
			{5, 11, `rules[1] "sample": type: unknown type "sampling" (valid types:`},
			{8, 11, `rules[2] "list": type: got a list`},
		},
		"duplicate-names.bad.yaml": {
			{7, 11, `rules[2] "errors": name: duplicate name "errors" (first used at line 2)`},
			{9, 5, `rules[3] "slow": unreachable: rules[2] "errors" (line 7) decides every trace`},
			{9, 11, `rules[3] "slow": name: duplicate name "slow" (first used at line 4)`},
		},
		"names.bad.yaml": {
			{2, 11, `rules[0] "Slow": name: "Slow" is invalid`},
			{4, 11, `rules[1] "default": name: "default" is reserved`},
			{6, 11, `rules[2] "has space": name: "has space" is invalid`},
			{8, 11, `rules[3]: name: got ""`},
			{10, 11, `rules[4]: name: got a list`},
		},
		"latency.bad.yaml": {
			{2, 5, `rules[0] "no-threshold": threshold: missing (type latency needs a threshold`},
			{6, 16, `rules[1] "zero": threshold: must be > 0, got 0s`},
			{9, 16, `rules[2] "negative": threshold: must be > 0, got -1s`},
			{13, 12, `rules[3] "upper-not-above": upper: must be greater than threshold (1s), got 1s`},
			{16, 16, `rules[4] "bare-number": threshold: invalid duration "500" (missing unit: write 500s or 500ms)`},
			{20, 12, `rules[5] "upper-bad": upper: invalid duration "soon"`},
			{23, 16, `rules[6] "list": threshold: got a list`},
		},
		"percentage.bad.yaml": {
			{2, 79, `rules[0] "negative": percentage: must be from 0 to 100, got -1`},
			{3, 75, `rules[1] "over": percentage: must be from 0 to 100, got 150`},
			{4, 75, `rules[2] "text": percentage: got "ten" (want a number from 0 to 100)`},
			{5, 83, `rules[3] "percent-sign": percentage: got "10%" (write the number without %: 10)`},
			{6, 5, `rules[4] "missing": percentage: missing`},
			{7, 74, `rules[5] "nan": percentage: must be from 0 to 100, got .nan`},
			{8, 57, `rules[6] "action": percentage: must be from 0 to 100, got 100.5`},
		},
		"wrong-params.bad.yaml": {
			{9, 5, `rules[1] "sample": threshold: not a key of type probabilistic (type probabilistic takes name, type, when, percentage; threshold is a key of type latency)`},
			{12, 5, `rules[2] "all": upper: not a key of type always (type always takes name, type, when; upper is a key of type latency)`},
		},
		"default.bad.yaml":          {{3, 10, `default: got "maybe" (valid values: keep, drop)`}},
		"rules-not-list.bad.yaml":   {{2, 3, `rules: must be a list of rules, got a mapping`}},
		"rule-not-mapping.bad.yaml": {{2, 5, `rules[0]: must be a mapping, got "errors"`}},
		"duplicate-keys.bad.yaml": {
			{5, 5, `rules[0] "slow": duplicate key "threshold" (first at line 4)`},
			{7, 1, `duplicate key "default" (first at line 6)`},
		},
		"missing-rules.bad.yaml":       {{1, 1, `rules: missing`}},
		"no-rules.bad.yaml":            {{2, 1, `rules: no rules (every trace would get the default; to keep or drop everything on purpose, write a rule`}},
		"commented-out-rules.bad.yaml": {{2, 1, `rules: no rules`}},
		"empty.bad.yaml":               {{0, 0, `empty policy file`}},
		"comments-only.bad.yaml":       {{0, 0, `empty policy file`}},
		"top-level-list.bad.yaml":      {{1, 1, `top level: must be a mapping, got a list`}},
		"two-documents.bad.yaml":       {{2, 1, `a second YAML document`}},
		"syntax.bad.yaml":              {{5, 0, `YAML syntax error: mapping values are not allowed in this context`}},
		"syntax-tab.bad.yaml":          {{4, 0, `YAML syntax error: found a tab character`}},
		"unreachable.bad.yaml": {
			{7, 5, `rules[2] "slow": unreachable: rules[1] "sample" (line 4) decides every trace (give that rule a when: condition, or move this rule above it)`},
			{10, 5, `rules[3] "all": unreachable: rules[1] "sample" (line 4) decides every trace`},
		},
		"actions.bad.yaml": {
			{2, 5, `rules[0] "no-action": no action (add keep: true, drop: true or percentage: N)`},
			{7, 5, `rules[1] "two-actions": more than one action: keep, drop`},
			{10, 11, `rules[2] "keep-false": keep: false (write drop: true)`},
			{11, 5, `rules[3] "nothing": neither a type nor a when and an action`},
			{12, 5, `rules[4] "attr-no-when": when: missing (type attribute decides the traces its when: condition selects)`},
			{18, 5, `rules[5] "always-with-action": percentage: not a key of type always`},
		},
		"conditions.bad.yaml": {
			{4, 7, `rules[0] "fields": when: "status" is a span field: say which span (root.status for the root span, or any_span: {status: ...} / every_span: {status: ...})`},
			{5, 7, `when: unknown field "http.route" (attributes are root.attr.http.route (root span) or root.resource.http.route (its resource), or attr.http.route inside any_span/every_span)`},
			{6, 7, `when: unknown root span field "nmae" (root span fields: root.name,`},
			{7, 7, `when: unknown root span field "attr." (name the attribute: root.attr.<key>`},
			{8, 7, `when: unknown field "durration" (did you mean "duration"?`},
			{9, 7, `when: unknown root span field "is_root" (the root span is the root: to ask whether the trace has one, write has_root: true)`},
			{13, 24, `rules[1] "operators": when: root.attr.code: unknown operator "ne" (there is no negated operator: write not: {root.attr.code: ...}, which is also true when root.attr.code is absent)`},
			{14, 19, `when: root.name: operator "gte" does not apply to root.name (valid operators for root.name: eq, in, regex, exists)`},
			{15, 23, `when: duration: gte: invalid duration "5" (missing unit: write 5s or 5ms)`},
			{16, 25, `when: span_count: gte: got "1.5" (want an integer >= 0)`},
			{17, 18, `when: root.kind: unknown value "serverr" (valid values: unspecified, internal, server, client, producer, consumer)`},
			{18, 28, `when: root.attr.x: regex: invalid regular expression "a(b": missing closing )`},
			{19, 20, `when: root.attr.y: got a list (to match any of several values write {in: [a, b]})`},
			{20, 25, `when: root.attr.z: lt: got "10" (want a number (unquoted); text compares with eq, in or regex)`},
			{21, 20, `when: root.attr.w: never matches: the range is empty`},
			{22, 20, `when: root.attr.v: never matches: exists: false with another operator`},
			{23, 21, `when: root.status: unknown operator "regx" (did you mean "regex"? valid operators for root.status: eq, in)`},
			{24, 25, `when: root.attr.u: in: want a non-empty list of values`},
			{25, 19, `when: root.attr.t: got an empty value`},
			{30, 9, `rules[2] "scopes": when: any_span: "error_count" is a trace field, not a span field (move it out of any_span)`},
			{31, 9, `when: any_span: "root.name" is a field of the root span, inside any_span (write name to test each span, or move root.name out of any_span)`},
			{32, 9, `when: any_span: any_span inside any_span (quantifiers do not nest`},
			{37, 12, `rules[3] "shapes": when: all: want a non-empty list of conditions, got a mapping`},
			{38, 12, `when: any: want a non-empty list of conditions, got a list`},
			{39, 12, `when: not: want a condition, got "error"`},
			{42, 11, `rules[4] "empty-when": when: want a condition, got an empty mapping`},
		},
		"types.bad.yaml": {
			{4, 18, `rules[0] "err": http_status: got a list`},
			{5, 16, `rules[0] "err": exception: got "maybe" (want true or false)`},
			{9, 13, `rules[1] "lat": spans: "error_count" is a trace field, not a span field (move it out of spans)`},
			{13, 9, `rules[2] "prio": tiers[0]: when: missing`},
			{13, 15, `rules[2] "prio": tiers[0]: name: "Top" is invalid`},
			{14, 21, `rules[2] "prio": tiers[0]: percentage: must be from 0 to 100, got 200`},
			{17, 9, `rules[2] "prio": tiers[1]: unknown key "weight" (valid keys: name, when, percentage)`},
			{18, 9, `rules[2] "prio": tiers[2]: must be a mapping, got "nope"`},
			{21, 12, `rules[3] "prio-empty": tiers: want a non-empty list`},
			{25, 10, `rules[4] "sc": max: must be at least min (10), got 5`},
			{26, 5, `rules[5] "sc-none": min or max: missing`},
			{32, 5, `rules[6] "rl": both traces_per_second and spans_per_second`},
			{37, 12, `rules[7] "rl-burst": burst: must be at least 1, got 0.5`},
			{38, 5, `rules[8] "ad": target: missing`},
			{41, 24, `rules[8] "ad": key[1]: duration cannot be a key field`},
			{41, 34, `rules[8] "ad": key[2]: root.attr.a twice`},
			{41, 47, `rules[8] "ad": key[3]: unknown root span field "nope"`},
			{42, 15, `rules[8] "ad": interval: must be from 1s to 1h, got 100ms`},
			{43, 16, `rules[8] "ad": smoothing: must be in (0, 1], got 0`},
			{44, 15, `rules[8] "ad": max_keys: must be from 1 to 100000, got 0`},
			{45, 25, `rules[8] "ad": initial_percentage: must be from 0 to 100, got 101`},
			{48, 10, `rules[9] "ad-keys": key: want 1 to 4 fields, got 5`},
			{49, 13, `rules[9] "ad-keys": target: must be > 0, got -1`},
		},
	}

	files, err := filepath.Glob("testdata/*.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := cases[filepath.Base(f)]; !ok {
			t.Errorf("%s has no case in TestBadFiles", f)
		}
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			path := "testdata/" + name
			s, err := policy.Load(path)
			if err == nil {
				t.Fatalf("Load succeeded, want an error (rules %q)", s.RuleNames())
			}
			if s != nil {
				t.Errorf("Load returned a Set with an error")
			}
			var errs policy.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want policy.Errors: %v", err, err)
			}
			if len(errs) != len(want) {
				t.Errorf("got %d errors, want %d:\n%v", len(errs), len(want), err)
			}
			for i := range min(len(errs), len(want)) {
				g, w := errs[i], want[i]
				text := g.Msg
				if g.Hint != "" {
					text += " (" + g.Hint + ")"
				}
				if g.File != path || g.Line != w.line || g.Column != w.col || !strings.Contains(text, w.msg) {
					t.Errorf("error %d = %s:%d:%d: %s\n       want %s:%d:%d: ...%s...", i, g.File, g.Line, g.Column, text, path, w.line, w.col, w.msg)
				}
			}
			// Error() lists the problems one per line.
			if lines := strings.Split(err.Error(), "\n"); len(lines) != len(errs) {
				t.Errorf("Error() has %d lines, want %d", len(lines), len(errs))
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	data := []byte(`rules:
  - name: errors
    type: error
  - name: slow
    type: latency
    threshold: 1x
  - name: sample-rest
    type: probabilistic
    percentage: 101
default: drop
`)
	_, err := policy.Parse("policies.yaml", data)
	want := `policies.yaml:6:16: rules[1] "slow": threshold: invalid duration "1x" (want a number with a unit (ns, us, ms, s, m, h), such as 1s, 250ms or 1m30s)` + "\n" +
		`policies.yaml:9:17: rules[2] "sample-rest": percentage: must be from 0 to 100, got 101 (a percentage of traces to keep, e.g. 10 or 0.5)`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error:\n%v\nwant:\n%s", err, want)
	}
	for _, c := range []struct {
		e    policy.Error
		want string
	}{
		{policy.Error{File: "p.yaml", Msg: "empty"}, "p.yaml: empty"},
		{policy.Error{File: "p.yaml", Line: 3, Msg: "bad", Hint: "fix it"}, "p.yaml:3: bad (fix it)"},
		{policy.Error{File: "p.yaml", Line: 3, Column: 7, Msg: "bad"}, "p.yaml:3:7: bad"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := policy.Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want an error wrapping os.ErrNotExist", err)
	}
}

// TestLimits: hostile files are rejected, not expanded.
func TestLimits(t *testing.T) {
	deep := "rules: [{name: r, keep: true, when: " + strings.Repeat("{not: ", 40) + "{has_root: true}" + strings.Repeat("}", 40) + "}]\n"
	self := "rules: [{name: r, keep: true, when: &c {not: *c}}]\n"
	bomb := "x: &a [{has_root: true}, {has_root: true}, {has_root: true}, {has_root: true}]\n" +
		"y: &b [{any: *a}, {any: *a}, {any: *a}, {any: *a}, {any: *a}, {any: *a}, {any: *a}, {any: *a}]\n" +
		"z: &c [{any: *b}, {any: *b}, {any: *b}, {any: *b}, {any: *b}, {any: *b}, {any: *b}, {any: *b}]\n" +
		"w: &d [{any: *c}, {any: *c}, {any: *c}, {any: *c}, {any: *c}, {any: *c}, {any: *c}, {any: *c}]\n"
	bombRules := "rules: [{name: r, keep: true, when: {any: [{any: *d}, {any: *d}, {any: *d}, {any: *d}]}}]\n"
	for name, data := range map[string]string{"deep": deep, "self": self, "bomb": bomb + bombRules} {
		_, err := policy.Parse(name, []byte(data))
		if err == nil {
			t.Errorf("%s: Parse succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), "nested more than 32 deep") && !strings.Contains(err.Error(), "more than 10000 conditions") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
