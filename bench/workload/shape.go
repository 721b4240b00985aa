package workload

import (
	"math"
	"math/rand/v2"
	"time"
)

// Parameters of the realism model (doc.go explains it).
const (
	// bodySigma is the log-normal sigma of ordinary trace durations:
	// with the 50ms default median, p10 ≈ 18ms, p90 ≈ 140ms, p99 ≈ 320ms.
	bodySigma = 0.8
	// tailSigma: tail traces last TailMin·e^(tailSigma·|Z|), so their median
	// is ≈ 1.3×TailMin and p99 ≈ 2.8×TailMin.
	tailSigma = 0.4
	// maxTailFactor caps tail traces at 20×TailMin (reached at 7.5 sigma:
	// never in practice, but it bounds every time offset).
	maxTailFactor = 20
	// minTraceDuration floors the body so nesting has room.
	minTraceDuration = 100 * time.Microsecond
	// capFactor caps ordinary traces at capFactor×MeanSpans spans; it
	// shifts the mean by less than 0.1%.
	capFactor = 10

	callShare     = 0.35 // new child: a call to another service (CLIENT + SERVER pair)
	dbShare       = 0.25 // new child: a database CLIENT span (leaf); the rest are INTERNAL
	rootFailShare = 0.03 // roots answering a 4xx
	notFoundShare = 0.02 // calls answered 404
)

// Span record flags.
const (
	flagError        = 1 << iota // status ERROR
	flagRemoteParent             // the parent is in another service (a SERVER span called by a CLIENT span)
)

// spanRec is a span between generation and encoding: 32 bytes, everything
// the encoder cannot derive from the catalog and the trace.
type spanRec struct {
	start  int64  // offset from the run's start, ns
	end    int64  // offset from the run's start, ns; the span is emitted when it ends
	trace  int32  // manifest index
	idx    uint16 // span index: SpanID(trace, idx)
	parent uint16 // parent's span index; unused for the root (idx 0)
	op     uint16 // catalog op
	svc    uint16 // service recording the span
	code   uint8  // index into statusCodes, if the op carries one
	flags  uint8
}

// shaper draws trace shapes. Its slices are scratch for the current trace.
type shaper struct {
	cfg *Config
	cat *catalog
	rng *rand.Rand

	logQ     float64 // log of the geometric parameter q of extra spans; 0 when MeanSpans == 2
	extraCap int     // most extra spans of an ordinary trace
	mu       float64 // location of the body's log-normal, ln ns
	pBelow   float64 // its probability below TailMin

	recs     []spanRec // the trace: times relative to its start
	depth    []uint8   // level of each span, root = 1
	eligible []uint16  // spans that may take children
}

// shape summarises the trace the shaper put in recs.
type shape struct {
	duration int64 // root duration, ns
	err      bool
	user     int32
	rootSvc  int
}

func newShaper(cfg *Config, cat *catalog, rng *rand.Rand) *shaper {
	g := &shaper{cfg: cfg, cat: cat, rng: rng, extraCap: capFactor*cfg.MeanSpans - 2}
	g.mu, g.pBelow = bodyLocation(cfg.MedianDuration, cfg.TailMin)
	if mu := float64(cfg.MeanSpans - 2); mu > 0 {
		g.logQ = math.Log(mu / (mu + 1))
	}
	return g
}

// meanSpans is the exact mean span count per trace, large ones included:
// the rate of traces is spansPerSecond divided by it.
func (c *Config) meanSpans() float64 {
	return (1-c.LargeShare)*c.meanOrdinarySpans() + c.LargeShare*float64(c.LargeMin+c.LargeMax)/2
}

// meanOrdinarySpans is 2 + E[min(X, cap)] for X geometric with mean
// MeanSpans-2: Σ_{k=1..cap} q^k.
func (c *Config) meanOrdinarySpans() float64 {
	mu := float64(c.MeanSpans - 2)
	if mu == 0 {
		return 2
	}
	q := mu / (mu + 1)
	n := float64(capFactor*c.MeanSpans - 2)
	return 2 + q*(1-math.Pow(q, n))/(1-q)
}

// spanCount draws the size of a trace.
func (g *shaper) spanCount() int {
	c := g.cfg
	if g.rng.Float64() < c.LargeShare {
		return c.LargeMin + g.rng.IntN(c.LargeMax-c.LargeMin+1)
	}
	if g.logQ == 0 {
		return 2
	}
	// Inversion: X = floor(ln U / ln q), U in (0, 1].
	x := math.Floor(math.Log(1-g.rng.Float64()) / g.logQ)
	return 2 + int(min(x, float64(g.extraCap)))
}

// duration draws a trace (root span) duration in ns.
func (g *shaper) duration() int64 {
	c := g.cfg
	if g.rng.Float64() < c.TailShare {
		f := math.Exp(tailSigma * math.Abs(g.rng.NormFloat64()))
		return int64(float64(c.TailMin) * min(f, maxTailFactor))
	}
	// The body is log-normal conditioned on staying below TailMin (so that
	// TailShare is exactly the share of traces of at least TailMin), drawn
	// by inversion: z = Φ⁻¹(u·Φ(zTail)).
	z := -math.Sqrt2 * math.Erfcinv(2*g.rng.Float64()*g.pBelow)
	d := int64(math.Exp(g.mu + bodySigma*z))
	return min(max(d, int64(minTraceDuration)), int64(c.TailMin)-1)
}

