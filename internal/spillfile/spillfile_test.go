package spillfile_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/spillfile"
)

// TestRoundTrip writes values of varied sizes (empty, small, larger than
// the write buffer, larger than a file) under keys of varied lengths across
// several files, reads each back exactly, overwrites and deletes some.
func TestRoundTrip(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	r := rand.New(rand.NewPCG(1, 2))
	const n = 600
	keys := make([][]byte, n)
	values := make([][]byte, n)
	var live, size int64
	for i := range n {
		keys[i] = key(i)
		switch i % 50 {
		case 1:
			keys[i] = []byte{byte(i)} // short
		case 2:
			keys[i] = append(bytes.Repeat([]byte{'L'}, 40), byte(i)) // past the inline length
		case 3:
			keys[i] = append(key(i), 'x', 'y') // 31 bytes: the longest inline
		}
		sz := r.IntN(20 << 10)
		switch i % 100 {
		case 5:
			sz = 0
		case 6:
			sz = 300 << 10 // written from the caller's slice
		case 7:
			sz = 1<<20 + 12345 // a file and then some
		}
		values[i] = value(uint64(i), sz)
		live += recordLen(keys[i], values[i])
		size += int64(sz)
	}
	keys = append(keys, []byte{}) // the empty key is a key
	values = append(values, []byte("empty key's value"))
	live += recordLen(nil, values[n])
	size += int64(len(values[n]))
	for i := 0; i < len(keys); {
		j := min(len(keys), i+1+r.IntN(64))
		mustWrite(t, s, keys[i:j], values[i:j])
		i = j
	}

	st := s.Stats()
	if st.Files < 3 || st.Writes != int64(len(keys)) || st.WriteBytes != size || st.LiveBytes != live {
		t.Fatalf("after writing %d values (%d bytes, %d live): %+v", len(keys), size, live, st)
	}
	checkDisk(t, s, cfg.Dir)
	for i := range keys {
		wantValue(t, s, keys[i], values[i])
	}
	// Get appends to dst.
	got, err := s.Get(keys[10], []byte("prefix"))
	if err != nil || !bytes.Equal(got, append([]byte("prefix"), values[10]...)) {
		t.Fatalf("Get with a prefix = %d bytes, %v", len(got), err)
	}
	if st := s.Stats(); st.Reads != int64(len(keys))+1 {
		t.Fatalf("Reads = %d, want %d", st.Reads, len(keys)+1)
	}

	// Overwrite: the new value wins, the old record is garbage.
	nv := value(999, 777)
	mustWrite(t, s, keys[:1], [][]byte{nv})
	wantValue(t, s, keys[0], nv)
	live += recordLen(keys[0], nv) - recordLen(keys[0], values[0])
	values[0] = nv
	if st := s.Stats(); st.LiveBytes != live {
		t.Fatalf("after an overwrite LiveBytes = %d, want %d", st.LiveBytes, live)
	}
	// Two values under one key in one Write: the last wins.
	mustWrite(t, s, [][]byte{keys[1], keys[1]}, [][]byte{[]byte("first"), []byte("second")})
	wantValue(t, s, keys[1], []byte("second"))
	live += recordLen(keys[1], []byte("second")) - recordLen(keys[1], values[1])
	values[1] = []byte("second")

	// Delete every other key; absent keys are ignored.
	var del [][]byte
	for i := 0; i < len(keys); i += 2 {
		del = append(del, keys[i])
		live -= recordLen(keys[i], values[i])
	}
	s.Delete(append(del, []byte("never written"))...)
	for i := range keys {
		if i%2 == 0 {
			wantNotFound(t, s, keys[i])
		} else {
			wantValue(t, s, keys[i], values[i])
		}
	}
	st = s.Stats()
	if st.Deletes != int64(len(del)) || st.LiveBytes != live {
		t.Fatalf("after deleting %d keys (%d bytes live): %+v", len(del), live, st)
	}
	checkDisk(t, s, cfg.Dir)
}

