package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/store"
)

// TestDiskLimit fills a store at the smallest disk limit with 256 KiB
// values (value log) until Put refuses. While full, reads and deletes
// still work and Put keeps refusing.
func TestDiskLimit(t *testing.T) {
	const valueSize = 256 << 10
	cfg := testConfig(t)
	cfg.DiskLimit = 64 << 20 // the minimum
	cfg.DiskCheckInterval = 20 * time.Millisecond
	s := open(t, cfg)
	if s.Full() {
		t.Fatalf("new store is full: %+v", s.Stats())
	}

	v := value(1, valueSize)
	var err error
	n := 0
	// Bounded: 1000 values are 250 MiB, four times the limit. Past the
	// limit, wait for a measurement after each Put, so a slow measurement
	// cannot make the loop run out.
	for ; n < 1000; n++ {
		err = s.Put([]store.Entry{{Key: key("big/%04d", n), Value: v}}, false)
		if err != nil {
			break
		}
		if int64(n+1)*valueSize > cfg.DiskLimit {
			time.Sleep(cfg.DiskCheckInterval)
		}
	}
	st := s.Stats()
	t.Logf("refused after %d puts (%d MiB): %v; disk %d MiB", n, n*valueSize>>20, err, st.DiskBytes>>20)
	if !errors.Is(err, store.ErrDiskFull) {
		t.Fatalf("after %d puts of %d bytes: %v, want ErrDiskFull", n, valueSize, err)
	}
	// What it took counts: the data written is at least close to the limit.
	if int64(n)*valueSize < cfg.DiskLimit/2 {
		t.Errorf("refused after only %d MiB of values, limit %d MiB", n*valueSize>>20, cfg.DiskLimit>>20)
	}
	if !s.Full() || st.DiskBytes < cfg.DiskLimit || st.DiskLimit != cfg.DiskLimit || st.RefusedFull == 0 {
		t.Fatalf("after ErrDiskFull: Full()=%v, Stats()=%+v", s.Full(), st)
	}
	// Refused again, counted again; a small Put too.
	if err := s.Put([]store.Entry{{Key: []byte("small"), Value: []byte("v")}}, true); !errors.Is(err, store.ErrDiskFull) {
		t.Fatalf("second Put while full: %v", err)
	}
	if got := s.Stats().RefusedFull; got != st.RefusedFull+1 {
		t.Fatalf("RefusedFull = %d, want %d", got, st.RefusedFull+1)
	}
	// Reads and deletes go on.
	wantValue(t, s, key("big/%04d", 0), v)
	wantValue(t, s, key("big/%04d", n-1), v)
	for i := range n {
		s.Delete(key("big/%04d", i))
	}
	eventually(t, 10*time.Second, "deletes committed while full", func() bool {
		return s.Stats().Deletes == int64(n)
	})
	wantNotFound(t, s, key("big/%04d", 0))
	wantNotFound(t, s, key("big/%04d", n-1))
	// The space comes back: the store flushes its memtables when nearly
	// full after deletes, so compaction and value-log GC can reclaim.
	eventually(t, 30*time.Second, "the store no longer full after deleting everything", func() bool {
		return !s.Full()
	})
	st = s.Stats()
	t.Logf("after deletes: disk %d MiB, %d flushes, %d GC rewrites", st.DiskBytes>>20, st.Flushes, st.GCRewrites)
	if st.Flushes == 0 {
		t.Errorf("space came back without a memtable flush: %+v", st)
	}
	if err := s.Put([]store.Entry{{Key: []byte("small"), Value: []byte("v")}}, true); err != nil {
		t.Fatalf("Put after space came back: %v", err)
	}
}
