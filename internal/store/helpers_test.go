package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/store"
)

// testConfig is the default configuration on a fresh directory, with
// small memory and short intervals so background work is seen quickly.
func testConfig(t testing.TB) store.Config {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.MemTableSize = 4 << 20
	cfg.IndexCacheSize = 4 << 20
	cfg.BlockCacheSize = 4 << 20
	cfg.DeleteInterval = 10 * time.Millisecond
	cfg.DiskCheckInterval = 50 * time.Millisecond
	return cfg
}

// open opens a store that the test closes when it ends (if it has not
// closed it itself: Close is idempotent).
func open(t testing.TB, cfg store.Config) *store.Store {
	t.Helper()
	s, err := store.Open(cfg, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustPut(t testing.TB, s *store.Store, sync bool, entries ...store.Entry) {
	t.Helper()
	if err := s.Put(entries, sync); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

// wantValue fails unless key holds exactly want.
func wantValue(t testing.TB, s *store.Store, key, want []byte) {
	t.Helper()
	got, err := s.Get(key, nil)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes, want %d bytes (equal: false)", key, len(got), len(want))
	}
}

func wantNotFound(t testing.TB, s *store.Store, key []byte) {
	t.Helper()
	if v, err := s.Get(key, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %d bytes, %v; want ErrNotFound", key, len(v), err)
	}
}

// eventually polls cond until it holds or the deadline passes. The
// deadline is generous: it only bounds a failing test, it asserts no
// timing.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not true after %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// value is n bytes that depend on seed, so a value read back under the
// wrong key does not compare equal.
func value(seed, n int) []byte {
	v := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range v {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		v[i] = byte(x)
	}
	return v
}

func key(format string, a ...any) []byte { return fmt.Appendf(nil, format, a...) }
