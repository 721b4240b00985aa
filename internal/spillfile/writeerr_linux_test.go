package spillfile_test

import (
	"errors"
	"syscall"
	"testing"

	"github.com/tailsift/tailsift/internal/spillfile"
)

// TestWriteError makes the disk fail a Write halfway (a file size limit:
// EFBIG, the Go runtime ignores SIGXFSZ) and checks that the Write fails
// whole, earlier values stay readable, the file is sealed (later Writes go
// to a new one, and it goes once its values are deleted), and the bytes
// the failed Write left count as the store's. The limit is process-wide:
// nothing else in the test binary writes files meanwhile.
func TestWriteError(t *testing.T) {
	cfg := testConfig(t)
	s := open(t, cfg)
	mustWrite(t, s, [][]byte{key(1), key(2)}, [][]byte{value(1, 100<<10), value(2, 100<<10)})

	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	lim := old
	lim.Cur = uint64(s.OwnBytes() + 150<<10)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip(err)
	}
	err := s.Write([][]byte{key(3), key(4)}, [][]byte{value(3, 100<<10), value(4, 100<<10)}, 0, false)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatal(rerr)
	}
	if !errors.Is(err, syscall.EFBIG) || errors.Is(err, spillfile.ErrFull) {
		t.Fatalf("Write past the file size limit: %v, want EFBIG (not ErrFull)", err)
	}
	if st := s.Stats(); st.WriteErrors != 1 || st.Writes != 2 {
		t.Fatalf("after a failed Write: %+v", st)
	}
	wantNotFound(t, s, key(3))
	wantNotFound(t, s, key(4))
	wantValue(t, s, key(1), value(1, 100<<10))
	checkDisk(t, s, cfg.Dir) // the partial bytes are counted

	mustWrite(t, s, [][]byte{key(3)}, [][]byte{value(3, 10)})
	wantValue(t, s, key(3), value(3, 10))
	if !exists(t, cfg.Dir, "00000001.spill") {
		t.Fatal("the Write after a failure did not start a new file")
	}
	s.Delete(key(1), key(2))
	if exists(t, cfg.Dir, "00000000.spill") {
		t.Fatal("the file a Write failed on stays with nothing live")
	}
	checkDisk(t, s, cfg.Dir)
}
