package buffer

import (
	"slices"
	"time"
	"unsafe"

	"github.com/tailsift/tailsift/internal/wal"
)

// Checkpoints: the log deletes its segments oldest first, once nothing in
// them is live, so one trace buffered for long (or a few thousand
// recovered ones) would pin every segment written after it. Once a
// second, while the log names a candidate (wal.Log.CheckpointCandidate:
// the oldest segment, mostly released), the records of it that buffered
// traces still hold are copied to the head and the old ones released.

// checkpointSegmentsPerRound bounds the work of one round.
const checkpointSegmentsPerRound = 4

func (b *Buffer) checkpointLoop() {
	defer close(b.checkpointDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		for range checkpointSegmentsPerRound {
			seg, ok := b.cfg.Log.CheckpointCandidate()
			if !ok || !b.checkpoint(seg) {
				break
			}
		}
	}
}

// checkpointBatchBytes bounds the span bytes copied by one Rewrite (one
// fsync for many records).
const checkpointBatchBytes = 4 << 20

// checkpoint copies the live records of segment seg forward, and reports
// whether all of them went.
func (b *Buffer) checkpoint(seg uint32) bool {
	var defs segmentDefs
	var batch checkpointBatch
	defer batch.release(b)
	ok := true
	err := b.cfg.Log.ReadSegment(seg, func(ref wal.Ref, typ byte, p []byte) error {
		switch typ {
		case recResource, recGroup:
			defs.read(typ, p) // one that does not read fails its spans below
		case recSpans:
			if len(p) < 16 || !b.holds((*[16]byte)(p[:16]), ref) {
				return nil
			}
			var r Recovered
			if !decodeSpans(&r, slices.Clone(p), defs.groups) {
				return nil // recovery counts it
			}
			if !batch.add(b, &r, ref) {
				ok = false
			} else if batch.bytes >= checkpointBatchBytes && !batch.move(b) {
				ok = false
			}
		}
		return nil
	})
	if err != nil {
		b.checkpointFailures.Add(1)
		return false
	}
	if !batch.move(b) {
		ok = false
	}
	b.checkpoints.Add(1)
	return ok
}

// checkpointBatch gathers live records to copy in one Rewrite.
type checkpointBatch struct {
	bt    Batch
	olds  []Record // per run of bt
	bytes int
	// Groups interned for the batch, by the address of their parts.
	interned map[groupAddr]*Group
}

type groupAddr struct {
	res, scope *byte
	rl, sl     int
}

// add appends r's spans as a run of the batch; false if a group could
// not be interned (memory limit).
func (cb *checkpointBatch) add(b *Buffer, r *Recovered, old Record) bool {
	if cb.interned == nil {
		cb.interned = map[groupAddr]*Group{}
	}
	start := len(cb.bt.Spans)
	cb.bt.StartTraceSeen(r.ID, r.FirstSeen, r.RootSeen)
	for i, s := range r.Spans {
		key := groupAddr{unsafe.SliceData(s.Group.Resource), unsafe.SliceData(s.Group.Scope), len(s.Group.Resource), len(s.Group.Scope)}
		g := cb.interned[key]
		if g == nil {
			var err error
			if g, err = b.Acquire(s.Group); err != nil {
				clear(cb.bt.Spans[start:])
				cb.bt.Spans, cb.bt.Traces = cb.bt.Spans[:start], cb.bt.Traces[:len(cb.bt.Traces)-1]
				return false
			}
			cb.interned[key] = g
		}
		// Root marks the record's root arrival (writeAhead keeps RootSeen
		// for a run with a root span).
		cb.bt.AddSpan(Span{Group: g, Raw: s.Raw, Root: i == 0 && r.RootSeen != 0})
		cb.bytes += len(s.Raw)
	}
	cb.olds = append(cb.olds, old)
	return true
}

// move writes the batch's runs as new records and swaps each for the old
// one in the trace that holds it; if the trace went meanwhile (its taker
// releases the old one), the copy is released instead.
func (cb *checkpointBatch) move(b *Buffer) bool {
	defer func() {
		cb.bt.Reset()
		cb.olds, cb.bytes = cb.olds[:0], 0
	}()
	if len(cb.olds) == 0 {
		return true
	}
	sc := walScratchPool.Get().(*walScratch)
	defer walScratchPool.Put(sc)
	if err := b.writeAhead(sc, &cb.bt, 0, true); err != nil {
		return false
	}
	var release []Record
	for i, run := range cb.bt.Traces {
		old, copied := cb.olds[i], sc.recs[i]
		s := b.shard(&run.ID)
		s.mu.Lock()
		swapped := false
		if t := s.traces[run.ID]; t != nil {
			if j := slices.Index(t.wal, old); j >= 0 {
				t.wal[j], swapped = copied, true
			}
		}
		s.mu.Unlock()
		if swapped {
			release = append(release, old)
			b.checkpointMoved.Add(1)
		} else {
			release = append(release, copied)
		}
	}
	b.cfg.Log.Release(release...)
	return true
}

// release drops the batch's references to the groups it interned.
func (cb *checkpointBatch) release(b *Buffer) {
	for _, g := range cb.interned {
		b.Release(g)
	}
}

// holds reports whether buffered trace id holds record ref.
func (b *Buffer) holds(id *[16]byte, ref Record) bool {
	s := b.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.traces[*id]
	return t != nil && slices.Contains(t.wal, ref)
}
