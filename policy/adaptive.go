package policy

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"
)

// Adaptive sampling: a target of kept traces per second, spread over keys.
//
// Every interval (and earlier when the kept traces overrun the target, see
// below) the rule counts each key's traces c in the window just ended
// (elapsed seconds) and updates an exponentially weighted moving average
// (EWMA) of its rate:
//
//	w    = 1 - (1 - smoothing)^(elapsed / interval)   (smoothing for a full interval)
//	ewma = ewma + w * (c/elapsed - ewma)
//
// Smoothing is there to damp chance: if the count differs from the
// expected λ = ewma*elapsed by more than chance explains (3 standard
// deviations of a Poisson count, 3√λ), the traffic really changed and c/elapsed
// replaces the average at once, as it does at a key's first estimate. So a
// traffic step is followed within one window, and the small counts of
// small keys are smoothed.
//
// From the averages r_k it computes one level L, by max-min fairness
// ("water filling"): with a total target T, L solves sum_k min(r_k, L) = T
// (no solution: every key is below its fair share, L is infinite); with a
// per-key target K, L is at most K. Key k is then kept with probability
// p_k = min(1, L / r_k): keys rarer than L are kept whole, every common key
// gets about L kept traces per second, and the total is T.
//
// Keys first seen after an estimate are kept whole (p = 1: rare until
// measured); before the first estimate every key has the initial
// probability. A window's kept traces are counted: past twice the total
// target of a full interval (the budget is overrunning), the next estimate
// is brought forward, but not before a twentieth of the interval has passed;
// as such a window may mix traffic from before and after a step, the window
// after it lasts a quarter interval.
//
// The keep decision itself is deterministic: the key's threshold,
// ThresholdFor(p_k), against the trace ID's randomness. Two evaluators that
// computed the same p_k decide every trace alike.
//
// Targets are cluster-wide: an evaluator applies its share (Set.SetShare) to
// both T and K.

const (
	defaultAdaptiveInterval = 30 * time.Second
	defaultMaxKeys          = 1000
	defaultSmoothing        = 0.5
	// overrunFactor: a window whose kept traces exceed the total target
	// this many intervals' worth is cut short.
	overrunFactor = 2
	// changeSigmas: a count further than this many standard deviations
	// from its expectation is a change, not chance.
	changeSigmas = 3
	// maxKeyFields and maxKeyText bound a key's encoding to keyBufLen bytes:
	// string values are cut at maxKeyText bytes.
	maxKeyFields = 4
	maxKeyText   = 120
	keyBufLen    = maxKeyFields * (2 + maxKeyText)
	// evictAfter: a key is forgotten when its average falls below one trace
	// per this many intervals, freeing its place under max_keys.
	evictAfter = 100
)

// OverflowKey is the key of an adaptive rule's traffic whose own key found
// no place under the rule's max_keys.
const OverflowKey = "(overflow)"

// overflowRaw is the overflow key's encoding: no real key starts with 0xff.
const overflowRaw = "\xff"

// adaptive is the configuration of an adaptive rule.
type adaptive struct {
	keyFields []field
	keyPaths  string  // the key field paths, joined: part of the rule's identity
	target    float64 // kept traces/s over all keys; 0: none
	perKey    float64 // kept traces/s of any one key; 0: none
	interval  time.Duration
	initial   float64 // keep probability before the first estimate
	maxKeys   int
	smoothing float64
	state     *adaptiveState
}

// adaptiveState is what an adaptive rule learns from traffic. Hot path:
// one read lock to find the key, atomics for the rest; the write lock is
// taken for a new key and for the estimate, once an interval.
type adaptiveState struct {
	next      atomic.Int64  // unix ns from which an evaluation estimates; 0: not started
	earliest  atomic.Int64  // an overrun brings next forward to this, no earlier
	kept      atomic.Int64  // traces kept in the window
	keptLimit atomic.Int64  // kept count of an overrun
	newKeyTh  atomic.Uint64 // Threshold of keys first seen in this window

	mu          sync.RWMutex
	keys        map[string]*adaptiveKey // guarded by mu; at most maxKeys
	overflow    *adaptiveKey
	started     bool  // guarded by mu
	estimated   bool  // guarded by mu: levels come from measured rates
	windowStart int64 // guarded by mu
	sorted      []*adaptiveKey
}

