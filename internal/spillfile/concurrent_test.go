package spillfile_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/spillfile"
)

// TestConcurrent runs writers, readers, deleters and a scanner together
// with the compactor running all the time, for a bounded count (run it
// with -race). Deleters take four keys in five, so files fall under a
// quarter live and are compacted while writers overwrite the kept keys.
// Readers read keys as deleters delete them, and so the files being
// emptied: a value read is always exact, and only a key a deleter may have
// taken is ever missing. At the end every key holds what it should, and
// once all are deleted no file but the head is left.
func TestConcurrent(t *testing.T) {
	cfg := testConfig(t)
	cfg.CompactInterval = time.Millisecond
	s := open(t, cfg)
	const (
		writers   = 4
		perWriter = 400
		batch     = 8
	)
	// Key w*perWriter+i; deleters take those not kept. A value depends
	// on its key only, so overwrites write the same bytes.
	id := func(w, i int) int { return w*perWriter + i }
	kept := func(i int) bool { return i%5 == 0 }
	val := func(k int) []byte { return value(uint64(k), 1+k*7919%(12<<10)) }
	var written [writers]atomic.Int64 // keys of writer w below it are written
	var wg, writersWG sync.WaitGroup
	errc := make(chan error, 16)
	fail := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}

	for w := range writers {
		writersWG.Go(func() {
			var keys, values [][]byte
			for i := 0; i < perWriter; i += batch {
				keys, values = keys[:0], values[:0]
				for j := i; j < i+batch; j++ {
					keys = append(keys, key(id(w, j)))
					values = append(values, val(id(w, j)))
				}
				if i >= batch { // overwrite a kept key of the last batch
					j := (i - batch + 4) / 5 * 5
					k := id(w, j)
					keys = append(keys, key(k))
					values = append(values, val(k))
				}
				if err := s.Write(keys, values, 0, false); err != nil {
					fail(err)
					return
				}
				written[w].Store(int64(i + batch))
			}
		})
	}
	stop := make(chan struct{})
	for r := range 4 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(r), 1))
			var buf []byte
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				w := rnd.IntN(writers)
				upTo := written[w].Load()
				if upTo == 0 {
					continue
				}
				i := rnd.IntN(int(upTo))
				v, err := s.Get(key(id(w, i)), buf[:0])
				switch {
				case err == nil:
					if !bytes.Equal(v, val(id(w, i))) {
						fail(errors.New("a Get returned wrong bytes"))
						return
					}
					buf = v
				case errors.Is(err, spillfile.ErrNotFound) && !kept(i):
				default:
					fail(err)
					return
				}
			}
		})
	}
	for d := range 2 {
		wg.Go(func() {
			// Deleter d takes the keys not kept of writers d and d+2, in
			// order, as they are written.
			for _, w := range []int{d, d + 2} {
				for i := range perWriter {
					if kept(i) {
						continue
					}
					for written[w].Load() <= int64(i) {
						select {
						case <-stop:
							return
						default:
							time.Sleep(50 * time.Microsecond)
						}
					}
					s.Delete(key(id(w, i)))
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			var prev []byte
			err := s.Scan(key(id(1, 0))[:1], func(k, v []byte) error {
				if prev != nil && bytes.Compare(prev, k) >= 0 {
					return errors.New("Scan out of order")
				}
				prev = append(prev[:0], k...)
				return nil
			})
			if err != nil {
				fail(err)
				return
			}
		}
	})

	writersWG.Wait()
	// The deleters finish on their own once everything is written.
	deadline := time.After(20 * time.Second)
	for s.Stats().Deletes < writers*perWriter*4/5 {
		select {
		case err := <-errc:
			close(stop)
			wg.Wait()
			t.Fatal(err)
		case <-deadline:
			close(stop)
			wg.Wait()
			t.Fatalf("deleters did not finish: %+v", s.Stats())
		case <-time.After(time.Millisecond):
		}
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}

	for w := range writers {
		for i := range perWriter {
			if !kept(i) {
				wantNotFound(t, s, key(id(w, i)))
			} else {
				wantValue(t, s, key(id(w, i)), val(id(w, i)))
			}
		}
	}
	st := s.Stats()
	t.Logf("%+v", st)
	if st.Writes < writers*perWriter || st.Compactions == 0 {
		t.Fatalf("the test wrote %d values and compacted %d files", st.Writes, st.Compactions)
	}
	for w := range writers {
		for i := range perWriter {
			s.Delete(key(id(w, i)))
		}
	}
	if st := s.Stats(); st.LiveBytes != 0 || st.Files > 1 {
		t.Fatalf("with everything deleted: %+v", st)
	}
	// A file the compactor is reading goes when it lets go.
	var msg string
	eventually(t, "the directory does not match the store", func() bool {
		msg = diskMismatch(t, s, cfg.Dir)
		return msg == ""
	})
}
