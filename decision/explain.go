package decision

import (
	"encoding/hex"
	"slices"
	"sync"
	"time"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// Explanation says what the engine knows of one trace, for the explain API
// (GET /api/v1/traces/{id}).
type Explanation struct {
	TraceID string `json:"trace_id"`
	// Status is "pending" (buffered, not decided yet), "kept", "dropped",
	// or "unknown" (never seen, or forgotten: older than the recent
	// decisions and the decision caches).
	Status string `json:"status"`
	Node   string `json:"node,omitempty"` // the node that answered (set by the cluster)
	// For a decision still in the recent ring: the deciding rule, the keep
	// probability it applied, when, and whether stress relief decided it
	// early. A decision known only from the caches has no details.
	Rule        string    `json:"rule,omitempty"`
	Probability *float64  `json:"probability,omitempty"`
	DecidedAt   time.Time `json:"decided_at,omitzero"`
	Early       bool      `json:"decided_early,omitempty"`
	// The trace as it was when decided (or is now, if pending).
	FirstSeen   time.Time `json:"first_seen,omitzero"`
	Spans       int32     `json:"spans,omitempty"`
	ErrorSpans  int32     `json:"error_spans,omitempty"`
	DurationSec float64   `json:"duration_seconds,omitempty"`
	HasRoot     bool      `json:"has_root,omitempty"`
	Services    []string  `json:"services,omitempty"` // service.name of the spans' resources
}

// recentDecision is one entry of the ring: what Explain reports.
type recentDecision struct {
	id          [16]byte
	kept, early bool
	rule        string
	probability float64
	decidedAt   int64
	summary     buffer.Summary
	groups      []*buffer.Group // interned, immutable: services are read when asked
}

// recent is a bounded ring of the latest decisions with an index by trace
// ID. The decision loop adds a tick's decisions under one lock.
type recent struct {
	mu      sync.Mutex
	entries []recentDecision
	next    int
	byID    map[[16]byte]int32
}

func newRecent(size int) *recent {
	return &recent{entries: make([]recentDecision, 0, size), byID: make(map[[16]byte]int32, size)}
}

// add records d, replacing the oldest entry once the ring is full (mu held).
func (r *recent) add(d recentDecision) {
	if cap(r.entries) == 0 {
		return
	}
	if len(r.entries) < cap(r.entries) {
		r.byID[d.id] = int32(len(r.entries))
		r.entries = append(r.entries, d)
		return
	}
	old := &r.entries[r.next]
	if i, ok := r.byID[old.id]; ok && int(i) == r.next {
		delete(r.byID, old.id)
	}
	*old = d
	r.byID[d.id] = int32(r.next)
	r.next = (r.next + 1) % len(r.entries)
}

func (r *recent) get(id [16]byte) (recentDecision, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.byID[id]
	if !ok {
		return recentDecision{}, false
	}
	return r.entries[i], true
}

// Explain says what this engine knows of trace id: pending in the buffer,
// a recent decision with its details, or a decision still in the caches.
// It does not look at other nodes (the cluster does).
func (e *Engine) Explain(id [16]byte) Explanation {
	x := Explanation{TraceID: hex.EncodeToString(id[:]), Status: "unknown"}
	if s, groups, ok := e.buf.Peek(id); ok {
		x.Status = "pending"
		x.describe(&s, groups)
		return x
	}
	if d, ok := e.recent.get(id); ok {
		x.Status, x.Rule, x.Early = "dropped", d.rule, d.early
		if d.kept {
			x.Status = "kept"
		}
		p := d.probability
		x.Probability, x.DecidedAt = &p, time.Unix(0, d.decidedAt).UTC()
		x.describe(&d.summary, d.groups)
		return x
	}
	if _, ok := e.kept.get(id); ok {
		x.Status = "kept"
	} else if e.dropped.contains(id) {
		x.Status = "dropped"
	}
	return x
}

func (x *Explanation) describe(s *buffer.Summary, groups []*buffer.Group) {
	for _, g := range groups {
		v, _ := otlpwire.ResourceAttr(g.Key(), "service.name")
		if name := string(v.Str()); name != "" && !slices.Contains(x.Services, name) {
			x.Services = append(x.Services, name)
		}
	}
	slices.Sort(x.Services)
	x.FirstSeen = time.Unix(0, s.FirstSeen).UTC()
	x.Spans, x.ErrorSpans, x.HasRoot = s.SpanCount, s.ErrorCount, s.HasRoot()
	if s.MinStart != 0 && s.MaxEnd >= s.MinStart {
		x.DurationSec = float64(s.MaxEnd-s.MinStart) / 1e9
	}
}
