package buffer

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tailsift/tailsift/internal/otlpwire"
)

func id(n int) [16]byte {
	var b [16]byte
	b[0], b[15] = byte(n>>8), byte(n)
	b[7] = 1
	return b
}

func newBuffer(t testing.TB, limit int64) *Buffer {
	t.Helper()
	cfg := DefaultConfig()
	if limit > 0 {
		cfg.MemoryLimit = limit
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testGroup makes a group of a test key "resource/scope" (or "resource").
func testGroup(key string) otlpwire.Group {
	res, scope, _ := strings.Cut(key, "/")
	return otlpwire.Group{Resource: []byte(res), Scope: []byte(scope)}
}

// groupName is the test key of a group (testGroup's inverse).
func groupName(g otlpwire.Group) string {
	if len(g.Scope) == 0 {
		return string(g.Resource)
	}
	return string(g.Resource) + "/" + string(g.Scope)
}

// mustAcquire interns the group of a test key.
func mustAcquire(t testing.TB, b *Buffer, key string) *Group {
	t.Helper()
	g, err := b.Acquire(testGroup(key))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// appendTrace appends n spans of trace tid under group key key.
func appendTrace(t testing.TB, b *Buffer, tid [16]byte, key string, n int, root bool, now int64) error {
	t.Helper()
	g, err := b.Acquire(testGroup(key))
	if err != nil {
		return err
	}
	defer b.Release(g)
	var bt Batch
	bt.StartTrace(tid)
	for i := range n {
		bt.AddSpan(Span{Group: g, Raw: []byte(fmt.Sprintf("span-%x-%d", tid[15], i)),
			StartUnixNano: uint64(1000 + i), EndUnixNano: uint64(2000 + i), Root: root && i == n-1, Error: i == 1})
	}
	_, err = b.Append(&bt, now)
	return err
}

func TestSummaryAndSpans(t *testing.T) {
	b := newBuffer(t, 0)
	if err := appendTrace(t, b, id(1), "res-a", 3, false, 10); err != nil {
		t.Fatal(err)
	}
	if err := appendTrace(t, b, id(1), "res-b", 2, true, 20); err != nil {
		t.Fatal(err)
	}
	got := b.TakeAll(nil)
	if len(got) != 1 {
		t.Fatalf("took %d traces, want 1", len(got))
	}
	tr := got[0]
	want := Summary{FirstSeen: 10, LastSeen: 20, RootSeen: 20, RootEnd: 2001, MinStart: 1000, MaxEnd: 2002, SpanCount: 5, ErrorCount: 2, RootIndex: 4}
	want.Bytes = tr.Bytes
	if tr.Summary != want {
		t.Fatalf("summary = %+v, want %+v", tr.Summary, want)
	}
	var keys, spans []string
	for k, s := range tr.Spans() {
		keys = append(keys, groupName(k))
		spans = append(spans, string(s))
	}
	wantSpans := []string{"span-1-0", "span-1-1", "span-1-2", "span-1-0", "span-1-1"}
	wantKeys := []string{"res-a", "res-a", "res-a", "res-b", "res-b"}
	if fmt.Sprint(spans) != fmt.Sprint(wantSpans) || fmt.Sprint(keys) != fmt.Sprint(wantKeys) {
		t.Fatalf("spans %v under %v, want %v under %v", spans, keys, wantSpans, wantKeys)
	}
	total := 0
	for _, s := range wantSpans {
		total += len(s)
	}
	if tr.Bytes != int64(total) {
		t.Fatalf("Bytes = %d, want %d", tr.Bytes, total)
	}
}

func TestTakeReady(t *testing.T) {
	b := newBuffer(t, 0)
	appendTrace(t, b, id(1), "r", 1, false, 100) // first seen 100, no root
	appendTrace(t, b, id(2), "r", 1, false, 200) // root arrives later
	appendTrace(t, b, id(3), "r", 1, true, 300)  // root at 300
	appendTrace(t, b, id(2), "r", 1, true, 350)  // root of 2 at 350

	ids := func(ts []*Trace) (out []int) {
		for _, t := range ts {
			out = append(out, int(t.ID[15]))
		}
		return out
	}
	// Nothing due yet.
	if got := b.TakeReady(99, 299, nil); len(got) != 0 {
		t.Fatalf("took %v early", ids(got))
	}
	// Trace 1 by first-seen deadline, trace 3 by root deadline.
	if got := ids(b.TakeReady(100, 300, nil)); fmt.Sprint(got) != "[1 3]" {
		t.Fatalf("took %v, want [1 3]", got)
	}
	// Trace 2: root deadline at 350. Its first-seen entry (200) is still
	// queued; taking by root must not leave a live duplicate.
	if got := ids(b.TakeReady(150, 350, nil)); fmt.Sprint(got) != "[2]" {
		t.Fatalf("took %v, want [2]", got)
	}
	// A new incarnation of trace 2 is not taken by the old entry at 200.
	appendTrace(t, b, id(2), "r", 1, false, 400)
	if got := ids(b.TakeReady(399, 399, nil)); len(got) != 0 {
		t.Fatalf("stale queue entry took the new trace: %v", got)
	}
	if got := ids(b.TakeReady(400, 0, nil)); fmt.Sprint(got) != "[2]" {
		t.Fatalf("took %v, want [2]", got)
	}
	if s := b.Stats(); s.Traces != 0 || s.Spans != 0 || s.Bytes != 0 {
		t.Fatalf("after taking everything: %+v", s)
	}
}

func TestFullIsAllOrNothing(t *testing.T) {
	b := newBuffer(t, 4096)
	n := 0
	var err error
	for ; err == nil; n++ {
		err = appendTrace(t, b, id(n), "res", 4, false, int64(n))
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("err = %v, want ErrFull", err)
	}
	before := b.Stats()
	if before.Bytes > before.MemoryLimit {
		t.Fatalf("used %d bytes past the limit %d", before.Bytes, before.MemoryLimit)
	}
	// The refused trace left nothing behind.
	for _, tr := range b.TakeAll(nil) {
		if tr.ID == id(n-1) {
			t.Fatal("refused trace was buffered")
		}
		if tr.SpanCount != 4 {
			t.Fatalf("trace %x has %d spans, want 4", tr.ID, tr.SpanCount)
		}
	}
	if before.Traces != int64(n-1) || before.Spans != int64(4*(n-1)) {
		t.Fatalf("stats %+v after %d accepted traces", before, n-1)
	}
	// Room again after taking.
	if err := appendTrace(t, b, id(n), "res", 4, false, 0); err != nil {
		t.Fatalf("after draining: %v", err)
	}
}

func TestGroupsAreInternedAndFreed(t *testing.T) {
	b := newBuffer(t, 0)
	for i := range 10 {
		appendTrace(t, b, id(i), "shared-resource", 2, false, 1)
	}
	if n, r := len(b.groups.groups), len(b.groups.resources); n != 1 || r != 1 {
		t.Fatalf("%d interned groups, %d resources, want 1 and 1", n, r)
	}
	traces := b.TakeAll(nil)
	if n, r := len(b.groups.groups), len(b.groups.resources); n != 0 || r != 0 {
		t.Fatalf("%d groups, %d resources left after every trace was taken", n, r)
	}
	if s := b.Stats(); s.Bytes != 0 {
		t.Fatalf("accounted %d bytes with nothing buffered", s.Bytes)
	}
	// Taken traces still read their keys after the table forgot them.
	for k := range traces[0].Spans() {
		if groupName(k) != "shared-resource" {
			t.Fatalf("key = %q", groupName(k))
		}
	}
}

func TestConcurrentAppendAndTake(t *testing.T) {
	b := newBuffer(t, 0)
	const writers, traces, spansPer = 4, 500, 3
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range traces {
				appendTrace(t, b, id(w*traces+i), fmt.Sprint("svc", w), spansPer, i%2 == 0, int64(i))
			}
		}()
	}
	taken := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		for _, tr := range b.TakeReady(int64(traces), int64(traces), nil) {
			taken += int(tr.SpanCount)
		}
	}
	for _, tr := range b.TakeAll(nil) {
		taken += int(tr.SpanCount)
	}
	if want := writers * traces * spansPer; taken != want {
		t.Fatalf("took %d spans, appended %d", taken, want)
	}
	if s := b.Stats(); s.Bytes != 0 || s.Spans != 0 || s.Traces != 0 {
		t.Fatalf("stats after draining: %+v", s)
	}
}