// TestFilesRemoved: a sealed file goes with its last value, without
// compaction; once everything is deleted only the head file is left.
func TestFilesRemoved(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	const n = 75 // 64 KiB each: 5 files, the last not full
	keys := make([][]byte, n)
	values := make([][]byte, n)
	for i := range n {
		keys[i], values[i] = key(i), value(uint64(i), 64<<10)
	}
	fileOf := writeOneByOne(t, s, keys, values)
	if fileOf[n-1] < 3 {
		t.Fatalf("%d values of 64 KiB went to %d files of 1 MiB", n, fileOf[n-1]+1)
	}
	checkDisk(t, s, cfg.Dir)

	// All of file 0 but its last value: it stays.
	last := -1
	for i := range n {
		if fileOf[i] == 0 {
			last = i
		}
	}
	for i := range last {
		s.Delete(keys[i])
	}
	if !exists(t, cfg.Dir, "00000000.spill") {
		t.Fatal("file 0 removed while it holds a live value")
	}
	wantValue(t, s, keys[last], values[last])
	before := s.Stats()
	s.Delete(keys[last])
	if exists(t, cfg.Dir, "00000000.spill") {
		t.Fatal("file 0 still there once all its values are deleted")
	}
	if st := s.Stats(); st.Files != before.Files-1 || st.DiskBytes >= before.DiskBytes {
		t.Fatalf("after file 0 went: %+v, before %+v", st, before)
	}
	checkDisk(t, s, cfg.Dir)

	s.Delete(keys...)
	names, _ := spillFiles(t, cfg.Dir)
	if want := fmt.Sprintf("%08x.spill", fileOf[n-1]); len(names) != 1 || names[0] != want {
		t.Fatalf("with nothing stored the directory holds %v, want only the head %s", names, want)
	}
	if st := s.Stats(); st.LiveBytes != 0 || st.Files != 1 || st.Compactions != 0 {
		t.Fatalf("with nothing stored: %+v", st)
	}
	checkDisk(t, s, cfg.Dir)
	for i := range keys {
		wantNotFound(t, s, keys[i])
	}
}

// TestCompaction: a file left with a few long-lived values is compacted:
// they move to the head, the file goes, and files mostly live stay.
func TestCompaction(t *testing.T) {
	cfg := testConfig(t)
	cfg.CompactInterval = 10 * time.Millisecond
	s := open(t, cfg)
	const n = 300 // 16 KiB each: 5 files
	keys := make([][]byte, n)
	values := make([][]byte, n)
	for i := range n {
		keys[i], values[i] = key(i), value(uint64(i), 16<<10)
	}
	fileOf := writeOneByOne(t, s, keys, values)
	if fileOf[n-1] < 3 {
		t.Fatalf("%d values went to %d files", n, fileOf[n-1]+1)
	}
	var first []int
	for i := range n {
		if fileOf[i] == 0 {
			first = append(first, i)
		}
	}
	keep := []int{first[0], first[len(first)/2], first[len(first)-1]}
	var keptBytes int64
	for _, i := range first {
		if slices.Contains(keep, i) {
			keptBytes += int64(len(values[i]))
			continue
		}
		s.Delete(keys[i])
	}

	eventually(t, "file 0 is not compacted away", func() bool { return !exists(t, cfg.Dir, "00000000.spill") })
	for _, i := range keep {
		wantValue(t, s, keys[i], values[i])
	}
	for i := range n {
		if fileOf[i] != 0 {
			wantValue(t, s, keys[i], values[i])
		}
	}
	st := s.Stats()
	if st.Compactions < 1 || st.CompactedBytes < keptBytes {
		t.Fatalf("after compaction of %d kept bytes: %+v", keptBytes, st)
	}
	// The files in full use are left alone.
	for f := 1; f < fileOf[n-1]; f++ {
		if !exists(t, cfg.Dir, fmt.Sprintf("%08x.spill", f)) {
			t.Fatalf("file %d, all live, was removed", f)
		}
	}
	// The moved values are deleted like any other.
	for _, i := range keep {
		s.Delete(keys[i])
		wantNotFound(t, s, keys[i])
	}
	checkDisk(t, s, cfg.Dir)
}

