package sink

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/tailsift/tailsift/bench/workload"
)

// Progress is what arrived since Expect, for a live display.
type Progress struct {
	Spans             int64 // spans in well-formed requests
	Requests          int64 // well-formed requests
	MalformedRequests int64 // requests refused as unreadable
	// AbandonedRequests counts gRPC uploads the client cut short (it
	// cancelled, or its connection closed) before the body arrived: not
	// malformed, only never sent. A killed exporter leaves these.
	AbandonedRequests int64
	LastArrival       time.Time // zero before the first request
}

// ClassReport is the outcome for the manifest traces of one class.
type ClassReport struct {
	Class string `json:"class"`
	// Sent counts the class's manifest traces not marked Undelivered.
	Sent int64 `json:"sent"`
	// Kept counts traces of which at least one span arrived:
	// Complete + Fragmented + Duplicated.
	Kept       int64 `json:"kept"`
	Complete   int64 `json:"complete"`   // every span exactly once
	Fragmented int64 `json:"fragmented"` // some but not all spans, none twice
	Duplicated int64 `json:"duplicated"` // some span more than once
	Dropped    int64 `json:"dropped"`    // no span arrived: Sent - Kept
	// KeepShare is Complete / Sent, 1 when nothing was sent.
	KeepShare float64 `json:"keep_share"`
	// Missed lists the first MaxMissed of the class's Sent traces that
	// did not arrive whole (dropped, fragmented or duplicated), in
	// manifest order, as hex trace IDs: the ones to ask a node's explain
	// API (GET /api/v1/traces/{id}) why.
	Missed []string `json:"missed,omitempty"`
}

// MaxMissed bounds ClassReport.Missed.
const MaxMissed = 20

// DelayStats describes the end-to-end delay of complete traces: when the
// trace's last span reached the sink minus when the trace ended (run start +
// EndOffset). Percentiles are nearest-rank. In JSON, durations are
// milliseconds.
type DelayStats struct {
	Count              int64
	P50, P90, P99, Max time.Duration
}

