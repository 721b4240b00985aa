package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/store"
)

// TestRoundTrip writes keys under two prefixes, with values on both sides
// of ValueThreshold (LSM tree and value log) and an empty one, and reads
// them back with Get and Scan.
func TestRoundTrip(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)

	want := map[string][]byte{}
	var entries []store.Entry
	// Inserted out of key order, so Scan's order is Badger's, not ours.
	for _, i := range []int{7, 3, 11, 0, 5, 9, 1} {
		for _, p := range []string{"a/", "b/"} {
			n := 100 * i
			if i == 9 {
				n = int(cfg.ValueThreshold) + 1000 // value log
			}
			k := key("%s%03d", p, i)
			v := value(len(want), n)
			want[string(k)] = v
			entries = append(entries, store.Entry{Key: k, Value: v})
		}
	}
	// Keys that share the first byte of the prefix but not the prefix.
	entries = append(entries, store.Entry{Key: []byte("a"), Value: []byte("x")}, store.Entry{Key: []byte("a0"), Value: []byte("y")})
	mustPut(t, s, false, entries...)

	for k, v := range want {
		wantValue(t, s, []byte(k), v)
	}
	// Get appends to dst.
	got, err := s.Get([]byte("a/003"), []byte("prefix:"))
	if err != nil || !bytes.Equal(got, append([]byte("prefix:"), want["a/003"]...)) {
		t.Fatalf("Get with dst: %q..., %v; want the value appended to dst", got[:min(len(got), 10)], err)
	}
	wantNotFound(t, s, []byte("a/999"))

	var keys []string
	err = s.Scan([]byte("a/"), func(k, v []byte) error {
		if !bytes.Equal(v, want[string(k)]) {
			t.Errorf("Scan: %q has the wrong value (%d bytes, want %d)", k, len(v), len(want[string(k)]))
		}
		keys = append(keys, string(k))
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	wantKeys := []string{"a/000", "a/001", "a/003", "a/005", "a/007", "a/009", "a/011"}
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("Scan(a/) keys = %q, want %q", keys, wantKeys)
	}

	// An error from fn stops the scan and is returned.
	stop := errors.New("stop")
	calls := 0
	err = s.Scan([]byte("b/"), func(k, v []byte) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Scan with failing fn: %d calls, %v; want 1 call, %v", calls, err, stop)
	}

	// Delete is asynchronous: within a few DeleteIntervals.
	s.Delete([]byte("a/003"), []byte("b/009"))
	eventually(t, 5*time.Second, "deleted keys gone", func() bool {
		_, err1 := s.Get([]byte("a/003"), nil)
		_, err2 := s.Get([]byte("b/009"), nil)
		return errors.Is(err1, store.ErrNotFound) && errors.Is(err2, store.ErrNotFound)
	})
	wantValue(t, s, []byte("a/005"), want["a/005"])
	wantValue(t, s, []byte("b/003"), want["b/003"])
	keys = keys[:0]
	if err := s.Scan([]byte("a/"), func(k, _ []byte) error { keys = append(keys, string(k)); return nil }); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(keys, "a/003") || len(keys) != len(wantKeys)-1 {
		t.Fatalf("Scan after delete = %q", keys)
	}
	if st := s.Stats(); st.Deletes != 2 || st.Puts != int64(len(entries)) {
		t.Fatalf("Stats: %d deletes, %d puts; want 2, %d", st.Deletes, st.Puts, len(entries))
	}
}

// TestDeleteBeforeClose: deletes still queued when Close is called are
// committed by Close. The DeleteInterval is so long that only Close can
// commit them.
func TestDeleteBeforeClose(t *testing.T) {
	cfg := testConfig(t)
	cfg.DeleteInterval = time.Hour
	s := open(t, cfg)
	for i := range 10 {
		mustPut(t, s, false, store.Entry{Key: key("k%d", i), Value: value(i, 500)})
	}
	for i := range 5 {
		s.Delete(key("k%d", i))
	}
	wantValue(t, s, key("k0"), value(0, 500)) // still queued
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, cfg)
	for i := range 5 {
		wantNotFound(t, s, key("k%d", i))
	}
	for i := 5; i < 10; i++ {
		wantValue(t, s, key("k%d", i), value(i, 500))
	}
}

