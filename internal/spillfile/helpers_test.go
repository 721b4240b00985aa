package spillfile_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/internal/spillfile"
)

// The store is the buffer's Disk.
var _ buffer.Disk = (*spillfile.Store)(nil)

// testConfig: 1 MiB files on a fresh directory, a budget no test reaches
// unless it lowers it, and no compaction unless the test asks for it.
func testConfig(t testing.TB) spillfile.Config {
	t.Helper()
	cfg := spillfile.DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.FileSize = 1 << 20
	cfg.DiskLimit = 1 << 30
	cfg.CompactInterval = time.Hour
	return cfg
}

// open opens a store that the test closes when it ends, if it has not
// itself (Close is idempotent).
func open(t testing.TB, cfg spillfile.Config) *spillfile.Store {
	t.Helper()
	s, err := spillfile.Open(cfg, nil)
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

// key is a spill key (29 bytes: prefix, trace ID, seq, part) for i.
func key(i int) []byte {
	k := make([]byte, 0, 29)
	k = append(k, 's')
	k = binary.BigEndian.AppendUint64(k, uint64(i)*0x9e3779b97f4a7c15)
	k = binary.BigEndian.AppendUint64(k, uint64(i))
	k = binary.BigEndian.AppendUint64(k, 7)
	return binary.BigEndian.AppendUint32(k, uint32(i))
}

// value is size bytes that depend on seed, so a value read from the wrong
// place shows.
func value(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	v := make([]byte, size)
	for i := range v {
		v[i] = byte(r.Uint32())
	}
	return v
}

func mustWrite(t testing.TB, s *spillfile.Store, keys, values [][]byte) {
	t.Helper()
	if err := s.Write(keys, values, 0, false); err != nil {
		t.Fatalf("Write of %d values: %v", len(keys), err)
	}
}

// wantValue fails unless key holds exactly want.
func wantValue(t testing.TB, s *spillfile.Store, key, want []byte) {
	t.Helper()
	got, err := s.Get(key, nil)
	if err != nil {
		t.Fatalf("Get(%x): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%x) = %d bytes, want %d bytes (equal: false)", key, len(got), len(want))
	}
}

func wantNotFound(t testing.TB, s *spillfile.Store, key []byte) {
	t.Helper()
	if v, err := s.Get(key, nil); !errors.Is(err, spillfile.ErrNotFound) {
		t.Fatalf("Get(%x) = %d bytes, %v; want ErrNotFound", key, len(v), err)
	}
}

// spillFiles returns the names of the spill files in dir, sorted, and
// their total size.
func spillFiles(t testing.TB, dir string) ([]string, int64) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var size int64
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".spill") {
			names = append(names, e.Name())
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			size += info.Size()
		}
	}
	slices.Sort(names)
	return names, size
}

func exists(t testing.TB, dir, name string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(dir, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// checkDisk fails unless the store's figures match the directory.
func checkDisk(t testing.TB, s *spillfile.Store, dir string) {
	t.Helper()
	if msg := diskMismatch(t, s, dir); msg != "" {
		t.Fatal(msg)
	}
}

// diskMismatch says how the store's figures differ from the directory, or
// returns "".
func diskMismatch(t testing.TB, s *spillfile.Store, dir string) string {
	t.Helper()
	names, size := spillFiles(t, dir)
	st := s.Stats()
	if st.Files != len(names) || st.DiskBytes != size || s.OwnBytes() != size {
		return fmt.Sprintf("Stats says %d files of %d bytes (OwnBytes %d); the directory holds %d of %d: %v", st.Files, st.DiskBytes, s.OwnBytes(), len(names), size, names)
	}
	return ""
}

// writeOneByOne writes values one per Write and returns, for each, the
// file it went to (the files created so far, less one: nothing is removed
// while it runs).
func writeOneByOne(t testing.TB, s *spillfile.Store, keys, values [][]byte) []int {
	t.Helper()
	fileOf := make([]int, len(keys))
	for i := range keys {
		mustWrite(t, s, keys[i:i+1], values[i:i+1])
		fileOf[i] = s.Stats().Files - 1
	}
	return fileOf
}

// eventually polls cond until it holds or 20 s pass. The deadline only
// bounds a failing test.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 20s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recordLen is the size of a record in a file: a 6-byte header, the key,
// the value (LiveBytes counts them).
func recordLen(k, v []byte) int64 { return 6 + int64(len(k)) + int64(len(v)) }
