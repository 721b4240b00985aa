package buffer

import (
	"fmt"
	"slices"
	"time"
)

// Spilling: past spillHigh of the memory limit, a spill loop moves the span
// bytes of the oldest traces to the Disk until the buffer is back under
// spillLow. A spilled trace keeps its summary, queue entries and group
// references in RAM; Load reads its bytes back when it is taken.

// spillHigh and spillLow are the fractions of Config.MemoryLimit (in
// 1/1024ths) where spilling starts and stops. The gap keeps Append from
// hitting the limit while the loop writes.
const (
	spillHigh = 640 // 62.5%
	spillLow  = 448 // 43.75%
)

// spillBatchBytes bounds the span bytes written by one Disk.Put.
const spillBatchBytes = 4 << 20

// minSpillPart is the least a trace that has spilled before spills again,
// unless the buffer is past spillUrgent (in 1/1024ths of the limit):
// spilling each new span of a trace on its own made one read per span or
// two when the trace was decided.
const (
	minSpillPart = 4 << 10
	spillUrgent  = 800 // 78%
)

func inRAM(chunks [][]byte) (n int) {
	for _, c := range chunks {
		n += len(c)
	}
	return n
}

// spillCandidate is a trace whose chunks [0, chunks) up to lastLen are
// being written, as one part.
type spillCandidate struct {
	t       *Trace
	seq     uint64
	part    uint32
	chunks  int
	lastLen int
	bytes   int
}

func (b *Buffer) spillThreshold() (high, low int64) {
	return b.cfg.MemoryLimit / 1024 * spillHigh, b.cfg.MemoryLimit / 1024 * spillLow
}

// ringSpill wakes the spill loop if the buffer is past spillHigh.
func (b *Buffer) ringSpill() {
	if b.cfg.Disk == nil {
		return
	}
	if high, _ := b.spillThreshold(); b.used.Load() > high {
		select {
		case b.spillBell <- struct{}{}:
		default:
		}
	}
}

func (b *Buffer) spillLoop() {
	defer close(b.spillDone)
	// A timer as well as the bell: a spill that failed (disk full) is
	// retried without waiting for the next Append.
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var sc spillScratch
	for {
		select {
		case <-b.stop:
			return
		case <-b.spillBell:
		case <-t.C:
		}
		_, low := b.spillThreshold()
		for b.used.Load() > low && !b.stopped() {
			if n := b.spillOnce(&sc); n == 0 {
				break // nothing left to spill, or the disk refused
			}
		}
	}
}

func (b *Buffer) stopped() bool {
	select {
	case <-b.stop:
		return true
	default:
		return false
	}
}

type spillScratch struct {
	cands        []spillCandidate
	keys, values [][]byte
	keyBuf, val  []byte
	next         int // shard to start from, round robin
}

// spillOnce writes the oldest unspilled bytes of up to spillBatchBytes,
// taking traces round robin from the shards' spill queues (each in
// first-arrival order), and returns the bytes moved out of RAM.
func (b *Buffer) spillOnce(sc *spillScratch) int64 {
	sc.cands, sc.keys, sc.values = sc.cands[:0], sc.keys[:0], sc.values[:0]
	sc.keyBuf, sc.val = sc.keyBuf[:0], sc.val[:0]
	total, empty := 0, 0
	for total < spillBatchBytes && empty < len(b.shards) {
		s := &b.shards[sc.next]
		sc.next = (sc.next + 1) & int(b.mask)
		s.mu.Lock()
		c, ok := b.nextSpill(s)
		if !ok {
			s.mu.Unlock()
			empty++
			continue
		}
		empty = 0
		// Copy the chunks' bytes while locked: appends may extend the last
		// chunk's length (never its bytes below lastLen), and the trace
		// may be taken and its chunks passed on once the lock is released.
		start := len(sc.val)
		chunks := c.t.chunkList()
		for i := range c.chunks {
			ch := chunks[i]
			if i == c.chunks-1 {
				ch = ch[:c.lastLen]
			}
			sc.val = append(sc.val, ch...)
		}
		s.mu.Unlock()
		c.bytes = len(sc.val) - start
		total += c.bytes
		sc.cands = append(sc.cands, c)
	}
	if len(sc.cands) == 0 {
		return 0
	}
	// Slice keys and values once the buffers have stopped growing.
	sc.keyBuf = slices.Grow(sc.keyBuf, len(sc.cands)*spillKeyLen)
	off := 0
	for _, c := range sc.cands {
		k := len(sc.keyBuf)
		sc.keyBuf = spillKey(sc.keyBuf, &c.t.ID, c.seq, c.part)
		sc.keys = append(sc.keys, sc.keyBuf[k:])
		sc.values = append(sc.values, sc.val[off:off+c.bytes])
		off += c.bytes
	}
	err := b.cfg.Disk.Write(sc.keys, sc.values, 0, false)
	var freed int64
	for i, c := range sc.cands {
		freed += b.finishSpill(c, sc.keys[i], err == nil)
		sc.cands[i] = spillCandidate{}
	}
	if err != nil {
		b.spillFailures.Add(1) // retried by the loop's ticker; the metric shows it
		return 0
	}
	return freed
}