// TestDiskLimit: Write refuses with a retryable ErrFull once the files and
// the others' bytes reach the limit, and takes writes again once deletes
// free files.
func TestDiskLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.DiskLimit = 4 << 20
	var other atomic.Int64
	cfg.OtherBytes = other.Load
	s := open(t, cfg)
	const size = 64 << 10
	var keys [][]byte
	var err error
	for i := range 1000 { // bounded: 64 MiB, sixteen times the limit
		k, v := key(i), value(uint64(i), size)
		if err = s.Write([][]byte{k}, [][]byte{v}, 0, false); err != nil {
			break
		}
		keys = append(keys, k)
	}
	if !errors.Is(err, spillfile.ErrFull) {
		t.Fatalf("after %d writes of %d bytes: %v, want ErrFull", len(keys), size, err)
	}
	var ra interface{ RetryAfter() time.Duration }
	if !errors.As(err, &ra) || ra.RetryAfter() <= 0 {
		t.Fatalf("ErrFull has no positive RetryAfter: %v", err)
	}
	st := s.Stats()
	if !s.Full() || st.RefusedFull != 1 || st.DiskBytes < cfg.DiskLimit || st.DiskBytes > cfg.DiskLimit+size+64 {
		t.Fatalf("refused after %d writes: Full()=%v, %+v", len(keys), s.Full(), st)
	}
	// Reads go on while full.
	wantValue(t, s, keys[0], value(0, size))

	s.Delete(keys...)
	if s.Full() {
		t.Fatalf("full with everything deleted: %+v", s.Stats())
	}
	mustWrite(t, s, [][]byte{key(0)}, [][]byte{value(0, size)})
	wantValue(t, s, key(0), value(0, size))

	// Others' bytes count against the limit too.
	other.Store(cfg.DiskLimit)
	if err := s.Write([][]byte{key(1)}, [][]byte{[]byte("v")}, 0, false); !errors.Is(err, spillfile.ErrFull) || !s.Full() {
		t.Fatalf("Write with the others at the limit: %v, Full()=%v", err, s.Full())
	}
	other.Store(0)
	mustWrite(t, s, [][]byte{key(1)}, [][]byte{[]byte("v")})
	if st := s.Stats(); st.RefusedFull != 2 {
		t.Fatalf("RefusedFull = %d, want 2", st.RefusedFull)
	}
}