// adaptiveKey is one key's state.
type adaptiveKey struct {
	count    atomic.Int64  // traces in the window
	th       atomic.Uint64 // Threshold applied
	raw      string        // the encoded key
	label    string        // the key for people: values joined by "|"
	ewma     float64       // traces/s; guarded by adaptiveState.mu
	measured bool          // guarded by adaptiveState.mu
}

func newAdaptiveState(initial float64) *adaptiveState {
	st := &adaptiveState{keys: make(map[string]*adaptiveKey)}
	th := uint64(ThresholdFor(initial))
	st.overflow = &adaptiveKey{raw: overflowRaw, label: OverflowKey}
	st.overflow.th.Store(th)
	st.newKeyTh.Store(th)
	st.keptLimit.Store(math.MaxInt64)
	return st
}

// decide returns the threshold for trace t and whether it keeps t, counting
// t in its key's traffic. now is unix nanoseconds.
func (a *adaptive) decide(t *Trace, now int64, share float64) (Threshold, bool) {
	st := a.state
	if now >= st.next.Load() {
		a.estimate(now, share)
	}
	var buf [keyBufLen]byte
	k := a.appendKey(buf[:0], t)
	st.mu.RLock()
	ks := st.keys[string(k)]
	full := len(st.keys) >= a.maxKeys
	st.mu.RUnlock()
	if ks == nil {
		if full {
			ks = st.overflow
		} else {
			ks = a.insert(k)
		}
	}
	ks.count.Add(1)
	th := Threshold(ks.th.Load())
	keep := th.Keep(t.ID)
	if keep && st.kept.Add(1) >= st.keptLimit.Load() {
		st.bringForward()
	}
	return th, keep
}

// peek is decide without counting or estimating, for Explain.
func (a *adaptive) peek(t *Trace) (th Threshold, label string, rate float64) {
	st := a.state
	var buf [keyBufLen]byte
	k := a.appendKey(buf[:0], t)
	st.mu.RLock()
	defer st.mu.RUnlock()
	ks := st.keys[string(k)]
	switch {
	case ks == nil && len(st.keys) >= a.maxKeys:
		ks = st.overflow
	case ks == nil:
		return Threshold(st.newKeyTh.Load()), a.keyLabel(k), 0
	}
	return Threshold(ks.th.Load()), ks.label, ks.ewma
}

// insert adds key k, or returns the overflow key if there is no room.
func (a *adaptive) insert(k []byte) *adaptiveKey {
	st := a.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if ks := st.keys[string(k)]; ks != nil {
		return ks
	}
	if len(st.keys) >= a.maxKeys {
		return st.overflow
	}
	ks := &adaptiveKey{raw: string(k), label: a.keyLabel(k)}
	ks.th.Store(st.newKeyTh.Load())
	st.keys[ks.raw] = ks
	return ks
}

// bringForward moves the next estimate to the earliest allowed time.
func (st *adaptiveState) bringForward() {
	e := st.earliest.Load()
	for {
		n := st.next.Load()
		if n <= e || st.next.CompareAndSwap(n, e) {
			return
		}
	}
}

