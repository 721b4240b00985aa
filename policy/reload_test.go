package policy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const reloadBase = `
rules:
  - name: adapt
    type: adaptive
    key: [root.resource.service.name]
    target: 100
    interval: 10s
    when: {root.kind: server}
  - name: limit
    type: rate_limit
    traces_per_second: 5
`

// TestAdoptState: a reloaded Set carries the learned rates and buckets of
// rules whose name, key and target are unchanged, and only of those.
func TestAdoptState(t *testing.T) {
	train := func(t *testing.T) (*simulation, time.Time) {
		old := mustParse(t, reloadBase)
		old.SetShare(0.5)
		sim := newSimulation(old, 10*time.Second)
		sim.run(30*time.Second, stream{"svc", constant(4000)})
		// Drain the rate limit's bucket with non-server traces.
		at := sim.start.Add(sim.elapsed)
		client := mkTrace(sp("c").root().kind(3))
		for range 20 {
			old.Evaluate(client, at)
		}
		return sim, at
	}
	learned := func(t *testing.T, sim *simulation) float64 {
		keys := sim.set.AdaptiveKeys("adapt")
		if len(keys) != 2 || keys[0].Key != "svc" {
			t.Fatalf("keys %+v", keys)
		}
		return keys[0].Probability
	}
	for _, c := range []struct {
		name                    string
		edit                    func(string) string
		keepsRates, keepsBucket bool
	}{
		{"unchanged", func(s string) string { return s }, true, true},
		{"other keys changed", func(s string) string {
			return strings.Replace(strings.Replace(s, "interval: 10s", "interval: 20s\n    smoothing: 0.8", 1), "when: {root.kind: server}", "when: {root.kind: {in: [server, consumer]}}", 1)
		}, true, true},
		{"rule moved", func(s string) string {
			return strings.Replace(s, "rules:\n", "rules:\n  - {name: first, type: error}\n", 1)
		}, true, true},
		{"target changed", func(s string) string { return strings.Replace(s, "target: 100", "target: 200", 1) }, false, true},
		{"key changed", func(s string) string {
			return strings.Replace(s, "[root.resource.service.name]", "[root.resource.service.name, root.name]", 1)
		}, false, true},
		{"renamed", func(s string) string {
			return strings.Replace(strings.Replace(s, "name: adapt", "name: adapt2", 1), "name: limit", "name: limit2", 1)
		}, false, false},
		{"rate changed", func(s string) string { return strings.Replace(s, "traces_per_second: 5", "traces_per_second: 6", 1) }, true, false},
		{"unit changed", func(s string) string { return strings.Replace(s, "traces_per_second: 5", "spans_per_second: 5", 1) }, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sim, at := train(t)
			p := learned(t, sim)
			if !(p > 0.011 && p < 0.014) { // 100/s * share 0.5 of 4000/s
				t.Fatalf("learned probability %v, want about 0.0125", p)
			}
			next := mustParse(t, c.edit(reloadBase))
			next.AdoptState(sim.set)
			if next.Share() != 0.5 {
				t.Errorf("share %v not carried over", next.Share())
			}
			// The adaptive rule: the learned probability, or the initial 100%.
			var keys []string
			adaptName := "adapt"
			if c.name == "renamed" {
				adaptName = "adapt2"
			}
			for _, k := range next.AdaptiveKeys(adaptName) {
				keys = append(keys, fmt.Sprintf("%s=%.3f", k.Key, k.Probability))
			}
			server := mkTrace(sp("GET").root().kind(2).svc("svc"))
			server.ID = idWithRandomness(1 << 50) // kept at p=1, dropped at p=0.0125
			d := next.Evaluate(server, at)
			if c.keepsRates {
				if len(keys) != 2 || keys[0] != fmt.Sprintf("svc=%.3f", p) {
					t.Errorf("adaptive keys %v, want svc=%.3f carried over", keys, p)
				}
				if d.Keep || d.Probability != p {
					t.Errorf("first decision %+v, want the learned probability %v", d, p)
				}
			} else {
				if len(keys) != 1 {
					t.Errorf("adaptive keys %v carried over", keys)
				}
				if !d.Keep || d.Probability != 1 {
					t.Errorf("first decision %+v, want the initial probability 1", d)
				}
			}
			// The rate limit: drained, or a fresh full bucket.
			client := mkTrace(sp("c").root().kind(3))
			if got := next.Evaluate(client, at).Keep; got == c.keepsBucket {
				t.Errorf("rate limit kept %v after reload; bucket carried over: %v", got, !got)
			}
		})
	}
}

func TestAdoptStateNil(t *testing.T) {
	s := mustParse(t, reloadBase)
	s.AdoptState(nil)
	s.AdoptState(s)
}