// TestOpenClearsEarlierRun: spill files left in Dir (the index that made
// sense of them died with their process) are removed at Open; other
// entries are left alone.
func TestOpenClearsEarlierRun(t *testing.T) {
	cfg := testConfig(t)
	cfg.Dir = filepath.Join(t.TempDir(), "spill")
	// An earlier run that ended without Close: copy its files aside
	// before Close removes them, and put them back.
	first := open(t, cfg)
	// One Write goes to one file, sealed once past FileSize: two files.
	mustWrite(t, first, [][]byte{key(1)}, [][]byte{value(1, 1<<20)})
	mustWrite(t, first, [][]byte{key(2)}, [][]byte{value(2, 1<<20)})
	saved := map[string][]byte{}
	names, _ := spillFiles(t, cfg.Dir)
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(cfg.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		saved[name] = b
	}
	if len(saved) != 2 {
		t.Fatalf("the first run left %v, want 2 files", names)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	for name, b := range saved {
		if err := os.WriteFile(filepath.Join(cfg.Dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "notes.txt"), []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(cfg.Dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "sub", "00000000.spill"), []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}

	s := open(t, cfg)
	if names, _ := spillFiles(t, cfg.Dir); len(names) != 0 {
		t.Fatalf("after Open the directory holds %v", names)
	}
	for _, p := range []string{"notes.txt", "sub/00000000.spill"} {
		if !exists(t, cfg.Dir, p) {
			t.Fatalf("Open removed %s, which is not a spill file of Dir", p)
		}
	}
	if s.OwnBytes() != 0 || s.Stats().Files != 0 {
		t.Fatalf("after Open: OwnBytes %d, %+v", s.OwnBytes(), s.Stats())
	}
	wantNotFound(t, s, key(1))
	// File names start again from 0.
	mustWrite(t, s, [][]byte{key(3)}, [][]byte{value(3, 100)})
	wantValue(t, s, key(3), value(3, 100))
	if !exists(t, cfg.Dir, "00000000.spill") {
		t.Fatal("no file 0 after a write")
	}
	checkDisk(t, s, cfg.Dir)
}

// TestScan: keys with the prefix, in key order, short and long keys alike;
// fn's error stops the scan.
func TestScan(t *testing.T) {
	s := open(t, testConfig(t))
	long := append([]byte("a/"), bytes.Repeat([]byte{'z'}, 40)...)
	keys := [][]byte{[]byte("b/1"), []byte("a/2"), long, []byte("a/10"), []byte("a/1"), []byte("")}
	var values [][]byte
	for _, k := range keys {
		values = append(values, append([]byte("value of "), k...))
	}
	mustWrite(t, s, keys, values)
	s.Delete([]byte("a/2"))

	var got []string
	err := s.Scan([]byte("a/"), func(k, v []byte) error {
		if !bytes.Equal(v, append([]byte("value of "), k...)) {
			t.Errorf("Scan: %q holds %q", k, v)
		}
		got = append(got, string(k))
		return nil
	})
	if want := []string{"a/1", "a/10", string(long)}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("Scan(a/) = %q, %v; want %q", got, err, want)
	}
	got = got[:0]
	if err := s.Scan(nil, func(k, v []byte) error { got = append(got, string(k)); return nil }); err != nil || len(got) != 5 || got[0] != "" {
		t.Fatalf("Scan(nil) = %q, %v; want the 5 keys, the empty one first", got, err)
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.Scan(nil, func(k, v []byte) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("Scan whose fn fails: %v after %d calls", err, calls)
	}
}

// TestClose: Close removes the files, is idempotent, and later calls fail
// with ErrClosed.
func TestClose(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	mustWrite(t, s, [][]byte{key(1)}, [][]byte{value(1, 1<<20)})
	mustWrite(t, s, [][]byte{key(2)}, [][]byte{value(2, 1<<20)})
	if names, _ := spillFiles(t, cfg.Dir); len(names) != 2 {
		t.Fatalf("before Close: %v", names)
	}
	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if names, _ := spillFiles(t, cfg.Dir); len(names) != 0 || s.OwnBytes() != 0 {
		t.Fatalf("after Close: %v, OwnBytes %d", names, s.OwnBytes())
	}
	if err := s.Write([][]byte{key(3)}, [][]byte{[]byte("v")}, 0, false); !errors.Is(err, spillfile.ErrClosed) {
		t.Errorf("Write after Close: %v", err)
	}
	if _, err := s.Get(key(1), nil); !errors.Is(err, spillfile.ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if err := s.Scan(nil, func(k, v []byte) error { return nil }); !errors.Is(err, spillfile.ErrClosed) {
		t.Errorf("Scan after Close: %v", err)
	}
	s.Delete(key(1)) // no effect, no panic
	if st := s.Stats(); st.Files != 0 || st.LiveBytes != 0 {
		t.Errorf("Stats after Close: %+v", st)
	}
}

// TestWriteChecks: malformed Writes are refused whole.
func TestWriteChecks(t *testing.T) {
	s := open(t, testConfig(t))
	for _, c := range []struct {
		name         string
		keys, values [][]byte
	}{
		{"more keys than values", [][]byte{key(1), key(2)}, [][]byte{[]byte("v")}},
		{"a key past 64 KiB", [][]byte{key(1), make([]byte, 1<<16)}, [][]byte{[]byte("v"), []byte("v")}},
	} {
		if err := s.Write(c.keys, c.values, 0, false); err == nil {
			t.Errorf("%s: Write succeeded", c.name)
		}
		wantNotFound(t, s, key(1))
	}
	if err := s.Write(nil, nil, 0, false); err != nil {
		t.Errorf("an empty Write: %v", err)
	}
	if st := s.Stats(); st.Files != 0 || st.Writes != 0 {
		t.Errorf("after refused Writes: %+v", st)
	}
}

func TestOpenInvalid(t *testing.T) {
	cfg := testConfig(t)
	cfg.DiskLimit = 0
	if _, err := spillfile.Open(cfg, nil); err == nil {
		t.Fatal("Open without a disk limit succeeded")
	}
}
