package buffer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/store"
)

// openStore opens a real store in a temp dir, closed when the test ends.
func openStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Dir = dir
	cfg.MemTableSize, cfg.IndexCacheSize = 4<<20, 4<<20
	cfg.DeleteInterval = 10 * time.Millisecond
	st, err := store.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// spanBytes is span i of trace tr: the two numbers, then padding.
func spanBytes(tr, i int) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(tr))
	b = binary.BigEndian.AppendUint32(b, uint32(i))
	return append(b, bytes.Repeat([]byte{byte(i)}, 200+i%50)...)
}

// checkSpans fails unless t holds spans 0..n-1 of trace tr, in order,
// under group key.
func checkSpans(tb testing.TB, t *Trace, tr, n int, key string) {
	tb.Helper()
	i := 0
	for g, raw := range t.Spans() {
		if groupName(g) != key || !bytes.Equal(raw, spanBytes(tr, i)) {
			tb.Fatalf("trace %d span %d: group %q, %d bytes %x..., want span %d", tr, i, groupName(g), len(raw), raw[:min(8, len(raw))], i)
		}
		i++
	}
	if i != n || int(t.SpanCount) != n {
		tb.Fatalf("trace %d: %d spans (SpanCount %d), want %d", tr, i, t.SpanCount, n)
	}
}

// Under a small memory limit, writers append traces in several requests
// while the spill loop moves the oldest traces' bytes to disk and a taker
// decides traces concurrently: every taken trace, loaded, holds exactly
// its spans in arrival order, and the memory accounting returns to zero.
func TestSpillKeepsEverySpan(t *testing.T) {
	st := openStore(t, t.TempDir())
	cfg := DefaultConfig()
	cfg.MemoryLimit, cfg.Disk = 2<<20, st
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	const writers, traces, requests, perRequest = 4, 300, 5, 8
	const key = "service.name=spill"
	var clock atomic.Int64 // a logical clock: request number
	var wg sync.WaitGroup
	var refused atomic.Int64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var bt Batch
			for r := range requests {
				for tr := w * traces; tr < (w+1)*traces; tr++ {
					g, err := b.Acquire(testGroup(key))
					for err == ErrFull { // interning counts against the limit too
						refused.Add(1)
						time.Sleep(time.Millisecond)
						g, err = b.Acquire(testGroup(key))
					}
					if err != nil {
						t.Error(err)
						return
					}
					bt.Reset()
					bt.StartTrace(id(tr))
					for i := r * perRequest; i < (r+1)*perRequest; i++ {
						bt.AddSpan(Span{Group: g, Raw: spanBytes(tr, i)})
					}
					for {
						if _, err := b.Append(&bt, clock.Add(1)); err == nil {
							break
						} else if err != ErrFull {
							t.Error(err)
							return
						}
						refused.Add(1)
						time.Sleep(time.Millisecond) // the spill loop catches up
					}
					b.Release(g)
				}
			}
		}()
	}
	// A taker: traces complete after all requests; take early ones too, to
	// race the spill loop, and check them after the writers are done.
	var taken []*Trace
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			taken = b.TakeReady(clock.Load()-int64(writers*traces*2), -1, taken)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	wg.Wait()
	<-done
	taken = b.TakeAll(taken)

	s := b.Stats()
	if s.SpillWritten == 0 || s.SpillParts == 0 {
		t.Fatalf("nothing spilled: %+v", s)
	}
	// Each trace was taken once or in several incarnations (the taker may
	// take a trace between its requests): join them by ID, in order.
	spans := map[[16]byte][][]byte{}
	for _, tr := range taken {
		if err := b.Load(tr); err != nil {
			t.Fatal(err)
		}
		for g, raw := range tr.Spans() {
			if groupName(g) != key {
				t.Fatalf("group %q", groupName(g))
			}
			spans[tr.ID] = append(spans[tr.ID], raw)
		}
		b.Forget(tr)
	}
	for tr := range writers * traces {
		got := spans[id(tr)]
		if len(got) != requests*perRequest {
			t.Fatalf("trace %d: %d spans, want %d", tr, len(got), requests*perRequest)
		}
		for i, raw := range got {
			if !bytes.Equal(raw, spanBytes(tr, i)) {
				t.Fatalf("trace %d span %d: wrong bytes %x...", tr, i, raw[:8])
			}
		}
	}
	if s = b.Stats(); s.Bytes != 0 || s.Traces != 0 || s.SpilledBytes != 0 || s.SpillLoaded != s.SpillWritten {
		t.Fatalf("after taking everything: %+v", s)
	}
	t.Logf("spilled %d KiB in %d parts, loaded %d KiB; %d appends refused and retried",
		s.SpillWritten>>10, s.SpillParts, s.SpillLoaded>>10, refused.Load())
}

