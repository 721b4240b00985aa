package spillfile_test

import (
	"testing"

	"github.com/tailsift/tailsift/internal/spillfile"
)

// spillBatch is what one round of the buffer's spill loop writes: 64
// values of about 4 KiB under 29-byte keys.
func spillBatch(n, size int) (keys, values [][]byte) {
	for i := range n {
		keys = append(keys, key(i))
		values = append(values, value(uint64(i), size))
	}
	return keys, values
}

// TestWriteGetDeleteAllocs: the spill path (Write a batch, Get each value
// into a reused buffer, Delete them) allocates nothing once warm.
func TestWriteGetDeleteAllocs(t *testing.T) {
	cfg := testConfig(t)
	cfg.FileSize = 64 << 20 // 100 rounds fit one file: no file is created
	s := open(t, cfg)
	keys, values := spillBatch(64, 4<<10)
	buf := make([]byte, 0, 8<<10)
	round := func() {
		if err := s.Write(keys, values, 0, false); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			var err error
			if buf, err = s.Get(k, buf[:0]); err != nil {
				t.Fatal(err)
			}
		}
		s.Delete(keys...)
	}
	round()
	if n := testing.AllocsPerRun(100, round); n != 0 {
		t.Fatalf("a spill round allocates %v times", n)
	}
}

func benchStore(b *testing.B) *spillfile.Store {
	cfg := spillfile.DefaultConfig()
	cfg.Dir = b.TempDir()
	cfg.DiskLimit = 1 << 40
	return open(b, cfg)
}

// BenchmarkWriteGetDelete is the spill loop's traffic: a batch written,
// each value read back, the batch deleted. Files fill, are sealed and
// removed as it goes.
func BenchmarkWriteGetDelete(b *testing.B) {
	s := benchStore(b)
	keys, values := spillBatch(64, 4<<10)
	buf := make([]byte, 0, 8<<10)
	b.ReportAllocs()
	b.SetBytes(64 * 4 << 10)
	for b.Loop() {
		if err := s.Write(keys, values, 0, false); err != nil {
			b.Fatal(err)
		}
		for _, k := range keys {
			var err error
			if buf, err = s.Get(k, buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
		s.Delete(keys...)
	}
}

// BenchmarkGet reads 4 KiB values from 1024 stored (page cache, not disk).
func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	keys, values := spillBatch(1024, 4<<10)
	for i := 0; i < len(keys); i += 64 {
		if err := s.Write(keys[i:i+64], values[i:i+64], 0, false); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]byte, 0, 8<<10)
	b.ReportAllocs()
	b.SetBytes(4 << 10)
	i := 0
	for b.Loop() {
		var err error
		if buf, err = s.Get(keys[i%len(keys)], buf[:0]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
