package policy_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tailsift/tailsift/policy"
)

// stream is traffic of one adaptive key: perSec(t) traces per second at
// time t since the start.
type stream struct {
	service string
	perSec  func(t time.Duration) float64
}

func constant(r float64) func(time.Duration) float64 { return func(time.Duration) float64 { return r } }

// step is from traces/s until at, then to.
func step(from, to float64, at time.Duration) func(time.Duration) float64 {
	return func(t time.Duration) float64 {
		if t < at {
			return from
		}
		return to
	}
}

// simulation drives a Set with a simulated clock: traces of each stream at
// its rate, in 1ms ticks, with random trace IDs, counting per bucket the
// traces seen and kept, per service.
type simulation struct {
	set     *policy.Set
	rng     *rand.Rand
	start   time.Time     // of the simulation
	elapsed time.Duration // simulated so far
	bucket  time.Duration
	seen    map[string][]int
	kept    map[string][]int
	// decisions, if not nil, receives every decision in order.
	decisions *[]policy.Decision
}

func newSimulation(s *policy.Set, bucket time.Duration) *simulation {
	return &simulation{set: s, rng: rand.New(rand.NewPCG(7, 8)), start: now, bucket: bucket,
		seen: map[string][]int{}, kept: map[string][]int{}}
}

func (sim *simulation) run(d time.Duration, streams ...stream) {
	const tick = time.Millisecond
	traces := make([]*policy.Trace, len(streams))
	carry := make([]float64, len(streams))
	for i, s := range streams {
		traces[i] = mkTrace(sp("GET /").root().kind(2).svc(s.service))
	}
	for t := time.Duration(0); t < d; t += tick {
		at := sim.start.Add(sim.elapsed + t)
		b := int((sim.elapsed + t) / sim.bucket)
		for i, s := range streams {
			carry[i] += s.perSec(t) * tick.Seconds()
			for ; carry[i] >= 1; carry[i]-- {
				tr := traces[i]
				tr.ID = randomID(sim.rng)
				d := sim.set.Evaluate(tr, at)
				if sim.decisions != nil {
					*sim.decisions = append(*sim.decisions, d)
				}
				for len(sim.seen[s.service]) <= b {
					sim.seen[s.service] = append(sim.seen[s.service], 0)
					sim.kept[s.service] = append(sim.kept[s.service], 0)
				}
				sim.seen[s.service][b]++
				if d.Keep {
					sim.kept[s.service][b]++
				}
			}
		}
	}
	sim.elapsed += d
}

// keptPerSec returns the kept traces per second in each bucket, over the
// services given (all if none).
func (sim *simulation) keptPerSec(services ...string) []float64 {
	if len(services) == 0 {
		for s := range sim.kept {
			services = append(services, s)
		}
	}
	var out []float64
	for _, s := range services {
		for b, n := range sim.kept[s] {
			for len(out) <= b {
				out = append(out, 0)
			}
			out[b] += float64(n) / sim.bucket.Seconds()
		}
	}
	return out
}

const adaptiveRule = `
rules:
  - name: errors
    type: error
  - name: adapt
    type: adaptive
    key: root.resource.service.name
    target: %v
    interval: 10s
default: drop
`

// TestAdaptiveConverges: a step from 1,000 to 10,000 traces/s (and back)
// reaches the target within 10% in at most 3 intervals: in fact from the
// second interval that sees the new traffic on.
func TestAdaptiveConverges(t *testing.T) {
	const target, interval = 100.0, 10 * time.Second
	for _, c := range []struct {
		name     string
		from, to float64
		at       time.Duration // of the step, from the start
	}{
		{"step up at an interval boundary", 1000, 10_000, 50 * time.Second},
		{"step up mid-interval", 1000, 10_000, 53 * time.Second},
		{"step down", 10_000, 1000, 50 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := mustParse(t, fmt.Sprintf(adaptiveRule, target))
			sim := newSimulation(s, interval)
			sim.run(110*time.Second, stream{"svc", step(c.from, c.to, c.at)})
			kept := sim.keptPerSec()
			t.Logf("kept traces/s per %s: %.1f", interval, kept)
			stepBucket := int(c.at / interval)
			for b, k := range kept {
				// Before the step, from the second interval on (the first
				// starts at the initial 100%); after it, from the second
				// interval that sees the new traffic on.
				settled := b >= 1 && b < stepBucket || b >= stepBucket+1
				if settled && math.Abs(k-target) > 0.1*target {
					t.Errorf("interval %d: kept %.1f traces/s, want %v ± 10%%", b, k, target)
				}
			}
		})
	}
}

