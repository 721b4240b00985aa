package policy_test

import (
	"testing"
	"time"

	"github.com/tailsift/tailsift/policy"
)

func TestRateLimit(t *testing.T) {
	for _, c := range []struct {
		name  string
		rule  string
		spans int
		// each evaluation happens every gap; want is how many of n are kept.
		gap     time.Duration
		n, want int
	}{
		{"burst defaults to the rate", "traces_per_second: 10", 1, 0, 100, 10},
		{"explicit burst", "traces_per_second: 10, burst: 25", 1, 0, 100, 25},
		{"refill", "traces_per_second: 10", 1, 10 * time.Millisecond, 1000, 10 + 99}, // 9.99s: burst + 10/s
		{"under the rate: all kept", "traces_per_second: 10", 1, 200 * time.Millisecond, 50, 50},
		{"spans: cost per span", "spans_per_second: 100", 10, 0, 100, 10},
		{"spans: debt, no starvation", "spans_per_second: 100", 500, time.Second, 10, 2}, // 1 then 5s of debt
		{"fractional rate", "traces_per_second: 0.5", 1, time.Second, 10, 1 + 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := mustParse(t, "rules:\n  - {name: rl, type: rate_limit, "+c.rule+"}\n")
			spans := make([]memSpan, c.spans)
			for i := range spans {
				spans[i] = sp("s")
			}
			tr := mkTrace(spans...)
			kept := 0
			for i := range c.n {
				d := s.Evaluate(tr, now.Add(time.Duration(i)*c.gap))
				if d.Rule != "rl" {
					t.Fatalf("decided by %q", d.Rule)
				}
				if d.Keep {
					kept++
					if d.Probability != 1 || d.Threshold != 0 {
						t.Fatalf("kept with %+v, want probability 1", d)
					}
				} else if d.Probability != 0 || d.Threshold != policy.MaxThreshold {
					t.Fatalf("dropped with %+v, want probability 0", d)
				}
			}
			if kept != c.want {
				t.Errorf("kept %d of %d, want %d", kept, c.n, c.want)
			}
		})
	}
}

func TestRateLimitShare(t *testing.T) {
	s := mustParse(t, "rules: [{name: rl, type: rate_limit, traces_per_second: 100}]\n")
	s.SetShare(0.1) // 10/s, burst 10
	tr := mkTrace(sp("a"))
	kept := 0
	for i := range 1000 {
		if s.Evaluate(tr, now.Add(time.Duration(i)*10*time.Millisecond)).Keep {
			kept++
		}
	}
	if kept != 10+99 { // burst, and 9.99s at 10/s
		t.Errorf("share 0.1 of 100/s over 9.99s: kept %d, want 109", kept)
	}
	s.SetShare(0)
	if s.Evaluate(tr, now.Add(time.Hour)).Keep {
		t.Error("share 0 kept a trace")
	}
}

// TestRateLimitWhen: a rate limit decides only what its when selects; the
// rest goes on to the next rules.
func TestRateLimitWhen(t *testing.T) {
	s := mustParse(t, `
rules:
  - name: health
    type: rate_limit
    when: {root.attr.http.route: /healthz}
    traces_per_second: 1
  - {name: rest, type: always}
`)
	health := mkTrace(sp("GET").root().attr("http.route", "/healthz"))
	other := mkTrace(sp("GET").root().attr("http.route", "/api"))
	got := []string{}
	for _, tr := range []*policy.Trace{health, health, other, health} {
		d := s.Evaluate(tr, now)
		got = append(got, d.Rule+map[bool]string{true: "+", false: "-"}[d.Keep])
	}
	if want := "[health+ health- rest+ health-]"; fmtList(got) != want {
		t.Errorf("decisions %s, want %s", fmtList(got), want)
	}
}

func fmtList(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}