// estimate ends the window at now: measures, levels, starts a new window.
func (a *adaptive) estimate(now int64, share float64) {
	st := a.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if now < st.next.Load() { // another evaluation did it
		return
	}
	if !st.started {
		st.started = true
		a.startWindow(now, share)
		return
	}
	early := now < st.windowStart+int64(a.interval)
	elapsed := float64(max(now-st.windowStart, 1)) / 1e9
	w := 1 - math.Pow(1-a.smoothing, elapsed/a.interval.Seconds())
	update := func(k *adaptiveKey) int64 {
		c := k.count.Swap(0)
		rate := float64(c) / elapsed
		expect := k.ewma * elapsed
		switch {
		case !k.measured || math.Abs(float64(c)-expect) > changeSigmas*math.Sqrt(expect):
			k.ewma, k.measured = rate, true
		default:
			k.ewma += w * (rate - k.ewma)
		}
		return c
	}
	evictBelow := 1 / (evictAfter * a.interval.Seconds())
	for raw, k := range st.keys {
		if c := update(k); c == 0 && k.ewma < evictBelow {
			delete(st.keys, raw)
		}
	}
	update(st.overflow)
	a.level(share)
	st.estimated = true
	st.newKeyTh.Store(0) // rare until measured
	a.startWindow(now, share)
	if early {
		st.next.Store(now + int64(a.interval/4))
	}
}

// level sets every key's threshold from the averages and the targets.
// Called with the write lock held, after the first estimate.
func (a *adaptive) level(share float64) {
	st := a.state
	st.sorted = st.sorted[:0]
	for _, k := range st.keys {
		st.sorted = append(st.sorted, k)
	}
	st.sorted = append(st.sorted, st.overflow)
	// A total order, so every evaluator sums in the same order and computes
	// the same level from the same traffic.
	slices.SortFunc(st.sorted, func(x, y *adaptiveKey) int {
		return cmp.Or(cmp.Compare(x.ewma, y.ewma), strings.Compare(x.raw, y.raw))
	})
	L := math.Inf(1)
	if a.target > 0 {
		remaining := a.target * share
		for i, k := range st.sorted {
			fair := remaining / float64(len(st.sorted)-i)
			if k.ewma > fair {
				L = fair
				break
			}
			remaining -= k.ewma
		}
	}
	if a.perKey > 0 {
		L = min(L, a.perKey*share)
	}
	for _, k := range st.sorted {
		p := 1.0
		if k.ewma > L {
			p = L / k.ewma
		}
		k.th.Store(uint64(ThresholdFor(p)))
	}
	clear(st.sorted) // drop pointers to evicted keys
}

// startWindow starts a window at now. Called with the write lock held.
func (a *adaptive) startWindow(now int64, share float64) {
	st := a.state
	st.windowStart = now
	st.kept.Store(0)
	a.setKeptLimit(share)
	st.earliest.Store(now + int64(a.interval/20))
	st.next.Store(now + int64(a.interval))
}

func (a *adaptive) setKeptLimit(share float64) {
	limit := int64(math.MaxInt64)
	if a.target > 0 {
		limit = max(int64(math.Ceil(overrunFactor*a.target*share*a.interval.Seconds())), 1)
	}
	a.state.keptLimit.Store(limit)
}

// reshare applies a new share at once, from the averages already measured.
func (a *adaptive) reshare(share float64) {
	st := a.state
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.estimated { // the initial probability holds until the first estimate
		return
	}
	a.level(share)
	a.setKeptLimit(share)
}

// sameAs reports whether a and old have the same key fields and targets,
// so that old's state means the same for a.
func (a *adaptive) sameAs(old *adaptive) bool {
	return a.keyPaths == old.keyPaths && a.target == old.target && a.perKey == old.perKey
}

// adopt copies old's state into a's.
func (a *adaptive) adopt(old *adaptive) {
	o, n := old.state, a.state
	o.mu.RLock()
	defer o.mu.RUnlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	cp := func(k *adaptiveKey) *adaptiveKey {
		c := &adaptiveKey{raw: k.raw, label: k.label, ewma: k.ewma, measured: k.measured}
		c.count.Store(k.count.Load())
		c.th.Store(k.th.Load())
		return c
	}
	clear(n.keys)
	for raw, k := range o.keys {
		n.keys[raw] = cp(k)
	}
	if extra := len(n.keys) - a.maxKeys; extra > 0 { // max_keys shrank: forget the rarest
		keys := make([]*adaptiveKey, 0, len(n.keys))
		for _, k := range n.keys {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(x, y *adaptiveKey) int {
			return cmp.Or(cmp.Compare(x.ewma, y.ewma), strings.Compare(x.raw, y.raw))
		})
		for _, k := range keys[:extra] {
			delete(n.keys, k.raw)
		}
	}
	n.overflow = cp(o.overflow)
	n.started, n.estimated, n.windowStart = o.started, o.estimated, o.windowStart
	n.kept.Store(o.kept.Load())
	n.keptLimit.Store(o.keptLimit.Load())
	n.newKeyTh.Store(o.newKeyTh.Load())
	if o.started {
		n.earliest.Store(o.windowStart + int64(a.interval/20))
		n.next.Store(min(o.next.Load(), o.windowStart+int64(a.interval)))
	}
}