// TestAdaptiveOverrun: when traffic steps up, the kept traces overrun the
// budget and the rule re-estimates before the interval ends: the interval
// of the step keeps far fewer than the 10x it would otherwise.
func TestAdaptiveOverrun(t *testing.T) {
	s := mustParse(t, fmt.Sprintf(adaptiveRule, 100))
	sim := newSimulation(s, 10*time.Second)
	sim.run(60*time.Second, stream{"svc", step(1000, 10_000, 30*time.Second)})
	kept := sim.keptPerSec()
	// Without an early estimate: 1,000/s. With it, about 2 intervals'
	// budget (at 20% of the interval) plus the target for the rest.
	if k := kept[3]; k > 350 {
		t.Errorf("interval of the step kept %.0f traces/s; the overrun was not cut short", k)
	}
	if k := kept[4]; math.Abs(k-100) > 10 {
		t.Errorf("interval after the step kept %.0f traces/s, want 100 ± 10%%", k)
	}
	// The very first interval starts at 100%: cut short just the same.
	if k := kept[0]; k > 300 {
		t.Errorf("first interval kept %.0f traces/s at the initial 100%%", k)
	}
}

// TestAdaptiveRareKeys: rare keys are kept whole, common ones share the
// rest of the target equally (max-min fairness).
func TestAdaptiveRareKeys(t *testing.T) {
	s := mustParse(t, fmt.Sprintf(adaptiveRule, 100))
	sim := newSimulation(s, 10*time.Second)
	streams := []stream{
		{"big", constant(10_000)},
		{"mid", constant(2000)},
		{"small", constant(20)},
		{"rare", constant(0.5)},
	}
	sim.run(60*time.Second, streams...)
	for b := 1; b < 6; b++ {
		if sim.kept["small"][b] != sim.seen["small"][b] || sim.kept["rare"][b] != sim.seen["rare"][b] {
			t.Errorf("interval %d: small kept %d of %d, rare %d of %d: want all", b,
				sim.kept["small"][b], sim.seen["small"][b], sim.kept["rare"][b], sim.seen["rare"][b])
		}
		// The rest of the target, 100 - 20 - 0.5, is split equally between
		// big and mid: about 39.75/s each.
		for _, svc := range []string{"big", "mid"} {
			if k := float64(sim.kept[svc][b]) / 10; math.Abs(k-39.75) > 0.15*39.75 {
				t.Errorf("interval %d: %s kept %.1f traces/s, want about 39.75", b, svc, k)
			}
		}
		if total := sim.keptPerSec()[b]; math.Abs(total-100) > 10 {
			t.Errorf("interval %d: kept %.1f traces/s in total, want 100 ± 10%%", b, total)
		}
	}
	keys := s.AdaptiveKeys("adapt")
	p := map[string]float64{}
	for _, k := range keys {
		p[k.Key] = k.Probability
	}
	if p["rare"] != 1 || p["small"] != 1 || !(p["big"] < p["mid"] && p["mid"] < 1) {
		t.Errorf("probabilities %v: want rare and small 1, big < mid < 1", keys)
	}
}

// TestAdaptivePerKeyTarget: target_per_key caps every key.
func TestAdaptivePerKeyTarget(t *testing.T) {
	s := mustParse(t, `
rules:
  - name: adapt
    type: adaptive
    key: [root.resource.service.name]
    target_per_key: 5
    interval: 10s
`)
	sim := newSimulation(s, 10*time.Second)
	sim.run(50*time.Second, stream{"a", constant(1000)}, stream{"b", constant(100)}, stream{"c", constant(2)})
	for b := 2; b < 5; b++ {
		for svc, want := range map[string]float64{"a": 5, "b": 5, "c": 2} {
			if k := float64(sim.kept[svc][b]) / 10; math.Abs(k-want) > 0.25*want {
				t.Errorf("interval %d: %s kept %.1f traces/s, want %v", b, svc, k, want)
			}
		}
	}
}