type delayJSON struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// MarshalJSON writes the delays in milliseconds.
func (d DelayStats) MarshalJSON() ([]byte, error) {
	return json.Marshal(delayJSON{Count: d.Count, P50: ms(d.P50), P90: ms(d.P90), P99: ms(d.P99), Max: ms(d.Max)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *DelayStats) UnmarshalJSON(b []byte) error {
	var j delayJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*d = DelayStats{Count: j.Count, P50: fromMS(j.P50), P90: fromMS(j.P90), P99: fromMS(j.P99), Max: fromMS(j.Max)}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fromMS(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }

// Report classifies every trace of a manifest against what the sink
// received. Manifest traces marked Undelivered are counted in Undelivered
// only. In JSON, durations are milliseconds.
type Report struct {
	// SlowThreshold is the duration from which a trace without error is
	// ClassSlow (JSON: slow_threshold_ms).
	SlowThreshold time.Duration `json:"-"`
	// ManifestTraces counts every trace of the manifest: Sent + Undelivered.
	ManifestTraces int64 `json:"manifest_traces"`
	// Classes is indexed by workload.Class.
	Classes [workload.NumClasses]ClassReport `json:"classes"`

	// Totals over the classes.
	Sent       int64 `json:"sent"`
	Kept       int64 `json:"kept"`
	Complete   int64 `json:"complete"`
	Fragmented int64 `json:"fragmented"`
	Duplicated int64 `json:"duplicated"`
	Dropped    int64 `json:"dropped"`

	// Undelivered counts manifest traces the sender could not deliver.
	Undelivered int64 `json:"undelivered"`
	// Unexpected counts traces whose ID is not in the manifest.
	Unexpected int64 `json:"unexpected_traces"`
	// UnexpectedSpans counts spans of unexpected traces and spans of
	// manifest traces whose ID is not SpanID(trace, i) for i < Spans.
	UnexpectedSpans int64 `json:"unexpected_spans"`
	// DuplicateSpans counts copies of manifest spans after the first.
	DuplicateSpans int64 `json:"duplicate_spans"`

	SpansReceived     int64 `json:"spans_received"`
	Requests          int64 `json:"requests"`
	MalformedRequests int64 `json:"malformed_requests"`
	AbandonedRequests int64 `json:"abandoned_requests"`

	// Delay is over complete traces.
	Delay DelayStats `json:"delay"`
}

type reportJSON Report // without the methods, to avoid recursion

// MarshalJSON adds slow_threshold_ms to the plain encoding.
func (r Report) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		SlowMS float64 `json:"slow_threshold_ms"`
		reportJSON
	}{ms(r.SlowThreshold), reportJSON(r)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Report) UnmarshalJSON(b []byte) error {
	var j struct {
		SlowMS float64 `json:"slow_threshold_ms"`
		reportJSON
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Report(j.reportJSON)
	r.SlowThreshold = fromMS(j.SlowMS)
	return nil
}

// Completeness is the share of received manifest traces that arrived whole:
// Complete / (Complete + Fragmented + Duplicated), 1 when none arrived.
func (r *Report) Completeness() float64 {
	if r.Kept == 0 {
		return 1
	}
	return float64(r.Complete) / float64(r.Kept)
}

// Problems lists, in words, what no correct sampler may cause: fragmented
// or duplicated traces, traces or spans that were never sent, unreadable
// requests. Dropped traces are not listed: which traces may be dropped is
// for the caller to judge, per class. Nil means none.
func (r *Report) Problems() []string {
	var p []string
	add := func(n int64, what string) {
		if n > 0 {
			p = append(p, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.Fragmented, "fragmented traces (some spans missing)")
	add(r.Duplicated, "duplicated traces (some span received more than once)")
	add(r.Unexpected, "unexpected traces (trace ID not in the manifest)")
	add(r.UnexpectedSpans, "unexpected spans (span ID not in the manifest)")
	add(r.MalformedRequests, "malformed requests")
	return p
}

// classify builds the report of what recs recorded against m (nil: no
// manifest, only the counters). It reads recs and the manifest, and
// nothing else: recs must not change meanwhile.
func classify(m *workload.Manifest, recs map[[16]byte]*traceRecord, slow time.Duration, p Progress) Report {
	r := Report{
		SlowThreshold:     slow,
		SpansReceived:     p.Spans,
		Requests:          p.Requests,
		MalformedRequests: p.MalformedRequests,
		AbandonedRequests: p.AbandonedRequests,
	}
	for c := range r.Classes {
		r.Classes[c].Class = workload.Class(c).String()
	}
	if m == nil {
		r.finish()
		return r
	}
	r.ManifestTraces = int64(len(m.Traces))
	for i := range m.Traces {
		t := &m.Traces[i]
		if t.Undelivered.Load() {
			r.Undelivered++
			continue
		}
		r.Classes[t.Class(slow)].Sent++
	}
	var delays []time.Duration
	for _, rec := range recs {
		t := rec.trace
		if t == nil {
			r.Unexpected++
			r.UnexpectedSpans += int64(rec.received)
			continue
		}
		r.UnexpectedSpans += int64(rec.foreign)
		r.DuplicateSpans += int64(rec.duplicates)
		if t.Undelivered.Load() || rec.received == 0 {
			continue
		}
		c := &r.Classes[t.Class(slow)]
		switch {
		case rec.duplicates > 0:
			c.Duplicated++
		case rec.received < t.Spans:
			c.Fragmented++
		default:
			c.Complete++
			delays = append(delays, rec.last-t.EndOffset)
		}
	}
	for i := range m.Traces {
		t := &m.Traces[i]
		c := &r.Classes[t.Class(slow)]
		if t.Undelivered.Load() || len(c.Missed) == MaxMissed {
			continue
		}
		if rec := recs[t.ID]; rec == nil || rec.received < t.Spans || rec.duplicates > 0 {
			c.Missed = append(c.Missed, hex.EncodeToString(t.ID[:]))
		}
	}
	r.Delay = delayStats(delays)
	r.finish()
	return r
}

// finish derives the per-class shares and the totals from the per-class
// counts.
func (r *Report) finish() {
	for i := range r.Classes {
		c := &r.Classes[i]
		c.Kept = c.Complete + c.Fragmented + c.Duplicated
		c.Dropped = c.Sent - c.Kept
		c.KeepShare = 1
		if c.Sent > 0 {
			c.KeepShare = float64(c.Complete) / float64(c.Sent)
		}
		r.Sent += c.Sent
		r.Kept += c.Kept
		r.Complete += c.Complete
		r.Fragmented += c.Fragmented
		r.Duplicated += c.Duplicated
		r.Dropped += c.Dropped
	}
}

// delayStats sorts d and reads its nearest-rank percentiles.
func delayStats(d []time.Duration) DelayStats {
	if len(d) == 0 {
		return DelayStats{}
	}
	slices.Sort(d)
	rank := func(permille int) time.Duration {
		i := (permille*len(d)+999)/1000 - 1
		return d[max(i, 0)]
	}
	return DelayStats{Count: int64(len(d)), P50: rank(500), P90: rank(900), P99: rank(990), Max: d[len(d)-1]}
}