// appendKey appends trace t's key to dst: for each key field a tag byte
// and the value, so that different values never encode alike.
func (a *adaptive) appendKey(dst []byte, t *Trace) []byte {
	for i := range a.keyFields {
		v, present, known := a.keyFields[i].traceValue(t)
		switch {
		case !known:
			dst = append(dst, 'u')
		case !present:
			dst = append(dst, 'a')
		case v.Kind == ValueString:
			s := v.Str
			if len(s) > maxKeyText {
				s = s[:maxKeyText]
			}
			dst = append(dst, 's', byte(len(s)))
			dst = append(dst, s...)
		case v.Kind == ValueInt:
			dst = binary.BigEndian.AppendUint64(append(dst, 'i'), uint64(v.Int))
		case v.Kind == ValueDouble:
			dst = binary.BigEndian.AppendUint64(append(dst, 'd'), math.Float64bits(v.Double))
		case v.Kind == ValueBool && v.Bool:
			dst = append(dst, 't')
		case v.Kind == ValueBool:
			dst = append(dst, 'f')
		default:
			dst = append(dst, 'o')
		}
	}
	return dst
}

// keyLabel renders an encoded key for people: the values joined by "|".
func (a *adaptive) keyLabel(k []byte) string {
	var b strings.Builder
	for i := range a.keyFields {
		if i > 0 {
			b.WriteByte('|')
		}
		if len(k) == 0 {
			break
		}
		tag := k[0]
		k = k[1:]
		switch tag {
		case 'u':
			b.WriteString("(unknown)")
		case 'a':
			b.WriteString("(absent)")
		case 's':
			n := int(k[0])
			b.Write(k[1 : 1+n])
			k = k[1+n:]
		case 'i':
			b.WriteString(formatLit(&lit{kind: litInt, i: int64(binary.BigEndian.Uint64(k))}, a.keyFields[i].typ))
			k = k[8:]
		case 'd':
			b.WriteString(strconv.FormatFloat(math.Float64frombits(binary.BigEndian.Uint64(k)), 'g', -1, 64))
			k = k[8:]
		case 't':
			b.WriteString("true")
		case 'f':
			b.WriteString("false")
		default:
			b.WriteString("(other)")
		}
	}
	return b.String()
}

// KeyRate is the state of one key of an adaptive rule.
type KeyRate struct {
	// Key is the key's values joined by "|" ("(absent)" for a missing
	// attribute), or [OverflowKey].
	Key string
	// Rate is the key's estimated traffic in traces per second (its moving
	// average); 0 before its first estimate.
	Rate float64
	// Probability is the keep probability applied to the key now.
	Probability float64
}

// AdaptiveKeys returns the keys of the adaptive rule named rule, sorted by
// key with the overflow key last; nil if there is no such rule. For
// debugging and tests; it takes the rule's lock.
func (s *Set) AdaptiveKeys(rule string) []KeyRate {
	for i := range s.rules {
		r := &s.rules[i]
		if r.name != rule || r.adapt == nil {
			continue
		}
		st := r.adapt.state
		st.mu.RLock()
		defer st.mu.RUnlock()
		out := make([]KeyRate, 0, len(st.keys)+1)
		for _, k := range st.keys {
			out = append(out, KeyRate{Key: k.label, Rate: k.ewma, Probability: Threshold(k.th.Load()).Probability()})
		}
		slices.SortFunc(out, func(x, y KeyRate) int { return strings.Compare(x.Key, y.Key) })
		o := st.overflow
		return append(out, KeyRate{Key: o.label, Rate: o.ewma, Probability: Threshold(o.th.Load()).Probability()})
	}
	return nil
}