// bodyLocation returns the location mu of the body's log-normal, chosen so
// that the body's median, after conditioning on durations below tailMin, is
// median; and the probability pBelow of that condition. For tailMin far
// above the median (the defaults: 40×) mu is ln(median). The solution is
// exact for tailMin ≥ 1.1×median; closer, the median comes out a little low.
func bodyLocation(median, tailMin time.Duration) (mu, pBelow float64) {
	lm, lt := math.Log(float64(median)), math.Log(float64(tailMin))
	below := func(mu float64) float64 { return phi((lt - mu) / bodySigma) }
	f := func(mu float64) float64 { return phi((lm-mu)/bodySigma) - below(mu)/2 } // decreasing in mu
	lo, hi := lm, lt+8*bodySigma
	if f(hi) > 0 {
		return hi, below(hi)
	}
	for range 100 {
		mid := (lo + hi) / 2
		if f(mid) > 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, below(lo)
}

// phi is the standard normal distribution function.
func phi(x float64) float64 { return math.Erfc(-x/math.Sqrt2) / 2 }

// next draws a trace into g.recs (times relative to the trace's start,
// trace index unset) and returns its summary.
func (g *shaper) next() shape {
	c, cat, rng := g.cfg, g.cat, g.rng
	n := g.spanCount()
	sh := shape{duration: g.duration(), rootSvc: rng.IntN(cat.entries)}
	u := rng.Float64()
	sh.user = int32(float64(numUsers) * u * u) // a few heavy users, a long tail of light ones

	g.recs, g.depth, g.eligible = g.recs[:0], g.depth[:0], g.eligible[:0]
	rop := cat.routes[sh.rootSvc][pickRoute(rng.Float64())]
	code := cat.ops[rop].success
	if rng.Float64() < rootFailShare {
		code = clientErrorCodes[rng.IntN(len(clientErrorCodes))]
	}
	g.add(spanRec{end: sh.duration, op: rop, svc: uint16(sh.rootSvc), code: code}, 1)

	for len(g.recs) < n {
		p := g.eligible[rng.IntN(len(g.eligible))]
		parent := g.recs[p]
		d := int(g.depth[p])
		u := rng.Float64()
		switch {
		case u < callShare && n-len(g.recs) >= 2 && d+2 <= c.MaxDepth && parent.end-parent.start >= 5 &&
			g.canCall(int(parent.svc)):
			callee := g.callee(int(parent.svc))
			sop := cat.routes[callee][pickRoute(rng.Float64())]
			code := cat.ops[sop].success
			if rng.Float64() < notFoundShare {
				code = code404
			}
			cs, ce := g.inside(parent.start, parent.end, 0.2, 0.9, 3) // room for the server inside
			ci := g.add(spanRec{start: cs, end: ce, parent: p, op: cat.ops[sop].client, svc: parent.svc, code: code}, d+1)
			ss, se := g.inside(cs, ce, 0.85, 0.98, 1)
			g.add(spanRec{start: ss, end: se, parent: ci, op: sop, svc: uint16(callee), code: code, flags: flagRemoteParent}, d+2)
		case u < callShare+dbShare:
			s, e := g.inside(parent.start, parent.end, 0.02, 0.3, 1)
			g.add(spanRec{start: s, end: e, parent: p, op: cat.db[parent.svc], svc: parent.svc}, d+1)
		default:
			s, e := g.inside(parent.start, parent.end, 0.1, 0.8, 1)
			iop := cat.internal[parent.svc][rng.IntN(len(internalOps))]
			g.add(spanRec{start: s, end: e, parent: p, op: iop, svc: parent.svc}, d+1)
		}
	}

	if rng.Float64() < c.ErrorShare {
		g.fail()
		sh.err = true
	}
	return sh
}

// add appends a span at level depth and makes it eligible as a parent if
// it may have children.
func (g *shaper) add(r spanRec, depth int) uint16 {
	i := uint16(len(g.recs))
	r.idx = i
	g.recs = append(g.recs, r)
	g.depth = append(g.depth, uint8(depth))
	switch g.cat.ops[r.op].class {
	case classServer, classInternal:
		if depth < g.cfg.MaxDepth && r.end-r.start >= 3 {
			g.eligible = append(g.eligible, i)
		}
	}
	return i
}

// inside draws an interval strictly inside (ps, pe), of a length of about
// a share in [lo, hi) of the parent's and at least minLen; pe-ps must be at
// least minLen+2.
func (g *shaper) inside(ps, pe int64, lo, hi float64, minLen int64) (int64, int64) {
	l := pe - ps
	cl := int64(float64(l) * (lo + (hi-lo)*g.rng.Float64()))
	cl = min(max(cl, minLen), l-2)
	cs := ps + 1 + g.rng.Int64N(l-1-cl) // slack l-2-cl, inclusive
	return cs, cs + cl
}

// Services call services of higher index that are not entry services: the
// call graph is acyclic, as in a layered architecture.
func (g *shaper) canCall(svc int) bool { return max(svc+1, g.cat.entries) < g.cfg.Services }

func (g *shaper) callee(svc int) int {
	lo := max(svc+1, g.cat.entries)
	return lo + g.rng.IntN(g.cfg.Services-lo)
}

// fail gives one span of the trace status ERROR: never the root, never the
// client side of a call (the failing server side carries the error; the
// client sees its 500).
func (g *shaper) fail() {
	for {
		i := 1 + g.rng.IntN(len(g.recs)-1)
		r := &g.recs[i]
		o := &g.cat.ops[r.op]
		if o.class == classClient {
			continue // every client span has a server child, so the loop ends
		}
		r.flags |= flagError
		if o.httpCode {
			r.code = code500
			if r.flags&flagRemoteParent != 0 {
				g.recs[r.parent].code = code500
			}
		}
		return
	}
}
