package buffer

import (
	"bytes"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