// TestAppendAllocatesPerTraceNotPerSpan guards the hot path: appending a
// request allocates for new traces (struct, log, map growth), never per span.
func TestAppendAllocatesPerTraceNotPerSpan(t *testing.T) {
	b := newBuffer(t, 1<<40)
	g := mustAcquire(t, b, "resource")
	defer b.Release(g)
	raw := bytes.Repeat([]byte{'x'}, 300)
	var bt Batch
	const traces, spansPer = 20, 25
	next := 0
	fill := func() {
		bt.Reset()
		for range traces {
			next++
			bt.StartTrace(id(next))
			for range spansPer {
				bt.AddSpan(Span{Group: g, Raw: raw})
			}
		}
	}
	allocs := testing.AllocsPerRun(20, func() {
		fill()
		if _, err := b.Append(&bt, 1); err != nil {
			t.Fatal(err)
		}
	})
	// Per new trace: the Trace, its log, its groups slice, plus amortized
	// map and queue growth. Nothing may scale with spansPer.
	if allocs > 5*traces {
		t.Fatalf("Append allocates %v times for %d traces of %d spans", allocs, traces, spansPer)
	}
	// Appending to existing traces with room in their logs allocates nothing.
	b2 := newBuffer(t, 1<<40)
	g2 := mustAcquire(t, b2, "resource")
	defer b2.Release(g2)
	var one Batch
	one.StartTrace(id(1))
	one.AddSpan(Span{Group: g2, Raw: raw})
	b2.Append(&one, 1)
	tr := b2.shard(&one.Traces[0].ID).traces[id(1)]
	tr.first = append(make([]byte, 0, 1<<20), tr.first...) // room for every span below
	if a := testing.AllocsPerRun(100, func() { b2.Append(&one, 2) }); a != 0 {
		t.Fatalf("appending to an existing trace allocates %v", a)
	}
}