// compileAdaptive compiles an adaptive rule.
func compileAdaptive(p *parser, rn *ruleNode, r *rule) {
	a := &adaptive{interval: defaultAdaptiveInterval, initial: 1, maxKeys: defaultMaxKeys, smoothing: defaultSmoothing}
	r.act, r.adapt = actAdaptive, a
	ctx := func(k string) string { return rn.label + ": " + k }
	if v, ok := rn.fields["key"]; ok {
		items := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			items = v.Content
		}
		if len(items) == 0 || len(items) > maxKeyFields {
			p.errorf(v, "%s: want 1 to %d fields, got %d", ctx("key"), maxKeyFields, len(items)).Hint = "e.g. key: [root.resource.service.name, root.attr.http.route]"
		} else {
			var paths []string
			for i, item := range items {
				item = resolve(item)
				ictx := fmt.Sprintf("%s[%d]", ctx("key"), i)
				if item.Kind != yaml.ScalarNode || isNull(item) {
					p.errorf(item, "%s: got %s", ictx, describe(item)).Hint = "want a field such as root.resource.service.name"
					continue
				}
				f, ok := p.parseField(item, scopeTrace, ictx, "")
				if !ok {
					continue
				}
				switch {
				case f.typ == typeDuration || f.typ == typeEvent:
					p.errorf(item, "%s: %s cannot be a key field", ictx, f.path).Hint = "keys group traces by discrete values: services, attributes, span name, kind or status"
				case slices.Contains(paths, f.path):
					p.errorf(item, "%s: %s twice", ictx, f.path).Hint = "list each field once"
				default:
					paths = append(paths, f.path)
					a.keyFields = append(a.keyFields, f)
				}
			}
			a.keyPaths = strings.Join(paths, "\x00")
		}
	}
	if v, ok := rn.fields["target"]; ok {
		a.target, _ = p.positive(ctx("target"), v, "kept traces per second over all keys, > 0")
	}
	if v, ok := rn.fields["target_per_key"]; ok {
		a.perKey, _ = p.positive(ctx("target_per_key"), v, "kept traces per second of any one key, > 0")
	}
	if rn.fields["target"] == nil && rn.fields["target_per_key"] == nil {
		p.missing(rn, "target", "type adaptive needs target: (kept traces/s in total), target_per_key: (per key), or both")
	}
	if v, ok := rn.fields["interval"]; ok {
		if d, ok := p.duration(ctx("interval"), v); ok {
			if d < time.Second || d > time.Hour {
				p.errorf(v, "%s: must be from 1s to 1h, got %s", ctx("interval"), v.Value).Hint = "how often rates are re-estimated; 30s by default"
			} else {
				a.interval = d
			}
		}
	}
	if v, ok := rn.fields["initial_percentage"]; ok {
		if pct, ok := p.percentage(ctx("initial_percentage"), v); ok {
			a.initial = pct / 100
		}
	}
	if v, ok := rn.fields["max_keys"]; ok {
		if n, ok := p.integer(ctx("max_keys"), v, 1, 100_000); ok {
			a.maxKeys = int(n)
		}
	}
	if v, ok := rn.fields["smoothing"]; ok {
		if f, ok := p.number(ctx("smoothing"), v, "a number in (0, 1]"); ok {
			if !(f > 0 && f <= 1) {
				p.errorf(v, "%s: must be in (0, 1], got %s", ctx("smoothing"), v.Value).Hint = "the weight of the newest interval in the moving average; 1 means no smoothing"
			} else {
				a.smoothing = f
			}
		}
	}
	a.state = newAdaptiveState(a.initial)
}
