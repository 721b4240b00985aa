package store_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/tailsift/tailsift/internal/store"
)

const (
	benchValueSize = 4 << 10 // about a trace's spans
	benchBatch     = 16      // entries per Put
)

// benchStore opens a store for one run of a benchmark function, with no
// disk limit in the way. The caller closes it.
func benchStore(b *testing.B) *store.Store {
	b.Helper()
	cfg := store.DefaultConfig()
	cfg.Dir = b.TempDir()
	cfg.DiskLimit = 1 << 40
	s, err := store.Open(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// benchKey is a trace-ID-like key: 16 bytes of id, then the span index.
func benchKey(dst []byte, id uint64, i int) []byte {
	dst = binary.BigEndian.AppendUint64(dst[:0], id*0x9E3779B97F4A7C15)
	dst = binary.BigEndian.AppendUint64(dst, id)
	return binary.BigEndian.AppendUint16(dst, uint16(i))
}

// BenchmarkPut: one op is one Put of 16 entries of 4 KiB. With sync, the
// syncs/op metric shows how many Put calls share an fsync.
func BenchmarkPut(b *testing.B) {
	val := value(1, benchValueSize)
	for _, sync := range []bool{false, true} {
		for _, par := range []int{1, 8} {
			b.Run(fmt.Sprintf("sync=%v/par=%d", sync, par), func(b *testing.B) {
				s := benchStore(b)
				defer s.Close()
				var next atomic.Uint64
				b.ReportAllocs()
				b.SetBytes(benchBatch * (benchValueSize + 18))
				b.SetParallelism(par)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					entries := make([]store.Entry, benchBatch)
					keys := make([][]byte, benchBatch)
					for i := range entries {
						keys[i] = make([]byte, 0, 18)
						entries[i].Value = val
					}
					for pb.Next() {
						id := next.Add(1)
						for i := range entries {
							keys[i] = benchKey(keys[i], id, i)
							entries[i].Key = keys[i]
						}
						if err := s.Put(entries, sync); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer() // not the Close
				st := s.Stats()
				b.ReportMetric(float64(st.Syncs)/float64(b.N), "syncs/op")
				b.ReportMetric(float64(st.CommitGroups)/float64(b.N), "groups/op")
			})
		}
	}
}

// BenchmarkGet reads random 4 KiB values among 16 Ki (64 MiB: some in
// memtables, most in tables), reusing dst.
func BenchmarkGet(b *testing.B) {
	const keys = 16 << 10
	val := value(1, benchValueSize)
	for _, par := range []int{1, 8} {
		b.Run(fmt.Sprintf("par=%d", par), func(b *testing.B) {
			s := benchStore(b)
			defer s.Close()
			entries := make([]store.Entry, benchBatch)
			for id := uint64(0); id < keys/benchBatch; id++ {
				for i := range entries {
					entries[i] = store.Entry{Key: benchKey(nil, id, i), Value: val}
				}
				if err := s.Put(entries, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.SetBytes(benchValueSize)
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rnd := rand.New(rand.NewPCG(rand.Uint64(), 0))
				key := make([]byte, 0, 18)
				dst := make([]byte, 0, benchValueSize)
				for pb.Next() {
					n := rnd.IntN(keys)
					key = benchKey(key, uint64(n/benchBatch), n%benchBatch)
					var err error
					if dst, err = s.Get(key, dst[:0]); err != nil || len(dst) != benchValueSize {
						b.Errorf("Get: %d bytes, %v", len(dst), err)
						return
					}
				}
			})
			b.StopTimer() // not the Close
		})
	}
}