// TestManyAppendsKeepOrder appends one trace's spans over many requests of
// varying size, as they arrive in production, across many log chunks.
func TestManyAppendsKeepOrder(t *testing.T) {
	b := newBuffer(t, 0)
	g := mustAcquire(t, b, "g")
	defer b.Release(g)
	var want []string
	for req := range 60 {
		var bt Batch
		bt.StartTrace(id(7))
		for i := range 1 + req%7 {
			raw := fmt.Sprintf("req%d-span%d-%s", req, i, bytes.Repeat([]byte{'x'}, req*13))
			want = append(want, raw)
			bt.AddSpan(Span{Group: g, Raw: []byte(raw)})
		}
		if _, err := b.Append(&bt, int64(req)); err != nil {
			t.Fatal(err)
		}
	}
	tr := b.TakeAll(nil)[0]
	if len(tr.more) < 5 {
		t.Fatalf("only %d chunks: the test no longer exercises chunking", 1+len(tr.more))
	}
	var got []string
	for _, raw := range tr.Spans() {
		got = append(got, string(raw))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("spans out of order or lost across chunks:\n got %d spans\nwant %d spans", len(got), len(want))
	}
	if int(tr.SpanCount) != len(want) {
		t.Fatalf("SpanCount %d, want %d", tr.SpanCount, len(want))
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{MemoryLimit: 0, Shards: 64}, {MemoryLimit: 1, Shards: 3}, {MemoryLimit: 1, Shards: 0}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want error", c)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	_ = rand.Int
}

// TestTraceLimits: the append that takes a trace to MaxTraceSpans or
// MaxTraceBytes makes it due at once, marked Limited; other traces keep
// their time.
func TestTraceLimits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   func(*Config)
		hitAt int // the request (of 4 spans, 32 bytes) that reaches the limit
	}{
		{"spans", func(c *Config) { c.MaxTraceSpans = 10 }, 2},
		{"bytes", func(c *Config) { c.MaxTraceBytes = 60 }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.cfg(&cfg)
			b, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := appendTrace(t, b, id(2), "res", 1, false, 100); err != nil {
				t.Fatal(err)
			}
			for r := 0; r <= tc.hitAt; r++ {
				if err := appendTrace(t, b, id(1), "res", 4, false, int64(101+r)); err != nil {
					t.Fatal(err)
				}
				due := b.TakeReady(0, 0, nil) // nothing is due by time
				if r < tc.hitAt && len(due) != 0 {
					t.Fatalf("after %d spans %d traces due, want none", 4*(r+1), len(due))
				}
				if r == tc.hitAt && (len(due) != 1 || due[0].ID != id(1) || !due[0].Limited || int(due[0].SpanCount) != 4*(r+1)) {
					t.Fatalf("after %d spans: %d due, want trace 1 with all its spans, limited", 4*(r+1), len(due))
				}
			}
			if rest := b.TakeAll(nil); len(rest) != 1 || rest[0].ID != id(2) || rest[0].Limited {
				t.Fatalf("left %d traces, want trace 2 only, not limited", len(rest))
			}
		})
	}
}

