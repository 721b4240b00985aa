package policy_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/tailsift/tailsift"
	"github.com/tailsift/tailsift/policy"
)

// FuzzParse checks that Parse never panics, returns a Set or a non-empty
// Errors, and that a Set it returns evaluates and explains without
// panicking, only ever deciding with one of its RuleNames.
// Seeds: every file under testdata and the embedded example.
func FuzzParse(f *testing.F) {
	f.Add(tailsift.ExamplePolicies)
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("rules: [{? [a]: 1}, &x {name: a, type: always}, *x]\n"))
	nameRE := regexp.MustCompile(`^[a-z0-9_-]+$`)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := policy.Parse("fuzz.yaml", data)
		if (s == nil) == (err == nil) {
			t.Fatalf("Parse returned Set %v and error %v", s != nil, err)
		}
		var errs policy.Errors
		if err != nil && (!errors.As(err, &errs) || len(errs) == 0) {
			t.Fatalf("error %T %v, want a non-empty policy.Errors", err, err)
		}
		if s == nil {
			return
		}
		names := s.RuleNames()
		if names[len(names)-1] != policy.DefaultRule {
			t.Fatalf("RuleNames %q do not end with %q", names, policy.DefaultRule)
		}
		for i, n := range names[:len(names)-1] {
			if !nameRE.MatchString(n) || n == policy.DefaultRule || slices.Contains(names[:i], n) {
				t.Fatalf("bad rule name %q in %q", n, names)
			}
		}
		full := mkTrace(sp("root").root().kind(2).attr("http.route", "/a").svc("x"), sp("c").err().event("exception").attr("n", 5))
		for i, tr := range []*policy.Trace{
			{},
			{ID: [16]byte{15: 1}, ErrorCount: 1, EndUnixNano: 1e9},
			{ID: [16]byte{9: 0xff, 15: 0xff}, StartUnixNano: 5, EndUnixNano: 1 << 62},
			full,
			mkTrace(),
		} {
			at := time.Unix(0, int64(i)*int64(time.Minute))
			d := s.Evaluate(tr, at)
			if !slices.Contains(names, d.Rule) {
				t.Fatalf("Evaluate decided by %q, not in %q", d.Rule, names)
			}
			if !(d.Probability >= 0 && d.Probability <= 1) || d.Threshold > policy.MaxThreshold {
				t.Fatalf("Evaluate probability %v, threshold %#x", d.Probability, uint64(d.Threshold))
			}
			if e := s.Explain(tr, at); e.Decision.Rule != d.Rule {
				t.Fatalf("Explain decided by %q, Evaluate by %q", e.Decision.Rule, d.Rule)
			}
		}
	})
}
