// Package replay runs captured traces through a policy set as the sampler
// would decide them, and tallies what each rule matches and keeps: the dry
// run of a policy change before it ships ("sampler policy test").
//
// Spans go through the sampler's own buffer and trace view, so a replay
// reads exactly what the engine reads. Traces are decided in order of their
// first span's start time, with the trace's end time as the clock, so rules
// that depend on time (adaptive, rate limits) see a consistent timeline.
package replay

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/internal/capture"
	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/traceview"
	"github.com/tailsift/tailsift/policy"
)

// RuleStats is what one rule decided.
type RuleStats struct {
	Rule      string `json:"rule"`
	Matched   int    `json:"traces_matched"` // traces this rule decided
	Kept      int    `json:"traces_kept"`
	Dropped   int    `json:"traces_dropped"`
	Spans     int    `json:"spans"`
	KeptSpans int    `json:"spans_kept"`
}

// Report is the outcome of a replay.
type Report struct {
	Traces    int         `json:"traces"`
	Spans     int         `json:"spans"`
	Kept      int         `json:"traces_kept"`
	KeptSpans int         `json:"spans_kept"`
	Rules     []RuleStats `json:"rules"` // in evaluation order, the default last
}

// KeepShare is the share of traces kept.
func (r *Report) KeepShare() float64 {
	if r.Traces == 0 {
		return 0
	}
	return float64(r.Kept) / float64(r.Traces)
}

// Trace is one replayed trace, for Options.OnTrace.
type Trace struct {
	Policy   policy.Trace
	Decision policy.Decision
	Now      time.Time
}

// Options tune a replay.
type Options struct {
	// OnTrace, if set, is called for each trace with its decision (for
	// --explain). The trace's spans are readable only during the call.
	OnTrace func(set *policy.Set, t *Trace)
}

// Run replays the capture files through set.
func Run(set *policy.Set, paths []string, opts Options) (*Report, error) {
	buf, err := buffer.New(buffer.Config{MemoryLimit: 1 << 50, Shards: 16})
	if err != nil {
		return nil, err
	}
	var req otlpwire.Request
	var bt buffer.Batch
	var in buffer.Interner
	for _, path := range paths {
		err := capture.Read(path, func(pb []byte) error {
			if err := req.Scan(pb); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			req.GroupByTrace()
			in.Reset(buf, &req)
			defer in.Release()
			bt.Reset()
			for t := range req.Traces {
				bt.StartTrace(req.Traces[t].ID)
				if err := bt.AddRequestSpans(&req, req.TraceSpans(t), &in); err != nil {
					return err
				}
			}
			_, err := buf.Append(&bt, 1)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	traces := buf.TakeAll(nil)
	slices.SortFunc(traces, func(a, b *buffer.Trace) int {
		if a.MinStart != b.MinStart {
			if a.MinStart < b.MinStart {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})

	rep := &Report{}
	index := map[string]int{}
	for _, name := range set.RuleNames() {
		index[name] = len(rep.Rules)
		rep.Rules = append(rep.Rules, RuleStats{Rule: name})
	}
	var view traceview.View
	for _, t := range traces {
		pt := view.Trace(t)
		now := time.Unix(0, int64(t.MaxEnd))
		d := evaluate(set, &pt, now)
		rs := &rep.Rules[index[d.Rule]]
		n := int(t.SpanCount)
		rs.Matched++
		rs.Spans += n
		rep.Traces++
		rep.Spans += n
		if d.Keep {
			rs.Kept++
			rs.KeptSpans += n
			rep.Kept++
			rep.KeptSpans += n
		} else {
			rs.Dropped++
		}
		if opts.OnTrace != nil {
			opts.OnTrace(set, &Trace{Policy: pt, Decision: d, Now: now})
		}
	}
	return rep, nil
}

func evaluate(set *policy.Set, t *policy.Trace, now time.Time) policy.Decision {
	return set.Evaluate(t, now)
}
