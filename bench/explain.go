package bench

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tailsift/tailsift/bench/workload"
	"github.com/tailsift/tailsift/decision"
	"github.com/tailsift/tailsift/node"
)

// MissedTrace is an error or slow trace the sink names as not kept whole
// (sink.ClassReport.Missed), with what the engine says of it after the
// drain: its explain API (GET /api/v1/traces/{id}), asked of the
// in-process nodes or of the first --target-admin. A trace is decided with
// the spans it has: one whose error span (or whose spans of the slow
// threshold) arrived only after its decision is dropped, and the late
// spans are counted as dropped late. The explanation tells that apart
// from a trace the engine lost.
type MissedTrace struct {
	TraceID     string                `json:"trace_id"`
	Class       string                `json:"class"`
	Explanation *decision.Explanation `json:"explanation,omitempty"` // nil: the engine could not be asked
	Err         string                `json:"error,omitempty"`       // why it could not
}

// DecidedBefore reports whether the engine dropped the trace before it
// showed what keeps a trace of its class, by its explanation: no error
// span in hand (class error), or spans in hand lasting less than slow
// (class slow). That is the judgement of the embedded example policies
// (every error trace, every trace of 1s or more); with others it may not
// hold.
func (m *MissedTrace) DecidedBefore(slow time.Duration) bool {
	x := m.Explanation
	if x == nil || x.Status != "dropped" || x.DecidedAt.IsZero() {
		return false // kept (so it should be whole), still pending, or no details
	}
	switch m.Class {
	case workload.ClassError.String():
		return x.ErrorSpans == 0
	case workload.ClassSlow.String():
		return x.DurationSec < slow.Seconds()
	}
	return false
}

// Unexplained returns the missed error and slow traces the engine did
// not drop before they showed an error or their duration (DecidedBefore):
// with the example policies, each is a trace the engine kept incomplete,
// dropped although it had seen what keeps it, or cannot account for.
func (r *Result) Unexplained() []MissedTrace {
	var out []MissedTrace
	for _, m := range r.Missed {
		if !m.DecidedBefore(r.Sink.SlowThreshold) {
			out = append(out, m)
		}
	}
	return out
}

// explainMissed asks the engine about the error and slow traces the sink
// names as missed: the in-process nodes (any of them answers for the
// trace's owner), or the external ones through adm.
func explainMissed(ctx context.Context, r *Result, nodes []*node.Node, adm *admins) {
	explain := func(ctx context.Context, id [16]byte) (decision.Explanation, error) {
		switch {
		case len(nodes) > 0:
			return nodes[0].Cluster().Explain(ctx, id)
		case adm != nil:
			return adm.explain(ctx, id)
		}
		return decision.Explanation{}, fmt.Errorf("no node to ask (external mode without --target-admin)")
	}
	for _, c := range []workload.Class{workload.ClassError, workload.ClassSlow} {
		for _, h := range r.Sink.Classes[c].Missed {
			m := MissedTrace{TraceID: h, Class: c.String()}
			var id [16]byte
			if _, err := hex.Decode(id[:], []byte(h)); err != nil {
				panic("BUG: bench: the sink named trace " + h)
			}
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			x, err := explain(actx, id)
			cancel()
			if err != nil {
				m.Err = err.Error()
			} else {
				m.Explanation = &x
			}
			r.Missed = append(r.Missed, m)
		}
	}
}

// explain asks the first node's explain API about trace id.
func (a *admins) explain(ctx context.Context, id [16]byte) (decision.Explanation, error) {
	url := strings.TrimSuffix(a.urls[0], "/metrics") + "/api/v1/traces/" + hex.EncodeToString(id[:])
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return decision.Explanation{}, err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return decision.Explanation{}, fmt.Errorf("explain: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return decision.Explanation{}, fmt.Errorf("explain %s: HTTP %d %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var x decision.Explanation
	if err := json.Unmarshal(body, &x); err != nil {
		return decision.Explanation{}, fmt.Errorf("explain %s: %w", url, err)
	}
	return x, nil
}
