package decision

import "github.com/tailsift/tailsift/buffer"

// What the cluster needs from the engine when the ring changes: the
// buffered traces and remembered decisions of trace IDs this node no longer
// owns go to their new owner, and arrive there through ConsumeGrouped
// (with their Arrival) and AdoptDecisions.

// Record is a remembered decision, as handed to another node.
type Record struct {
	ID        [16]byte
	Kept      bool
	Threshold uint64      // kept: the sampling threshold, 0 for p=1
	Attrs     []Attribute // kept: root-span attributes; read-only
}

// TakeMoved removes the buffered traces for which moved returns true, for
// hand-off, and counts their spans as handed off. The caller owns them: if
// they cannot be delivered it must give them back through ConsumeGrouped.
// It waits for a decision tick in progress, so a trace is either decided
// here or taken, never both.
func (e *Engine) TakeMoved(moved func(id *[16]byte) bool, dst []*buffer.Trace) []*buffer.Trace {
	e.decideMu.Lock()
	defer e.decideMu.Unlock()
	n := len(dst)
	dst = e.buf.TakeIf(moved, dst)
	var spans, lost int64
	kept := dst[:n]
	for _, t := range dst[n:] {
		// The new owner logs the spans if it has a write-ahead log; the
		// records here go now (a crash during the hand-off loses them).
		err := e.buf.Load(t)
		e.buf.Forget(t)
		if err != nil {
			lost += int64(t.SpanCount)
			continue
		}
		spans += int64(t.SpanCount)
		kept = append(kept, t)
	}
	clear(dst[len(kept):])
	e.count.handedOff.Add(spans)
	e.count.droppedStorage.Add(lost)
	return kept
}

// Decisions appends the remembered decisions of the trace IDs for which
// moved returns true.
func (e *Engine) Decisions(moved func(id *[16]byte) bool, dst []Record) []Record {
	e.kept.each(func(id *[16]byte, info keptInfo) {
		if moved(id) {
			dst = append(dst, Record{ID: *id, Kept: true, Threshold: info.threshold, Attrs: info.attrs})
		}
	})
	e.dropped.each(func(id *[16]byte, _ struct{}) {
		if moved(id) {
			dst = append(dst, Record{ID: *id})
		}
	})
	return dst
}

// AdoptDecisions remembers decisions made by another node, so late spans of
// those traces arriving here follow them. A trace that this node has
// already decided keeps its own decision.
func (e *Engine) AdoptDecisions(recs []Record) {
	for i := range recs {
		r := &recs[i]
		if r.Kept {
			if !e.dropped.contains(r.ID) {
				e.kept.addIfAbsent(r.ID, keptInfo{threshold: r.Threshold, attrs: r.Attrs})
			}
		} else if _, kept := e.kept.get(r.ID); !kept {
			e.dropped.addIfAbsent(r.ID, struct{}{})
		}
	}
}

// SetShare sets the fraction of the cluster's traffic this node sees; the
// policies' cluster-wide targets (adaptive, rate_limit) are scaled by it.
// It carries over to policy sets installed later.
func (e *Engine) SetShare(f float64) {
	e.policyMu.Lock()
	defer e.policyMu.Unlock()
	e.share = f
	e.policies.Load().set.SetShare(f)
}
