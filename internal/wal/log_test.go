package wal_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tailsift/tailsift/internal/wal"
	"github.com/tailsift/tailsift/internal/wal/waltest"
)

const dir = "/data/wal"

func open(t *testing.T, fs wal.FS, mod func(*wal.Config)) *wal.Log {
	t.Helper()
	cfg := wal.DefaultConfig()
	cfg.Dir, cfg.FS, cfg.SegmentSize, cfg.MaxBytes = dir, fs, 1<<20, 64<<20
	if mod != nil {
		mod(&cfg)
	}
	l, err := wal.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// payload is record i's content: its number, then filler of a length
// that varies with i.
func payload(i int) []byte {
	p := binary.BigEndian.AppendUint64(nil, uint64(i))
	return append(p, bytes.Repeat([]byte{byte(i)}, 40+i%700)...)
}

func write(t *testing.T, l *wal.Log, p []byte) wal.Ref {
	t.Helper()
	var ref wal.Ref
	if err := l.Write(func(w *wal.Writer) { ref = w.Append(1, true, p) }); err != nil {
		t.Fatalf("write: %v", err)
	}
	return ref
}

// replayAll reads the log back: the number in each live record, and
// their refs.
func replayAll(t *testing.T, l *wal.Log) (map[int]wal.Ref, int) {
	t.Helper()
	got := map[int]wal.Ref{}
	others := 0
	err := l.Replay(func(ref wal.Ref, typ byte, p []byte) error {
		if typ != 1 {
			others++
			return nil
		}
		i := int(binary.BigEndian.Uint64(p))
		if !bytes.Equal(p, payload(i)) {
			return fmt.Errorf("record %d at %v reads back different", i, ref)
		}
		if _, dup := got[i]; dup {
			return fmt.Errorf("record %d replayed twice", i)
		}
		got[i] = ref
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, others
}

// TestAcknowledgedIsDurable is the durability contract: when Write
// returns, the file holding the record is synced past it and its
// directory entry is durable; so after a power cut at any moment, with
// a torn tail of unsynced bytes, every acknowledged record reads back.
func TestAcknowledgedIsDurable(t *testing.T) {
	for round := range 8 {
		rng := rand.New(rand.NewPCG(uint64(round), 7))
		fs := waltest.New()
		l := open(t, fs, nil)
		var mu sync.Mutex
		acked := map[int]bool{}
		var wg sync.WaitGroup
		crashed := make(chan *waltest.CrashFS, 1)
		var ackedAtCrash map[int]bool
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < 3000; i += 4 {
					p := payload(i)
					var ref wal.Ref
					if err := l.Write(func(w *wal.Writer) { ref = w.Append(1, true, p) }); err != nil {
						t.Errorf("write %d: %v", i, err)
						return
					}
					// The contract, checked at the moment of the OK.
					name := filepath.Join(dir, fmt.Sprintf("%08x.wal", ref.Segment()))
					if end := ref.Offset() + 9 + int64(len(p)); int64(fs.Durable(name)) < end {
						t.Errorf("record %d acknowledged at %v, but %s is durable only to %d", i, ref, name, fs.Durable(name))
						return
					}
					mu.Lock()
					acked[i] = true
					if i == 1500+round*100 {
						// Crash now, while the others keep writing.
						ackedAtCrash = make(map[int]bool, len(acked))
						for k := range acked {
							ackedAtCrash[k] = true
						}
						crashed <- fs.Crash(rng)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		l.Close(context.Background())
		after := open(t, <-crashed, nil)
		got, _ := replayAll(t, after)
		for i := range ackedAtCrash {
			if _, ok := got[i]; !ok {
				t.Fatalf("round %d: record %d was acknowledged before the power cut and is lost (%d of %d acknowledged read back)", round, i, len(got), len(ackedAtCrash))
			}
		}
		after.Close(context.Background())
	}
}

// TestGroupCommit: Writes that arrive while the disk is busy share one
// fsync.
func TestGroupCommit(t *testing.T) {
	fs := waltest.New()
	l := open(t, fs, nil)
	write(t, l, payload(0))
	resume := fs.Hang()
	var wg sync.WaitGroup
	for i := 1; i <= 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			write(t, l, payload(i))
		}()
	}
	waitFor(t, func() bool { return l.Stats().Records == 51 }, "50 writers to append")
	before := fs.Syncs()
	resume()
	wg.Wait()
	// The syncer took the first writer's batch before the others came,
	// and is held in its write: at most that one, then one for the rest.
	if n := fs.Syncs() - before; n > 2 {
		t.Errorf("%d fsyncs for 50 concurrent writes, want at most 2", n)
	}
}

// TestTornTailRepaired: a crash in the middle of a record leaves a torn
// tail; Open truncates it, counts it, and every complete record reads.
func TestTornTailRepaired(t *testing.T) {
	fs := waltest.New()
	l := open(t, fs, nil)
	for i := range 100 {
		write(t, l, payload(i))
	}
	resume := fs.Hang()
	go l.Write(func(w *wal.Writer) { w.Append(1, true, payload(100)) }) // never synced
	time.Sleep(10 * time.Millisecond)
	// The unsynced record's bytes are on "disk" in part, garbled at the end.
	crashed := fs.Crash(nil)
	name := filepath.Join(dir, "00000001.wal")
	torn := appendTorn(t, crashed, name, payload(100))
	resume()
	l.Close(context.Background())

	after := open(t, crashed, nil)
	if st := after.Stats(); st.Repaired != 1 || st.RepairedBytes != int64(torn) {
		t.Errorf("repairs: %d of %d bytes, want 1 of %d", st.Repaired, st.RepairedBytes, torn)
	}
	got, _ := replayAll(t, after)
	if len(got) != 100 {
		t.Fatalf("%d records after the repair, want the 100 complete ones", len(got))
	}
	// New records go after the repaired tail, in a new segment, and read.
	write(t, after, payload(101))
	after.Close(context.Background())
	again := open(t, crashed, nil)
	got, _ = replayAll(t, again)
	if _, ok := got[101]; !ok || len(got) != 101 {
		t.Fatalf("after a second open: %d records, want 101 with the new one", len(got))
	}
}

// appendTorn writes the first half of a record carrying p to the end of
// file name, and returns the bytes written.
func appendTorn(t *testing.T, fs *waltest.CrashFS, name string, p []byte) int {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := f.Size()
	h, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rec := binary.BigEndian.AppendUint32(nil, uint32(1+len(p)))
	rec = append(rec, 1, 2, 3, 4, 1)
	rec = append(rec, p...)
	rec = rec[:len(rec)/2]
	if _, err := h.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := h.Sync(); err != nil {
		t.Fatal(err)
	}
	if s2, _ := h.Size(); s2 != size+int64(len(rec)) {
		t.Fatalf("torn write: size %d, want %d", s2, size+int64(len(rec)))
	}
	return len(rec)
}

// TestReleasedSegmentsGo: segments are deleted once every record in them
// and before them is released, and released records are not replayed.
func TestReleasedSegmentsGo(t *testing.T) {
	fs := waltest.New()
	l := open(t, fs, nil)
	var refs []wal.Ref
	for i := range 6000 { // about 2.4 MiB: three segments and more
		refs = append(refs, write(t, l, payload(i)))
	}
	if st := l.Stats(); st.Segments < 3 {
		t.Fatalf("%d segments, want at least 3 of 1 MiB", st.Segments)
	}
	l.Release(refs[:5000]...)
	write(t, l, payload(6000)) // syncs the releases too
	waitFor(t, func() bool { return l.Stats().Deleted >= 1 }, "the first segment to be deleted")
	files, _ := fs.List(dir)
	if st := l.Stats(); len(files) != st.Segments-1 && len(files) != st.Segments {
		t.Errorf("%d files for %d segments", len(files), st.Segments)
	}
	l.Close(context.Background())

	after := open(t, fs, nil)
	got, _ := replayAll(t, after)
	if len(got) != 1001 {
		t.Fatalf("%d records replayed, want the 1001 not released", len(got))
	}
	for i := range got {
		if i < 5000 {
			t.Fatalf("released record %d replayed", i)
		}
	}
}

// TestCheckpointFreesAPinnedLog: one live record pins its segment and
// every later one; CheckpointCandidate names it, and once the record is
// copied (Rewrite) and the old one released, the old segments go.
func TestCheckpointFreesAPinnedLog(t *testing.T) {
	fs := waltest.New()
	l := open(t, fs, nil)
	pinned := write(t, l, payload(0))
	var refs []wal.Ref
	for i := 1; i < 12000; i++ {
		refs = append(refs, write(t, l, payload(i)))
	}
	l.Release(refs...)
	write(t, l, payload(12000))
	seg, ok := l.CheckpointCandidate()
	if !ok || seg != pinned.Segment() {
		t.Fatalf("checkpoint candidate %d %v, want segment %d", seg, ok, pinned.Segment())
	}
	before := l.Stats().Segments
	var copied wal.Ref
	err := l.ReadSegment(seg, func(ref wal.Ref, typ byte, p []byte) error {
		if ref == pinned {
			p = bytes.Clone(p)
			return l.Rewrite(func(w *wal.Writer) { copied = w.Append(typ, true, p) })
		}
		return nil
	})
	if err != nil || copied == 0 {
		t.Fatalf("copying the pinned record: %v", err)
	}
	l.Release(pinned)
	write(t, l, payload(12001))
	waitFor(t, func() bool { return l.Stats().Segments <= 2 }, "the pinned segments to go")
	if l.Stats().Segments >= before {
		t.Fatalf("segments %d, before %d", l.Stats().Segments, before)
	}
	l.Close(context.Background())
	after := open(t, fs, nil)
	got, _ := replayAll(t, after)
	if _, ok := got[0]; !ok || len(got) != 3 {
		t.Fatalf("replayed %d records, want the copied one and the two last", len(got))
	}
}

// TestFullRefusesRetryably: past MaxBytes, Write refuses with a
// RetryAfter, and takes records again once released ones free segments.
func TestFullRefusesRetryably(t *testing.T) {
	fs := waltest.New()
	l := open(t, fs, func(c *wal.Config) { c.MaxBytes = 3 << 20 })
	var refs []wal.Ref
	var err error
	for i := 0; i < 100000 && err == nil; i++ {
		p := payload(i)
		var ref wal.Ref
		if err = l.Write(func(w *wal.Writer) { ref = w.Append(1, true, p) }); err == nil {
			refs = append(refs, ref)
		}
	}
	var ra interface{ RetryAfter() time.Duration }
	if !errors.Is(err, wal.ErrFull) || !errors.As(err, &ra) || !l.Full() {
		t.Fatalf("writing past the budget: %v, full %v; want ErrFull with a retry hint", err, l.Full())
	}
	l.Release(refs...)
	waitFor(t, func() bool { return !l.Full() }, "released segments to free the budget")
	write(t, l, payload(1))
}

// TestHungDiskBounded: with a disk that blocks, Write refuses within
// SyncTimeout, later ones at once once the backlog is full, and Close
// returns when its context ends.
func TestHungDiskBounded(t *testing.T) {
	fs := waltest.New()
	l := open(t, fs, func(c *wal.Config) { c.SyncTimeout, c.MaxPending = 200*time.Millisecond, 1<<20 })
	write(t, l, payload(0))
	resume := fs.Hang()
	defer resume()
	start := time.Now()
	err := l.Write(func(w *wal.Writer) { w.Append(1, true, payload(1)) })
	if !errors.Is(err, wal.ErrTimeout) {
		t.Fatalf("write to a hung disk: %v, want ErrTimeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the refusal took %v", took)
	}
	big := bytes.Repeat([]byte{1}, 1<<20)
	l.Write(func(w *wal.Writer) { w.Append(1, true, big) })
	if err := l.Write(func(w *wal.Writer) { w.Append(1, true, payload(2)) }); !errors.Is(err, wal.ErrBacklog) {
		t.Fatalf("write with a full backlog: %v, want ErrBacklog", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("close with a hung disk: %v", err)
	}
	resume() // lets the syncer end, for goleak
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestNoSpace: a disk out of space refuses with ErrFull, and the log
// goes on in a new segment once there is space.
func TestNoSpace(t *testing.T) {
	fs := waltest.New()
	l := open(t, fs, nil)
	write(t, l, payload(0))
	fs.Fail(syscall.ENOSPC)
	err := l.Write(func(w *wal.Writer) { w.Append(1, true, payload(1)) })
	if !errors.Is(err, wal.ErrFull) {
		t.Fatalf("write on a full disk: %v, want ErrFull", err)
	}
	fs.Fail(nil)
	write(t, l, payload(2))
	l.Close(context.Background())
	after := open(t, fs, nil)
	got, _ := replayAll(t, after)
	if _, ok := got[2]; !ok {
		t.Fatal("the record written after space returned is lost")
	}
	if _, ok := got[1]; ok {
		t.Fatal("the refused record was replayed")
	}
}

// TestEncrypted: with a key, no payload is on disk in the clear; another
// key is refused at Open.
func TestEncrypted(t *testing.T) {
	fs := waltest.New()
	key := bytes.Repeat([]byte{7}, 32)
	l := open(t, fs, func(c *wal.Config) { c.EncryptionKey = key })
	secret := append(payload(5), "a secret attribute value"...)
	write(t, l, secret)
	write(t, l, payload(6))
	l.Close(context.Background())
	f, _ := fs.Open(filepath.Join(dir, "00000001.wal"))
	var all bytes.Buffer
	all.ReadFrom(f)
	if bytes.Contains(all.Bytes(), []byte("a secret attribute value")) {
		t.Fatal("the payload is on disk in the clear")
	}
	cfg := wal.DefaultConfig()
	cfg.Dir, cfg.FS, cfg.EncryptionKey = dir, fs, bytes.Repeat([]byte{8}, 32)
	if _, err := wal.Open(cfg, nil); !errors.Is(err, wal.ErrKeyMismatch) {
		t.Fatalf("open with another key: %v", err)
	}
	after := open(t, fs, func(c *wal.Config) { c.EncryptionKey = key })
	n := 0
	after.Replay(func(_ wal.Ref, _ byte, p []byte) error {
		if n == 0 && !bytes.Equal(p, secret) {
			t.Error("the sealed record reads back different")
		}
		n++
		return nil
	})
	if n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
