package decision

import (
	"bytes"
	"encoding/hex"
	"slices"
	"sync"
	"time"
	"unsafe"

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
	// TraceLimit: the trace reached max_trace_spans or max_trace_bytes
	// and was decided at once; later spans followed the decision.
	TraceLimit bool `json:"trace_limit_reached,omitempty"`
	// The trace as it was when decided (or is now, if pending).
	FirstSeen   time.Time `json:"first_seen,omitzero"`
	Spans       int32     `json:"spans,omitempty"`
	ErrorSpans  int32     `json:"error_spans,omitempty"`
	DurationSec float64   `json:"duration_seconds,omitempty"`
	HasRoot     bool      `json:"has_root,omitempty"`
	Services    []string  `json:"services,omitempty"` // service.name of the spans' resources
	// MoreServices: the trace has services not listed (an explanation
	// keeps the first few that fit in about 100 bytes).
	MoreServices bool `json:"more_services,omitempty"`
}

// recentDecision is one entry of the ring: what Explain reports. It holds
// no reference to the trace: a decided trace's memory is freed, and an
// entry's size is fixed, so the ring's memory is known up front.
type recentDecision struct {
	id                 [16]byte
	kept, early, limit bool
	services           serviceNames
	rule               string // the policy set's, shared
	probability        float64
	decidedAt          int64
	summary            buffer.Summary
}

// serviceNames holds the first distinct service.name values of a trace,
// NUL-terminated, as many as fit.
type serviceNames struct {
	b    [112]byte
	n    uint8
	more bool // some did not fit, or were not looked at
}

// maxServiceResources bounds the resources a decision looks through for
// service names: a trace sent under 100,000 resources costs no more.
const maxServiceResources = 64

// set fills s from the resources of groups.
func (s *serviceNames) set(groups []*buffer.Group) {
	*s = serviceNames{}
	used, looked := 0, 0
	var last *buffer.Resource
	for _, g := range groups {
		if g.Resource() == last {
			continue
		}
		last = g.Resource()
		if looked++; looked > maxServiceResources {
			s.more = true
			return
		}
		v, _ := otlpwire.ResourceAttr(last.Part(), "service.name")
		name := v.Str()
		if len(name) == 0 || s.has(name) {
			continue
		}
		if used+len(name)+1 > len(s.b) || bytes.IndexByte(name, 0) >= 0 {
			s.more = true
			continue
		}
		used += copy(s.b[used:], name)
		s.b[used] = 0
		used++
		s.n++
	}
}

func (s *serviceNames) has(name []byte) bool {
	for n := range s.all() {
		if bytes.Equal(n, name) {
			return true
		}
	}
	return false
}

func (s *serviceNames) all() func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		b := s.b[:]
		for range s.n {
			i := bytes.IndexByte(b, 0)
			if !yield(b[:i]) {
				return
			}
			b = b[i+1:]
		}
	}
}

// recentEntryBytes is the memory one ring entry takes: the entry and its
// index slot. The ring is allocated whole at start (Config.RecentDecisions
// entries, 28 MiB for the default 100,000) and never grows: a fixed part
// of the node's memory, reported by tailsift_decision_explain_ring_bytes.
const recentEntryBytes = int64(unsafe.Sizeof(recentDecision{})) + 48

// recent is a bounded ring of the latest decisions with an index by trace
// ID. The decision loop adds a tick's decisions under one lock.
type recent struct {
	size    int // cap(entries), immutable: read without mu
	mu      sync.Mutex
	entries []recentDecision
	next    int
	byID    map[[16]byte]int32
}

func newRecent(size int) *recent {
	return &recent{size: size, entries: make([]recentDecision, 0, size), byID: make(map[[16]byte]int32, size)}
}

// add records the decision of t, replacing the oldest entry once the ring
// is full (mu held).
func (r *recent) add(t *buffer.Trace, kept bool, rule string, probability float64, decidedAt int64) {
	if cap(r.entries) == 0 {
		return
	}
	i := len(r.entries)
	if i < cap(r.entries) {
		r.entries = r.entries[:i+1]
	} else {
		i = r.next
		if j, ok := r.byID[r.entries[i].id]; ok && int(j) == i {
			delete(r.byID, r.entries[i].id)
		}
		r.next = (r.next + 1) % len(r.entries)
	}
	d := &r.entries[i]
	d.id, d.kept, d.early, d.limit, d.rule = t.ID, kept, t.Relieved, t.Limited, rule
	d.probability, d.decidedAt, d.summary = probability, decidedAt, t.Summary
	d.services.set(t.Groups())
	r.byID[t.ID] = int32(i)
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
		var names serviceNames
		names.set(groups)
		x.describe(&s, &names)
		return x
	}
	if d, ok := e.recent.get(id); ok {
		x.Status, x.Rule, x.Early, x.TraceLimit = "dropped", d.rule, d.early, d.limit
		if d.kept {
			x.Status = "kept"
		}
		p := d.probability
		x.Probability, x.DecidedAt = &p, time.Unix(0, d.decidedAt).UTC()
		x.describe(&d.summary, &d.services)
		return x
	}
	if _, ok := e.kept.get(id); ok {
		x.Status = "kept"
	} else if e.dropped.contains(id) {
		x.Status = "dropped"
	}
	return x
}

func (x *Explanation) describe(s *buffer.Summary, names *serviceNames) {
	for n := range names.all() {
		x.Services = append(x.Services, string(n))
	}
	slices.Sort(x.Services)
	x.MoreServices = names.more
	x.FirstSeen = time.Unix(0, s.FirstSeen).UTC()
	x.Spans, x.ErrorSpans, x.HasRoot = s.SpanCount, s.ErrorCount, s.HasRoot()
	if s.MinStart != 0 && s.MaxEnd >= s.MinStart {
		x.DurationSec = float64(s.MaxEnd-s.MinStart) / 1e9
	}
}