// With WriteAhead, spans survive the process: a buffer that is dropped
// without deciding anything (a crash) leaves records from which a new
// buffer on the same directory recovers every trace with its arrival
// times and group keys; traces forgotten before the crash do not return.
func TestWriteAheadRecovers(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	cfg := DefaultConfig()
	cfg.Disk, cfg.WriteAhead = st, true
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"service.name=a", "service.name=b"}
	const traces, perRequest = 50, 3
	for r := range 2 {
		for tr := range traces {
			var bt Batch
			g := mustAcquire(t, b, keys[(tr+r)%2])
			if tr%10 == 0 && r == 0 {
				bt.StartTraceSeen(id(tr), 500, 0) // handed off: first seen earlier
			} else {
				bt.StartTrace(id(tr))
			}
			for i := r * perRequest; i < (r+1)*perRequest; i++ {
				bt.AddSpan(Span{Group: g, Raw: spanBytes(tr, i), Root: r == 1 && i == perRequest})
			}
			if _, err := b.Append(&bt, int64(1000+r*100+tr)); err != nil {
				t.Fatal(err)
			}
			b.Release(g)
		}
	}
	// Decide (forget) the first ten traces; crash with the rest buffered.
	forgotten := map[[16]byte]bool{}
	for _, tr := range b.TakeIf(func(x *[16]byte) bool { return x[15] < 10 && x[0] == 0 }, nil) {
		tr.Delivered(true)
		forgotten[tr.ID] = true
	}
	b.Close()
	st.Close() // commits the queued deletes, like the committer within 10ms would

	st2 := openStore(t, dir)
	cfg.Disk = st2
	b2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	got := map[[16]byte]Recovered{}
	corrupt, err := b2.Recover(func(r *Recovered) error {
		c := *r
		c.Spans = nil
		for _, s := range r.Spans {
			c.Spans = append(c.Spans, RecoveredSpan{Group: otlpwire.Group{Resource: bytes.Clone(s.Group.Resource), Scope: bytes.Clone(s.Group.Scope)}, Raw: bytes.Clone(s.Raw)})
		}
		c.Records = append([]uint64(nil), r.Records...)
		got[r.ID] = c
		return nil
	})
	if err != nil || corrupt != 0 {
		t.Fatalf("Recover: %v, %d corrupt records", err, corrupt)
	}
	if len(got) != traces-len(forgotten) || len(forgotten) != 10 {
		t.Fatalf("recovered %d traces, want %d (%d forgotten)", len(got), traces-len(forgotten), len(forgotten))
	}
	for tr := range traces {
		r, ok := got[id(tr)]
		if forgotten[id(tr)] {
			if ok {
				t.Fatalf("trace %d recovered after it was forgotten", tr)
			}
			continue
		}
		wantFirst := int64(1000 + tr)
		if tr%10 == 0 {
			wantFirst = 500
		}
		if r.FirstSeen != wantFirst || r.RootSeen != int64(1100+tr) || len(r.Records) != 2 {
			t.Errorf("trace %d: first seen %d, root seen %d, %d records; want %d, %d, 2", tr, r.FirstSeen, r.RootSeen, len(r.Records), wantFirst, 1100+tr)
		}
		if len(r.Spans) != 2*perRequest {
			t.Fatalf("trace %d: %d spans, want %d", tr, len(r.Spans), 2*perRequest)
		}
		for i, s := range r.Spans {
			if wantKey := keys[(tr+i/perRequest)%2]; groupName(s.Group) != wantKey || !bytes.Equal(s.Raw, spanBytes(tr, i)) {
				t.Fatalf("trace %d span %d: group %q, bytes %x...; want group %q", tr, i, groupName(s.Group), s.Raw[:8], wantKey)
			}
		}
	}
	// New records continue after the recovered ones.
	if err := appendTrace(t, b2, id(999), "service.name=a", 1, false, 5000); err != nil {
		t.Fatal(err)
	}
	tr := b2.TakeAll(nil)[0]
	for _, r := range got {
		for _, rec := range r.Records {
			if tr.wal[0] <= rec {
				t.Fatalf("new record %d not after recovered record %d", tr.wal[0], rec)
			}
		}
	}
}

// A buffer with a disk that never needs to spill does not keep spill-queue
// entries of the traces it has given up.
func TestSpillQueueDoesNotGrowWithoutSpilling(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Disk = openStore(t, t.TempDir())
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for round := range 20 {
		for tr := range 500 {
			if err := appendTrace(t, b, id(round*500+tr), "k", 2, false, int64(round)); err != nil {
				t.Fatal(err)
			}
		}
		b.TakeReady(int64(round), -1, nil)
	}
	queued := 0
	for i := range b.shards {
		queued += b.shards[i].spillQ.size + len(b.shards[i].spillQ.late)
	}
	if queued != 0 || b.Stats().SpillWritten != 0 {
		t.Fatalf("%d spill-queue entries left after every trace was taken (spilled %d bytes)", queued, b.Stats().SpillWritten)
	}
}

// TestWriteAheadManyGroups: one request of a trace whose every span has a
// resource of its own is logged (each resource once, past the short-list
// index) and recovered with every span under its own resource.
func TestWriteAheadManyGroups(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	cfg := DefaultConfig()
	cfg.Disk, cfg.WriteAhead = st, true
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	var bt Batch
	bt.StartTrace(id(1))
	for i := range n {
		key := fmt.Sprintf("resource-%d/scope-%d", i, i%3)
		g := mustAcquire(t, b, key)
		defer b.Release(g)
		bt.AddSpan(Span{Group: g, Raw: spanBytes(1, i)})
	}
	if _, err := b.Append(&bt, 1000); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	spans := 0
	corrupt, err := b2.Recover(func(r *Recovered) error {
		for i, s := range r.Spans {
			if want := fmt.Sprintf("resource-%d/scope-%d", i, i%3); groupName(s.Group) != want || !bytes.Equal(s.Raw, spanBytes(1, i)) {
				t.Fatalf("span %d: group %q, want %q", i, groupName(s.Group), want)
			}
			spans++
		}
		return nil
	})
	if err != nil || corrupt != 0 || spans != n {
		t.Fatalf("recovered %d spans (%d corrupt records, err %v), want %d", spans, corrupt, err, n)
	}
}