// nextSpill pops the shard's oldest trace that has bytes in RAM, and
// reserves its next part (locked).
func (b *Buffer) nextSpill(s *shard) (spillCandidate, bool) {
	for {
		e, ok := s.spillQ.front()
		if !ok {
			return spillCandidate{}, false
		}
		s.spillQ.pop()
		t := s.traces[e.id]
		if t == nil || t.seq != e.seq {
			continue
		}
		t.spillQueued = false
		chunks := t.chunkList()
		if t.spilling || len(chunks) == 0 || len(chunks) == 1 && len(chunks[0]) == 0 {
			continue // finishSpill queues it again if it has more
		}
		if t.spilled > 0 && b.used.Load() < b.cfg.MemoryLimit/1024*spillUrgent && inRAM(chunks) < minSpillPart {
			// A spilled trace's few new spans: each part costs a read
			// when the trace is decided. Its next Append queues it again.
			continue
		}
		t.spilling = true
		return spillCandidate{t: t, seq: t.seq, part: t.spilled, chunks: len(chunks), lastLen: len(chunks[len(chunks)-1])}, true
	}
}

// finishSpill drops the written bytes from RAM, or, if the write failed or
// the trace was taken meanwhile, keeps them and forgets the part.
func (b *Buffer) finishSpill(c spillCandidate, key []byte, written bool) int64 {
	s := b.shard(&c.t.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := c.t
	live := s.traces[t.ID] == t
	if live {
		t.spilling = false
	}
	if !written || !live {
		if written {
			b.cfg.Disk.Delete(key) // taken with its bytes still in RAM
		}
		if live {
			b.requeueSpill(s, t)
		}
		return 0
	}
	before := t.memory()
	chunks := t.chunkList()
	rest := chunks[c.chunks:]
	if tail := chunks[c.chunks-1][c.lastLen:]; len(tail) > 0 {
		// Spans appended to the last chunk during the write stay in RAM.
		rest = append([][]byte{append([]byte(nil), tail...)}, rest...)
	}
	t.setChunks(nil, nil)
	if len(rest) > 0 {
		var more [][]byte
		if len(rest) > 1 {
			more = append(more, rest[1:]...)
		}
		t.setChunks(rest[0], more)
	}
	t.spilled++
	t.spilledBytes += int64(c.bytes)
	freed := before - t.memory()
	b.used.Add(-freed)
	b.spilledBytes.Add(int64(c.bytes))
	b.onDisk.Add(int64(c.bytes))
	b.spillParts.Add(1)
	if len(rest) > 0 {
		b.requeueSpill(s, t)
	}
	return freed
}

// requeueSpill puts a live trace back in its shard's spill queue (locked),
// at its first arrival so the oldest still go first.
func (b *Buffer) requeueSpill(s *shard, t *Trace) {
	if !t.spillQueued {
		t.spillQueued = true
		s.spillQ.push(queueEntry{id: t.ID, at: t.FirstSeen, seq: t.seq})
	}
}

// chunkList returns the trace's chunks in order, without allocating for
// the common one-chunk trace... it allocates for more; spill is not the
// ingest path.
func (t *Trace) chunkList() [][]byte {
	if t.first == nil {
		return nil
	}
	return append([][]byte{t.first}, t.more...)
}

// Load reads the spilled bytes of a taken trace back in front of the ones
// in RAM, so Spans yields every span in arrival order, and deletes them
// from the disk. It is a no-op for a trace that never spilled. On error the
// trace cannot be read; its spans must be reported as lost.
func (b *Buffer) Load(t *Trace) error {
	if t.spilled == 0 || t.loaded {
		return nil
	}
	buf := make([]byte, 0, t.spilledBytes)
	var key [spillKeyLen]byte
	var err error
	for part := range t.spilled {
		k := spillKey(key[:0], &t.ID, t.seq, part)
		if buf, err = b.cfg.Disk.Get(k, buf); err != nil {
			return fmt.Errorf("%w: reading spilled trace %x part %d: %w", ErrStorage, t.ID, part, err)
		}
		b.cfg.Disk.Delete(k)
	}
	if len(buf) > 0 {
		more := make([][]byte, 0, len(t.more)+1)
		if t.first != nil {
			more = append(more, t.first)
		}
		t.setChunks(buf, append(more, t.more...))
	}
	t.loaded = true
	b.loadedBytes.Add(int64(len(buf)))
	return nil
}

// WaitSpill wakes the spill loop and waits, up to d, until the buffer is
// back under the spill threshold. It reports false if spilling cannot
// help: no Disk, the disk refuses, or the memory holds mostly summaries.
func (b *Buffer) WaitSpill(d time.Duration) bool {
	if b.cfg.Disk == nil {
		return false
	}
	high, _ := b.spillThreshold()
	deadline := time.Now().Add(d)
	failures := b.spillFailures.Load()
	for b.used.Load() > high {
		b.ringSpill()
		if time.Now().After(deadline) || b.spillFailures.Load() != failures || b.stopped() {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