// TestAdaptiveMaxKeys: past max_keys, new keys share the overflow key.
func TestAdaptiveMaxKeys(t *testing.T) {
	s := mustParse(t, `
rules:
  - name: adapt
    type: adaptive
    key: root.resource.service.name
    target: 10
    max_keys: 10
    interval: 1s
`)
	var streams []stream
	for i := range 1000 {
		streams = append(streams, stream{fmt.Sprintf("svc-%03d", i), constant(5)})
	}
	sim := newSimulation(s, time.Second)
	sim.run(3*time.Second, streams...)
	keys := s.AdaptiveKeys("adapt")
	if len(keys) != 11 {
		t.Fatalf("%d keys, want 10 and the overflow key: %v", len(keys), keys)
	}
	over := keys[10]
	if over.Key != policy.OverflowKey || !(over.Rate > 4000) {
		t.Errorf("overflow key %+v: want %q with the traffic of 990 services (about 4950/s)", over, policy.OverflowKey)
	}
	if total := sim.keptPerSec()[2]; math.Abs(total-10) > 3 {
		t.Errorf("kept %.1f traces/s, want about 10", total)
	}
	// A new key of an evaluation goes to overflow without allocating.
	tr := mkTrace(sp("r").root().svc("brand-new"))
	if n := testing.AllocsPerRun(100, func() { s.Evaluate(tr, sim.start.Add(sim.elapsed)) }); n != 0 {
		t.Errorf("overflow evaluation allocates %v times", n)
	}
}

// TestAdaptiveDeterministic: two Sets parsed from the same file, given the
// same traffic, decide every trace identically; and any two evaluators
// applying the same rate decide a trace alike.
func TestAdaptiveDeterministic(t *testing.T) {
	src := fmt.Sprintf(adaptiveRule, 50)
	var d1, d2 []policy.Decision
	for _, d := range []*[]policy.Decision{&d1, &d2} {
		s := mustParse(t, src)
		sim := newSimulation(s, 10*time.Second) // same seed: same trace IDs
		sim.decisions = d
		sim.run(40*time.Second, stream{"a", step(500, 3000, 15*time.Second)}, stream{"b", constant(40)}, stream{"c", constant(1)})
	}
	if len(d1) != len(d2) || len(d1) == 0 {
		t.Fatalf("%d and %d decisions", len(d1), len(d2))
	}
	kept := 0
	for i := range d1 {
		if d1[i] != d2[i] {
			t.Fatalf("decision %d: %+v vs %+v", i, d1[i], d2[i])
		}
		if d1[i].Keep {
			kept++
			if d1[i].Threshold != 0 && !d1[i].Threshold.Keep(idWithRandomness(1<<56-1)) {
				t.Fatalf("kept with threshold %#x", uint64(d1[i].Threshold))
			}
		}
	}
	if kept == 0 || kept == len(d1) {
		t.Errorf("kept %d of %d", kept, len(d1))
	}
	// The keep decision is the threshold's: the same rate decides alike.
	for _, d := range d1 {
		id := idWithRandomness(uint64(d.Threshold))
		if !d.Threshold.Keep(id) || d.Threshold > 0 && d.Threshold.Keep(idWithRandomness(uint64(d.Threshold)-1)) {
			t.Fatalf("threshold %#x does not decide by randomness", uint64(d.Threshold))
		}
	}
}

// TestAdaptiveShare: each of n nodes with share 1/n aims at target/n.
func TestAdaptiveShare(t *testing.T) {
	s := mustParse(t, fmt.Sprintf(adaptiveRule, 100))
	s.SetShare(0.25)
	sim := newSimulation(s, 10*time.Second)
	sim.run(30*time.Second, stream{"svc", constant(2000)})
	if k := sim.keptPerSec()[2]; math.Abs(k-25) > 2.5 {
		t.Errorf("share 0.25: kept %.1f traces/s, want 25", k)
	}
	s.SetShare(0.5) // re-levels at once
	sim.run(10*time.Second, stream{"svc", constant(2000)})
	if k := sim.keptPerSec()[3]; math.Abs(k-50) > 5 {
		t.Errorf("share 0.5: kept %.1f traces/s in the next 10s, want 50", k)
	}
}

func TestAdaptiveKeysUnknownRule(t *testing.T) {
	s := mustParse(t, fmt.Sprintf(adaptiveRule, 100))
	if s.AdaptiveKeys("errors") != nil || s.AdaptiveKeys("nope") != nil {
		t.Error("AdaptiveKeys of a rule that is not adaptive")
	}
}
