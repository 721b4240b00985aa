package buffer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// appendHandoff appends n spans of trace tid as handed off by another node
// that saw the trace at firstSeen and its root at rootSeen.
func appendHandoff(t testing.TB, b *Buffer, tid [16]byte, n int, root bool, firstSeen, rootSeen, now int64) AppendResult {
	t.Helper()
	g := mustAcquire(t, b, "handed-off")
	defer b.Release(g)
	var bt Batch
	bt.StartTraceSeen(tid, firstSeen, rootSeen)
	for i := range n {
		bt.AddSpan(Span{Group: g, Raw: fmt.Appendf(nil, "handoff-%x-%d", tid[15], i), Root: root && i == 0})
	}
	res, err := b.Append(&bt, now)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func oneShard(t testing.TB) *Buffer {
	t.Helper()
	b, err := New(Config{MemoryLimit: 1 << 30, Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func traceIDs(ts []*Trace) (out []int) {
	for _, t := range ts {
		out = append(out, int(t.ID[0])<<8|int(t.ID[15]))
	}
	slices.Sort(out)
	return out
}

func TestHandoffNotStuckBehindNewer(t *testing.T) {
	b := oneShard(t) // one queue: the handed-off entry lands behind the others
	now := int64(1000 * time.Second)
	for i := range 5 {
		appendTrace(t, b, id(i), "local", 2, false, now)
	}
	appendHandoff(t, b, id(100), 3, false, now-int64(10*time.Second), 0, now)
	got := b.TakeReady(now-int64(5*time.Second), 0, nil)
	if fmt.Sprint(traceIDs(got)) != "[100]" {
		t.Fatalf("took %v, want [100]", traceIDs(got))
	}
	if got[0].FirstSeen != now-int64(10*time.Second) || got[0].LastSeen != now {
		t.Fatalf("FirstSeen %d LastSeen %d, want %d %d", got[0].FirstSeen, got[0].LastSeen, now-int64(10*time.Second), now)
	}
	if s := b.Stats(); s.Traces != 5 || s.Spans != 10 {
		t.Fatalf("left %+v, want the 5 local traces", s)
	}
	if got := b.TakeReady(now, 0, nil); fmt.Sprint(traceIDs(got)) != "[0 1 2 3 4]" {
		t.Fatalf("took %v, want [0 1 2 3 4]", traceIDs(got))
	}
}

func TestHandoffLowersFirstSeen(t *testing.T) {
	b := oneShard(t)
	base := b.Stats().Bytes
	appendTrace(t, b, id(1), "local", 2, false, 100)
	if res := appendHandoff(t, b, id(1), 3, false, 150, 0, 105); res.NewTraces != 0 {
		t.Fatalf("NewTraces = %d for a buffered trace", res.NewTraces)
	}
	if got := b.TakeReady(99, 0, nil); len(got) != 0 {
		t.Fatalf("a later handed-off FirstSeen made the trace due early: %v", traceIDs(got))
	}
	appendHandoff(t, b, id(1), 3, false, 50, 0, 110)
	if got := b.TakeReady(49, 0, nil); len(got) != 0 {
		t.Fatalf("took %v before the lowered FirstSeen", traceIDs(got))
	}
	got := b.TakeReady(60, 0, nil)
	if len(got) != 1 {
		t.Fatalf("took %d traces, want 1", len(got))
	}
	if tr := got[0]; tr.FirstSeen != 50 || tr.LastSeen != 110 || tr.SpanCount != 8 {
		t.Fatalf("FirstSeen %d LastSeen %d SpanCount %d, want 50 110 8", tr.FirstSeen, tr.LastSeen, tr.SpanCount)
	}
	if got := b.TakeReady(200, 200, nil); len(got) != 0 {
		t.Fatalf("stale entry returned the trace again: %v", traceIDs(got))
	}
	if s := b.Stats(); s.Traces != 0 || s.Spans != 0 || s.Bytes != base {
		t.Fatalf("after taking everything: %+v, want bytes %d", s, base)
	}
	if q := &b.shards[0].byFirst; q.size != 0 || len(q.late) != 0 {
		t.Fatalf("queue holds %d+%d entries after draining", q.size, len(q.late))
	}
}

func TestHandoffRootSeen(t *testing.T) {
	const now, x = 10_000, 5_000
	cases := []struct {
		name      string
		local     int // spans buffered before the hand-off
		localRoot bool
		rootIndex int32
	}{
		{"new trace", 0, false, 0},
		{"buffered without root", 1, false, 1},
		{"buffered with later root", 1, true, 0}, // the first root in the log stays
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := oneShard(t)
			if c.local > 0 {
				appendTrace(t, b, id(1), "local", c.local, c.localRoot, 9_000)
			}
			appendHandoff(t, b, id(1), 2, true, 8_000, x, now)
			if got := b.TakeReady(1, x-1, nil); len(got) != 0 {
				t.Fatalf("taken before its root time")
			}
			got := b.TakeReady(1, x, nil)
			if len(got) != 1 {
				t.Fatalf("took %d traces by root time %d, want 1", len(got), x)
			}
			if tr := got[0]; tr.RootSeen != x || tr.RootIndex != c.rootIndex {
				t.Fatalf("RootSeen %d RootIndex %d, want %d %d", tr.RootSeen, tr.RootIndex, x, c.rootIndex)
			}
		})
	}
	t.Run("no root span", func(t *testing.T) {
		b := oneShard(t)
		appendHandoff(t, b, id(1), 2, false, 8_000, x, now)
		appendTrace(t, b, id(2), "local", 1, true, 9_000)
		appendHandoff(t, b, id(2), 2, false, 0, x, now)
		if got := b.TakeReady(1, 9_000-1, nil); len(got) != 0 {
			t.Fatalf("RootSeen without a root span made %v due", traceIDs(got))
		}
		got := b.TakeAll(nil)
		slices.SortFunc(got, func(a, b *Trace) int { return int(a.ID[15]) - int(b.ID[15]) })
		if got[0].HasRoot() || got[1].RootSeen != 9_000 {
			t.Fatalf("RootSeen %d and %d, want 0 and 9000", got[0].RootSeen, got[1].RootSeen)
		}
	})
}

// TestHandoffManyOutOfOrder takes 10,000 handed-off traces, batched and
// shuffled, among local ones, at several bounds.
func TestHandoffManyOutOfOrder(t *testing.T) {
	const n, now = 10_000, int64(1 << 40) // id() keeps 16 bits: local ids n+i fit
	r := rand.New(rand.NewPCG(1, 2))
	seen := make([]int64, n)
	for i := range seen {
		seen[i] = now - 1 - r.Int64N(1_000_000)
	}
	fill := func(b *Buffer) {
		g := mustAcquire(t, b, "g")
		defer b.Release(g)
		var bt Batch
		for _, i := range r.Perm(n) {
			if len(bt.Traces) == 100 {
				if _, err := b.Append(&bt, now); err != nil {
					t.Fatal(err)
				}
				bt.Reset()
				appendTrace(t, b, id(n+i), "local", 1, false, now)
			}
			bt.StartTraceSeen(id(i), seen[i], 0)
			bt.AddSpan(Span{Group: g, Raw: []byte("x")})
		}
		if _, err := b.Append(&bt, now); err != nil {
			t.Fatal(err)
		}
	}
	due := func(lo, hi int64) (ids []int) {
		for i, s := range seen {
			if lo < s && s <= hi {
				ids = append(ids, i)
			}
		}
		return ids
	}
	b := newBuffer(t, 1<<30)
	fill(b)
	local := b.Stats().Traces - n
	if got := b.TakeReady(now-1, 0, nil); len(got) != n {
		t.Fatalf("one take after all of them took %d of %d", len(got), n)
	}
	if s := b.Stats(); s.Traces != local {
		t.Fatalf("%d traces left, want the %d local ones", s.Traces, local)
	}

	b = newBuffer(t, 1<<30)
	fill(b)
	prev := int64(0)
	for _, bound := range []int64{now - 900_000, now - 500_000, now - 500_000, now - 12_345, now - 1} {
		got := traceIDs(b.TakeReady(bound, 0, nil))
		if want := due(prev, bound); !slices.Equal(got, want) {
			t.Fatalf("bound %d: took %d traces, want %d", bound-now, len(got), len(want))
		}
		prev = bound
	}
	if s := b.Stats(); s.Traces != local {
		t.Fatalf("%d traces left, want the %d local ones", s.Traces, local)
	}
}

func TestQueueOrderAndShrink(t *testing.T) {
	var q queue
	r := rand.New(rand.NewPCG(5, 6))
	at := int64(0)
	for range 20_000 {
		if r.IntN(2) == 0 {
			at += r.Int64N(10)
			q.push(queueEntry{at: at})
		} else {
			q.push(queueEntry{at: r.Int64N(at + 1)})
		}
	}
	if len(q.late) < 5_000 || q.size < 5_000 {
		t.Fatalf("%d in the ring, %d in the heap: not exercising both", q.size, len(q.late))
	}
	prev := int64(-1)
	for n := 0; ; n++ {
		e, ok := q.front()
		if !ok {
			if n != 20_000 {
				t.Fatalf("popped %d entries, pushed 20000", n)
			}
			break
		}
		if e.at < prev {
			t.Fatalf("entry %d at %d after %d", n, e.at, prev)
		}
		prev = e.at
		q.pop()
	}
	if len(q.ring) > 1024 || cap(q.late) > 1024 {
		t.Fatalf("empty queue still holds a ring of %d and a heap of %d", len(q.ring), cap(q.late))
	}
}

func TestTakeAllResetsQueues(t *testing.T) {
	b := oneShard(t)
	for i := range 100 {
		appendHandoff(t, b, id(i), 1, true, int64(1000-i), int64(1000-i), 2000)
	}
	if len(b.shards[0].byFirst.late) == 0 || len(b.shards[0].byRoot.late) == 0 {
		t.Fatal("no out-of-order entries to reset")
	}
	if got := b.TakeAll(nil); len(got) != 100 {
		t.Fatalf("took %d traces, want 100", len(got))
	}
	for _, q := range []*queue{&b.shards[0].byFirst, &b.shards[0].byRoot} {
		if q.size != 0 || q.late != nil {
			t.Fatalf("queue after TakeAll: %d in the ring, %d in the heap", q.size, len(q.late))
		}
	}
}

func TestTakeIf(t *testing.T) {
	const n = 1000
	spansOf := func(i int) int { return 1 + i%3 }
	even := func(id *[16]byte) bool { return id[15]%2 == 0 }
	fill := func(b *Buffer, keep func(int) bool) {
		for i := range n {
			if keep(i) {
				appendTrace(t, b, id(i), "res", spansOf(i), i%4 == 1, int64(100+i))
			}
		}
	}
	b := newBuffer(t, 0)
	fill(b, func(int) bool { return true })
	odd := newBuffer(t, 0) // what b should hold after TakeIf
	fill(odd, func(i int) bool { return i%2 == 1 })

	got := b.TakeIf(even, nil)
	if len(got) != n/2 {
		t.Fatalf("took %d traces, want %d", len(got), n/2)
	}
	for _, tr := range got {
		i := int(tr.ID[0])<<8 | int(tr.ID[15])
		if i%2 != 0 {
			t.Fatalf("took odd trace %d", i)
		}
		var spans []string
		for _, raw := range tr.Spans() {
			spans = append(spans, string(raw))
		}
		var want []string
		for j := range spansOf(i) {
			want = append(want, fmt.Sprintf("span-%x-%d", tr.ID[15], j))
		}
		if !slices.Equal(spans, want) {
			t.Fatalf("trace %d spans %q, want %q", i, spans, want)
		}
	}
	if s, w := b.Stats(), odd.Stats(); s != w {
		t.Fatalf("after TakeIf %+v, want as if only the odd traces came: %+v", s, w)
	}
	if got := b.TakeIf(even, nil); len(got) != 0 {
		t.Fatalf("second TakeIf took %d", len(got))
	}
	// A new incarnation of a taken trace is not due by the old entries.
	appendTrace(t, b, id(0), "res", 1, true, 5000)
	got = b.TakeReady(4999, 4999, nil)
	for _, tr := range got {
		if even(&tr.ID) {
			t.Fatalf("TakeReady returned trace %x taken by TakeIf", tr.ID)
		}
	}
	if len(got) != n/2 {
		t.Fatalf("TakeReady took %d traces, want the %d odd ones", len(got), n/2)
	}
	if got := traceIDs(b.TakeReady(5000, 0, nil)); fmt.Sprint(got) != "[0]" {
		t.Fatalf("took %v, want the new incarnation [0]", got)
	}
	if s := b.Stats(); s.Traces != 0 || s.Spans != 0 || s.Bytes != 0 {
		t.Fatalf("after taking everything: %+v", s)
	}
}

// TestHandoffConcurrent mixes local appends, hand-offs into the past,
// TakeIf and TakeReady; every span comes out exactly once.
func TestHandoffConcurrent(t *testing.T) {
	b := newBuffer(t, 0)
	const writers, traces = 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range traces {
				tid := id(w*traces + i)
				appendTrace(t, b, tid, "local", 2, false, int64(1000+i))
				appendHandoff(t, b, tid, 1, i%2 == 0, int64(i), int64(i), int64(1000+i))
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	taken := 0
	count := func(ts []*Trace) {
		for _, tr := range ts {
			taken += int(tr.SpanCount)
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		count(b.TakeIf(func(id *[16]byte) bool { return id[15]%7 == 0 }, nil))
		count(b.TakeReady(traces/2, traces/2, nil))
	}
	count(b.TakeAll(nil))
	if want := writers * traces * 3; taken != want {
		t.Fatalf("took %d spans, appended %d", taken, want)
	}
	if s := b.Stats(); s.Bytes != 0 || s.Spans != 0 || s.Traces != 0 {
		t.Fatalf("stats after draining: %+v", s)
	}
}
