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
		"../policies.example.yaml":               {"errors", "slow", "sample-rest", "default"},
		"testdata/good/minimal.yaml":             {"default"},
		"testdata/good/no-default.yaml":          {"errors", "default"},
		"testdata/good/commented-out-rules.yaml": {"default"},
		"testdata/good/all-types.yaml":           {"errors", "slow_band", "very-slow", "sample-0_5", "keep-all", "drop-all", "default"},
		"testdata/good/anchors.yaml":             {"fast-band", "slow", "default"},
		"testdata/good/edges.yaml":               {"0", "all", "default"},
	}
	files, err := filepath.Glob("testdata/good/*.yaml")
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
	want := []string{"errors", "slow", "sample-rest", policy.DefaultRule}
	if got := s.RuleNames(); !slices.Equal(got, want) {
		t.Errorf("RuleNames() = %q, want %q", got, want)
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

type wantErr struct {
	line int
	msg  string // substring of Error.Msg
}

func TestBadFiles(t *testing.T) {
	cases := map[string][]wantErr{
		"bad-duration.yaml": {{7, `rules[1] "slow": threshold: invalid duration "1x"`}},
		"unknown-keys.yaml": {
			{2, `rules[0] "slow": threshold: missing`},
			{4, `rules[0] "slow": unknown key "treshold"; valid keys for type latency: name, type, threshold, upper`},
			{6, `unknown key "defualt"; valid keys: rules, default`},
		},
		"missing-name-type.yaml": {
			{2, `rules[0]: name: missing`},
			{3, `rules[1] "no-type": type: missing; valid types: error, latency, probabilistic, always, drop`},
			{4, `rules[2]: name: missing`},
			{4, `rules[2]: type: missing`},
		},
		"unknown-type.yaml": {
			{3, `rules[0] "errors": type: unknown type "errors"; valid types: error, latency, probabilistic, always, drop`},
			{5, `rules[1] "sample": type: unknown type "sampling"`},
			{6, `rules[1] "sample": percentage: must be from 0 to 100, got 200`},
			{8, `rules[2] "list": type: got a list`},
		},
		"duplicate-names.yaml": {
			{7, `rules[2] "errors": name: duplicate name "errors" (first used at line 2)`},
			{9, `rules[3] "slow": name: duplicate name "slow" (first used at line 4)`},
		},
		"names.yaml": {
			{2, `rules[0] "Slow": name: "Slow" is invalid`},
			{4, `rules[1] "default": name: "default" is reserved`},
			{6, `rules[2] "has space": name: "has space" is invalid`},
			{8, `rules[3]: name: got ""`},
			{10, `rules[4]: name: got a list`},
		},
		"latency.yaml": {
			{2, `rules[0] "no-threshold": threshold: missing (required by type latency`},
			{6, `rules[1] "zero": threshold: must be > 0, got 0s`},
			{9, `rules[2] "negative": threshold: must be > 0, got -1s`},
			{13, `rules[3] "upper-not-above": upper: must be greater than threshold (1s), got 1s`},
			{16, `rules[4] "bare-number": threshold: invalid duration "500": missing unit`},
			{20, `rules[5] "upper-bad": upper: invalid duration "soon"`},
			{23, `rules[6] "list": threshold: got a list`},
		},
		"percentage.yaml": {
			{4, `rules[0] "negative": percentage: must be from 0 to 100, got -1`},
			{7, `rules[1] "over": percentage: must be from 0 to 100, got 150`},
			{10, `rules[2] "text": percentage: got "ten"; want a number from 0 to 100`},
			{13, `rules[3] "percent-sign": percentage: got "10%"; want a number from 0 to 100 (write percentage: 10)`},
			{14, `rules[4] "missing": percentage: missing`},
			{18, `rules[5] "nan": percentage: must be from 0 to 100, got .nan`},
		},
		"wrong-params.yaml": {
			{4, `rules[0] "errors": percentage: not a parameter of type error (type error takes no parameters)`},
			{8, `rules[1] "sample": threshold: not a parameter of type probabilistic (type probabilistic takes percentage)`},
			{11, `rules[2] "all": upper: not a parameter of type always`},
		},
		"default.yaml":          {{2, `default: got "maybe"; valid values: keep, drop`}},
		"rules-not-list.yaml":   {{2, `rules: must be a list of rules, got a mapping`}},
		"rule-not-mapping.yaml": {{2, `rules[0]: must be a mapping with "name" and "type", got "errors"`}},
		"duplicate-keys.yaml": {
			{5, `rules[0] "slow": duplicate key "threshold" (first at line 4)`},
			{7, `duplicate key "default" (first at line 6)`},
		},
		"missing-rules.yaml":  {{1, `rules: missing`}},
		"empty.yaml":          {{0, `empty policy file`}},
		"comments-only.yaml":  {{0, `empty policy file`}},
		"top-level-list.yaml": {{1, `top level: must be a mapping with keys "rules" and "default", got a list`}},
		"two-documents.yaml":  {{2, `a second YAML document`}},
		"syntax.yaml":         nil, // see syntaxCases
		"syntax-tab.yaml":     nil,
	}
	syntaxCases := map[string]string{ // file -> substring of the YAML library's error
		"syntax.yaml":     "testdata/bad/syntax.yaml: yaml: line 5: mapping values are not allowed",
		"syntax-tab.yaml": "testdata/bad/syntax-tab.yaml: yaml: line 4: found a tab character",
	}

	files, err := filepath.Glob("testdata/bad/*.yaml")
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
			path := "testdata/bad/" + name
			s, err := policy.Load(path)
			if err == nil {
				t.Fatalf("Load succeeded, want an error (rules %q)", s.RuleNames())
			}
			if s != nil {
				t.Errorf("Load returned a Set with an error")
			}
			var errs policy.Errors
			if syn, ok := syntaxCases[name]; ok {
				if errors.As(err, &errs) {
					t.Errorf("syntax error returned as policy.Errors: %v", err)
				}
				if !strings.Contains(err.Error(), syn) {
					t.Errorf("error = %q, want it to contain %q", err, syn)
				}
				return
			}
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want policy.Errors: %v", err, err)
			}
			if len(errs) != len(want) {
				t.Errorf("got %d errors, want %d:\n%v", len(errs), len(want), err)
			}
			for i := range min(len(errs), len(want)) {
				g, w := errs[i], want[i]
				if g.File != path || g.Line != w.line || !strings.Contains(g.Msg, w.msg) {
					t.Errorf("error %d = %s:%d: %s\n       want %s:%d: ...%s...", i, g.File, g.Line, g.Msg, path, w.line, w.msg)
				}
			}
			// Error() lists the problems one per line, as file:line: msg.
			if lines := strings.Split(err.Error(), "\n"); len(lines) != len(errs) {
				t.Errorf("Error() has %d lines, want %d", len(lines), len(errs))
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	data := []byte(`# first matching rule decides; "default" applies when none matches
rules:
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
	want := `policies.yaml:7: rules[1] "slow": threshold: invalid duration "1x"` + "\n" +
		`policies.yaml:10: rules[2] "sample-rest": percentage: must be from 0 to 100, got 101`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error:\n%v\nwant:\n%s", err, want)
	}
	if got := (policy.Error{File: "p.yaml", Msg: "empty"}).Error(); got != "p.yaml: empty" {
		t.Errorf("Error without line = %q", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := policy.Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file = %v, want an error wrapping os.ErrNotExist", err)
	}
}
