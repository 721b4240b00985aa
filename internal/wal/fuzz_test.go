package wal_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/tailsift/tailsift/internal/wal"
	"github.com/tailsift/tailsift/internal/wal/waltest"
)

// FuzzOpen: whatever a segment file holds, Open and Replay neither panic
// nor fail; they repair the file to its good prefix, which reads again
// the same.
func FuzzOpen(f *testing.F) {
	good := waltest.New()
	l, err := wal.Open(wal.Config{Dir: dir, FS: good, SegmentSize: 1 << 20, MaxBytes: 8 << 20}, nil)
	if err != nil {
		f.Fatal(err)
	}
	for i := range 5 {
		l.Write(func(w *wal.Writer) { w.Append(byte(1+i%3), i%2 == 0, payload(i)) })
	}
	ref := wal.Ref(0)
	l.Write(func(w *wal.Writer) { ref = w.Append(1, true, payload(9)) })
	l.Release(ref)
	l.Close(context.Background())
	seed, _ := good.Open(filepath.Join(dir, "00000001.wal"))
	var buf [1 << 16]byte
	n, _ := seed.Read(buf[:])
	f.Add(buf[:n])
	f.Add(buf[:n/2])
	f.Add(buf[:17])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := waltest.New()
		fs.MkdirAll(dir)
		h, _ := fs.Create(filepath.Join(dir, "00000001.wal"))
		h.Write(data)
		h.Sync()
		fs.SyncDir(dir)
		count := func() int {
			l, err := wal.Open(wal.Config{Dir: dir, FS: fs, SegmentSize: 1 << 20, MaxBytes: 8 << 20}, nil)
			if errors.Is(err, wal.ErrKeyMismatch) {
				return -1 // a header that says "encrypted": an honest refusal
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer l.Close(context.Background())
			n := 0
			if err := l.Replay(func(wal.Ref, byte, []byte) error { n++; return nil }); err != nil {
				t.Fatalf("replay: %v", err)
			}
			return n
		}
		first := count()
		if second := count(); second != first {
			t.Fatalf("replayed %d records, then %d after the repair", first, second)
		}
	})
}
