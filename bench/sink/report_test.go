package sink

import (
	"encoding/binary"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tailsift/tailsift/bench/workload"
)

// rec builds a record of trace id in m with the given span copies arrived
// (index -> copies) and foreign spans, the last first copy at last.
func rec(t *testing.T, m *workload.Manifest, id [16]byte, copies map[int]int, foreign int32, last time.Duration) *traceRecord {
	t.Helper()
	tr, ok := m.Lookup(id)
	if !ok {
		t.Fatalf("trace %x not in manifest", id)
	}
	r := &traceRecord{trace: tr, bits: make([]uint64, (tr.Spans+63)/64), foreign: foreign, last: last}
	for i, n := range copies {
		if n > 0 {
			r.bits[i/64] |= 1 << (i % 64)
			r.received++
			r.duplicates += int32(n - 1)
		}
	}
	return r
}

func TestClassifyHandBuilt(t *testing.T) {
	m := workload.NewManifest(8)
	var (
		complete   = traceID(1)
		fragmented = traceID(2)
		dupWhole   = traceID(3) // every span, one twice
		dupPart    = traceID(4) // a span missing, another twice
		foreignOly = traceID(5) // only foreign spans arrived: not kept
		undeliv    = traceID(6) // arrived whole, but the sender gave up on a request
		dropped    = traceID(7)
		big        = traceID(8) // more than 64 spans
		unexpected = traceID(9)
	)
	m.Add(workload.Trace{ID: complete, Spans: 2, Error: true, EndOffset: time.Second})
	m.Add(workload.Trace{ID: fragmented, Spans: 3, Error: true})
	m.Add(workload.Trace{ID: dupWhole, Spans: 2, Duration: slow})
	m.Add(workload.Trace{ID: dupPart, Spans: 3, Duration: slow})
	m.Add(workload.Trace{ID: foreignOly, Spans: 2})
	m.Add(workload.Trace{ID: undeliv, Spans: 1})
	m.Add(workload.Trace{ID: dropped, Spans: 1})
	m.Add(workload.Trace{ID: big, Spans: 130, EndOffset: 2 * time.Second})
	tr, _ := m.Lookup(undeliv)
	tr.Undelivered.Store(true)

	all := map[int]int{}
	for i := range 130 {
		all[i] = 1
	}
	recs := map[[16]byte]*traceRecord{
		complete:   rec(t, m, complete, map[int]int{0: 1, 1: 1}, 0, 1500*time.Millisecond),
		fragmented: rec(t, m, fragmented, map[int]int{0: 1, 2: 1}, 0, 0),
		dupWhole:   rec(t, m, dupWhole, map[int]int{0: 1, 1: 2}, 0, 0),
		dupPart:    rec(t, m, dupPart, map[int]int{0: 3}, 1, 0),
		foreignOly: rec(t, m, foreignOly, nil, 2, 0),
		undeliv:    rec(t, m, undeliv, map[int]int{0: 1}, 0, 0),
		big:        rec(t, m, big, all, 0, 2100*time.Millisecond),
		unexpected: {received: 7},
	}
	got := classify(m, recs, slow, Progress{Spans: 1000, Requests: 10, MalformedRequests: 2})
	want := Report{
		SlowThreshold:  slow,
		ManifestTraces: 8,
		Classes: [workload.NumClasses]ClassReport{
			{Class: "error", Sent: 2, Kept: 2, Complete: 1, Fragmented: 1, KeepShare: 0.5, Missed: hexIDs(fragmented)},
			{Class: "slow", Sent: 2, Kept: 2, Duplicated: 2, KeepShare: 0, Missed: hexIDs(dupWhole, dupPart)},
			{Class: "rest", Sent: 3, Kept: 1, Complete: 1, Dropped: 2, KeepShare: 1.0 / 3, Missed: hexIDs(foreignOly, dropped)},
		},
		Sent: 7, Kept: 5, Complete: 2, Fragmented: 1, Duplicated: 2, Dropped: 2,
		Undelivered:       1,
		Unexpected:        1,
		UnexpectedSpans:   7 + 1 + 2,
		DuplicateSpans:    1 + 2,
		SpansReceived:     1000,
		Requests:          10,
		MalformedRequests: 2,
		Delay:             DelayStats{Count: 2, P50: 100 * time.Millisecond, P90: 500 * time.Millisecond, P99: 500 * time.Millisecond, Max: 500 * time.Millisecond},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("classify:\n got %+v\nwant %+v", got, want)
	}
	if c := got.Completeness(); c != 2.0/5 {
		t.Errorf("Completeness = %v, want 0.4", c)
	}
}

// TestClassifyMissedBounded: Missed names the first MaxMissed traces of a
// class not kept whole, in manifest order, and counts are not bounded.
func TestClassifyMissedBounded(t *testing.T) {
	n := MaxMissed + 20
	m := workload.NewManifest(n)
	var ids [][16]byte
	for i := range n {
		var id [16]byte
		binary.BigEndian.PutUint64(id[8:], uint64(i+1))
		ids = append(ids, id)
		m.Add(workload.Trace{ID: id, Spans: 1, Error: true})
	}
	recs := map[[16]byte]*traceRecord{ids[1]: rec(t, m, ids[1], map[int]int{0: 1}, 0, 0)} // the only one kept
	got := classify(m, recs, slow, Progress{}).Classes[workload.ClassError]
	want := hexIDs(append(ids[:1:1], ids[2:MaxMissed+1]...)...)
	if got.Dropped != int64(n-1) || !reflect.DeepEqual(got.Missed, want) {
		t.Errorf("dropped %d, missed %d IDs %v..., want %d dropped and the first %d of them", got.Dropped, len(got.Missed), got.Missed[:2], n-1, MaxMissed)
	}
}

func TestClassifyEmpty(t *testing.T) {
	r := classify(nil, nil, slow, Progress{Spans: 3, Requests: 1})
	if r.SpansReceived != 3 || r.Requests != 1 || r.Sent != 0 || r.Completeness() != 1 || r.Problems() != nil {
		t.Errorf("classify without manifest = %+v", r)
	}
	for c, cr := range r.Classes {
		if cr.Class != workload.Class(c).String() || cr.KeepShare != 1 {
			t.Errorf("class %d = %+v, want named, keep share 1 with nothing sent", c, cr)
		}
	}
}

func TestDelayPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := delayStats(d)
	want := DelayStats{Count: 100, P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}
	if got != want {
		t.Errorf("delayStats(1..100ms) = %+v, want %+v", got, want)
	}
	if got := delayStats([]time.Duration{7}); got != (DelayStats{Count: 1, P50: 7, P90: 7, P99: 7, Max: 7}) {
		t.Errorf("delayStats of one = %+v", got)
	}
	if got := delayStats(nil); got != (DelayStats{}) {
		t.Errorf("delayStats(nil) = %+v", got)
	}
}

func TestReportJSON(t *testing.T) {
	r := Report{
		SlowThreshold: 250 * time.Millisecond,
		Sent:          10, Complete: 9, Fragmented: 1, Kept: 10,
		Delay: DelayStats{Count: 9, P50: 1500 * time.Microsecond, P90: 3 * time.Millisecond, P99: 40 * time.Millisecond, Max: 2 * time.Second},
	}
	r.Classes[workload.ClassError] = ClassReport{Class: "error", Sent: 10, KeepShare: 0.9, Missed: []string{"0102"}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"slow_threshold_ms":250`, `"p50_ms":1.5`, `"max_ms":2000`, `"keep_share":0.9`, `"unexpected_traces":0`, `"class":"error"`, `"missed":["0102"]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, r)
	}
}