// BenchmarkAppendManyGroups appends one span at a time to a trace whose
// spans each come under a resource of their own (the shape of a trace with
// 100,000 resources): the cost per span must not grow with the trace's
// groups (it was a linear scan, 8x slower at 35,000 groups).
func BenchmarkAppendManyGroups(b *testing.B) {
	for _, groups := range []int{10, 1000, 35000} {
		b.Run(fmt.Sprint(groups), func(b *testing.B) {
			buf := newBuffer(b, 0)
			defer buf.Close()
			gs := make([]*Group, groups)
			for i := range gs {
				gs[i] = mustAcquire(b, buf, fmt.Sprint("resource-", i))
			}
			raw := []byte("a-span-of-thirty-bytes-or-so..")
			var bt Batch
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bt.Reset()
				bt.StartTrace(id(1))
				bt.AddSpan(Span{Group: gs[i%groups], Raw: raw})
				if _, err := buf.Append(&bt, 1); err != nil {
					b.Fatal(err)
				}
				if i++; i%(4*groups) == 0 { // keep the trace to a bounded size
					buf.TakeAll(nil)
				}
			}
		})
	}
}

// TestAccountingStaysWithinLimit: whatever concurrent appends do (new
// traces, many groups per trace, size-class rounding), the accounted
// memory never passes the limit: a reservation is an upper bound of what
// an append adds, and interning is refused past the limit.
func TestAccountingStaysWithinLimit(t *testing.T) {
	const limit = 256 << 10
	b := newBuffer(t, limit)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var over atomic.Int64
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if used := b.used.Load(); used > limit {
				over.Store(used)
			}
		}
	})
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range 2000 {
				var bt Batch
				var groups []*Group
				for tr := range 1 + rng.IntN(4) {
					bt.StartTrace(id(w*10_000 + rng.IntN(200) + tr))
					for s := range 1 + rng.IntN(30) {
						g, err := b.Acquire(testGroup(fmt.Sprintf("res-%d/scope-%d", rng.IntN(40), s%12)))
						if err != nil {
							continue // full: refused, as it must be
						}
						groups = append(groups, g)
						bt.AddSpan(Span{Group: g, Raw: make([]byte, 1+rng.IntN(700))})
					}
				}
				b.Append(&bt, int64(i))
				for _, g := range groups {
					b.Release(g)
				}
				if i%50 == 0 {
					b.TakeOldest(20, nil)
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	if o := over.Load(); o != 0 {
		t.Fatalf("accounted %d bytes, over the %d limit", o, limit)
	}
	b.TakeAll(nil)
	if s := b.Stats(); s.Bytes != 0 {
		t.Fatalf("accounted %d bytes with nothing buffered", s.Bytes)
	}
}