func TestDropPrefix(t *testing.T) {
	s := open(t, testConfig(t))
	for i := range 20 {
		mustPut(t, s, false,
			store.Entry{Key: key("drop/%d", i), Value: value(i, 1000)},
			store.Entry{Key: key("keep/%d", i), Value: value(i, 1000)})
	}
	if err := s.DropPrefix([]byte("drop/")); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.Scan([]byte("drop/"), func(_, _ []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("Scan(drop/) after DropPrefix: %d keys, want 0", n)
	}
	wantNotFound(t, s, key("drop/3"))
	for i := range 20 {
		wantValue(t, s, key("keep/%d", i), value(i, 1000))
	}
}

// TestReopen: what Put returned for is there after Close and Open of the
// same directory, whether it asked for sync or not (Close flushes).
func TestReopen(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	for i := range 100 {
		// Every 10th value goes to the value log.
		n := 2000
		if i%10 == 0 {
			n = int(cfg.ValueThreshold) * 2
		}
		mustPut(t, s, i%2 == 0, store.Entry{Key: key("r/%03d", i), Value: value(i, n)})
	}
	if st := s.Stats(); st.Syncs != 50 {
		t.Errorf("Stats().Syncs = %d after 50 sequential sync puts, want 50", st.Syncs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, cfg)
	for i := range 100 {
		n := 2000
		if i%10 == 0 {
			n = int(cfg.ValueThreshold) * 2
		}
		wantValue(t, s, key("r/%03d", i), value(i, n))
	}
}

// TestTTL: an entry with a TTL disappears by itself (Badger counts expiry
// in whole seconds), one without stays.
func TestTTL(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	mustPut(t, s, true,
		store.Entry{Key: []byte("ttl/short"), Value: []byte("v"), TTL: time.Second},
		store.Entry{Key: []byte("ttl/long"), Value: []byte("v"), TTL: time.Hour},
		store.Entry{Key: []byte("ttl/none"), Value: []byte("v")})
	wantValue(t, s, []byte("ttl/short"), []byte("v"))
	eventually(t, 10*time.Second, "entry with a 1s TTL expired", func() bool {
		_, err := s.Get([]byte("ttl/short"), nil)
		return errors.Is(err, store.ErrNotFound)
	})
	var keys []string
	if err := s.Scan([]byte("ttl/"), func(k, _ []byte) error { keys = append(keys, string(k)); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"ttl/long", "ttl/none"}) {
		t.Fatalf("Scan after expiry = %q, want [ttl/long ttl/none]", keys)
	}
	// Expired stays expired across a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, cfg)
	wantNotFound(t, s, []byte("ttl/short"))
	wantValue(t, s, []byte("ttl/long"), []byte("v"))
}

// TestGroupCommit: concurrent Put(sync=true) calls share fsyncs, and each
// one's data is there once it returns.
func TestGroupCommit(t *testing.T) {
	const workers, perWorker = 32, 50
	s := open(t, testConfig(t))
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				k := key("g/%02d/%02d", w, i)
				if err := s.Put([]store.Entry{{Key: k, Value: value(w*perWorker+i, 300)}}, true); err != nil {
					errs <- fmt.Errorf("Put %s: %w", k, err)
					return
				}
				// Returned, so committed: readable now, not eventually.
				if got, err := s.Get(k, nil); err != nil || !bytes.Equal(got, value(w*perWorker+i, 300)) {
					errs <- fmt.Errorf("Get %s right after Put: %d bytes, %v", k, len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range workers {
		for i := range perWorker {
			wantValue(t, s, key("g/%02d/%02d", w, i), value(w*perWorker+i, 300))
		}
	}
	st := s.Stats()
	t.Logf("%d sync puts: %d syncs, %d commit groups", workers*perWorker, st.Syncs, st.CommitGroups)
	if st.Puts != workers*perWorker {
		t.Errorf("Stats().Puts = %d, want %d", st.Puts, workers*perWorker)
	}
	if st.Syncs >= workers*perWorker {
		t.Errorf("Stats().Syncs = %d for %d concurrent sync puts: no sync was shared", st.Syncs, workers*perWorker)
	}
	if st.Syncs != st.CommitGroups {
		t.Errorf("Stats(): %d syncs but %d commit groups; every group asked for sync", st.Syncs, st.CommitGroups)
	}
}

// TestNoSyncNoFsync: Put(sync=false) commits without an fsync.
func TestNoSyncNoFsync(t *testing.T) {
	s := open(t, testConfig(t))
	for i := range 20 {
		mustPut(t, s, false, store.Entry{Key: key("n%d", i), Value: []byte("v")})
	}
	if err := s.Put(nil, true); err != nil {
		t.Fatalf("Put(nil): %v", err)
	}
	if st := s.Stats(); st.Syncs != 0 || st.Puts != 20 || st.CommitGroups != 20 {
		t.Fatalf("Stats() = %+v; want 0 syncs, 20 puts in 20 groups", st)
	}
}

// TestBadEntryFailsOnlyItsPut: an entry Badger refuses (empty key) fails
// the Put that carries it and no other, even when they share a commit
// group, and writes nothing of its Put.
func TestBadEntryFailsOnlyItsPut(t *testing.T) {
	s := open(t, testConfig(t))
	if err := s.Put([]store.Entry{{Key: []byte("ok"), Value: []byte("v")}, {Key: nil, Value: []byte("v")}}, false); err == nil {
		t.Fatal("Put with an empty key: no error")
	}
	wantNotFound(t, s, []byte("ok"))

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 100 {
				k := key("good/%d/%d", w, i)
				bad := w%2 == 0 // half the writers send bad entries
				e := []store.Entry{{Key: k, Value: []byte("v")}}
				if bad {
					e = append(e, store.Entry{Value: []byte("bad")})
				}
				err := s.Put(e, false)
				if bad != (err != nil) {
					errs <- fmt.Errorf("writer %d put %d (bad entry: %v): %v", w, i, bad, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := 1; w < 8; w += 2 {
		for i := range 100 {
			wantValue(t, s, key("good/%d/%d", w, i), []byte("v"))
		}
	}
}

// TestClose: Close is idempotent and later calls fail with ErrClosed
// rather than panicking in Badger.
func TestClose(t *testing.T) {
	s := open(t, testConfig(t))
	mustPut(t, s, true, store.Entry{Key: []byte("k"), Value: []byte("v")})
	for range 3 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if err := s.Put([]store.Entry{{Key: []byte("k2"), Value: []byte("v")}}, true); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Put after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Get([]byte("k"), nil); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get after Close: %v, want ErrClosed", err)
	}
	if err := s.Scan(nil, func(_, _ []byte) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Scan after Close: %v, want ErrClosed", err)
	}
	if err := s.DropPrefix([]byte("k")); !errors.Is(err, store.ErrClosed) {
		t.Errorf("DropPrefix after Close: %v, want ErrClosed", err)
	}
	s.Delete([]byte("k")) // no panic, no effect
	_ = s.Stats()
}

// TestCloseDuringUse: calls racing with Close either complete or fail
// with ErrClosed; none sees Badger's own closed error or a panic.
func TestCloseDuringUse(t *testing.T) {
	for round := range 5 {
		s := open(t, testConfig(t))
		mustPut(t, s, false, store.Entry{Key: []byte("k"), Value: value(0, 3000)})
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		start := make(chan struct{})
		for w := range 6 {
			wg.Go(func() {
				<-start
				for i := 0; ; i++ {
					var err error
					switch w % 3 {
					case 0:
						err = s.Put([]store.Entry{{Key: key("p/%d/%d", w, i), Value: []byte("v")}}, i%4 == 0)
					case 1:
						_, err = s.Get([]byte("k"), nil)
					case 2:
						err = s.Scan([]byte("p/"), func(_, _ []byte) error { return nil })
					}
					if errors.Is(err, store.ErrClosed) {
						return
					}
					if err != nil {
						errs <- fmt.Errorf("round %d worker %d: %w", round, w, err)
						return
					}
				}
			})
		}
		close(start)
		time.Sleep(20 * time.Millisecond) // let them get going; not an assertion
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
}
