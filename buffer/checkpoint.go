package buffer

import (
	"slices"
	"time"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailsift/tailsift/internal/otlpwire"
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

// checkpoint copies the live records of segment seg forward, and reports
// whether all of them went.
func (b *Buffer) checkpoint(seg uint32) bool {
	resources := map[uint64][]byte{}
	groups := map[uint64]otlpwire.Group{}
	var r Recovered
	ok := true
	err := b.cfg.Log.ReadSegment(seg, func(ref wal.Ref, typ byte, p []byte) error {
		switch typ {
		case recResource:
			if id, n := protowire.ConsumeVarint(p); n > 0 {
				resources[id] = slices.Clone(p[n:])
			}
		case recGroup:
			id, n := protowire.ConsumeVarint(p)
			rid, m := protowire.ConsumeVarint(p[max(n, 0):])
			if res, found := resources[rid]; n > 0 && m > 0 && found {
				groups[id] = otlpwire.Group{Resource: res, Scope: slices.Clone(p[n+m:])}
			}
		case recSpans:
			if len(p) < 16 || !b.holds((*[16]byte)(p[:16]), ref) {
				return nil
			}
			clear(r.Spans)
			r = Recovered{Spans: r.Spans[:0]}
			if !decodeSpans(&r, p, groups) {
				return nil // recovery counts it
			}
			if !b.moveRecord(&r, ref) {
				ok = false
			}
		}
		return nil
	})
	if err != nil {
		b.checkpointFailures.Add(1)
		return false
	}
	b.checkpoints.Add(1)
	return ok
}

// holds reports whether buffered trace id holds record ref.
func (b *Buffer) holds(id *[16]byte, ref Record) bool {
	s := b.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.traces[*id]
	return t != nil && slices.Contains(t.wal, ref)
}

// moveRecord writes r's spans as a new record and swaps it for old in
// the trace that holds old; if the trace went meanwhile (its taker
// releases old), the copy is released instead.
func (b *Buffer) moveRecord(r *Recovered, old Record) bool {
	var bt Batch
	bt.StartTraceSeen(r.ID, r.FirstSeen, r.RootSeen)
	type parts struct {
		res, scope *byte
		rl, sl     int
	}
	interned := map[parts]*Group{}
	defer func() {
		for _, g := range interned {
			b.Release(g)
		}
	}()
	for i, s := range r.Spans {
		key := parts{unsafe.SliceData(s.Group.Resource), unsafe.SliceData(s.Group.Scope), len(s.Group.Resource), len(s.Group.Scope)}
		g := interned[key]
		if g == nil {
			var err error
			if g, err = b.Acquire(s.Group); err != nil {
				return false
			}
			interned[key] = g
		}
		// Root marks the record's root arrival (writeAhead keeps RootSeen
		// for a run with a root span).
		bt.AddSpan(Span{Group: g, Raw: s.Raw, Root: i == 0 && r.RootSeen != 0})
	}
	sc := walScratchPool.Get().(*walScratch)
	defer walScratchPool.Put(sc)
	if err := b.writeAhead(sc, &bt, r.FirstSeen, true); err != nil {
		return false
	}
	copied := sc.recs[0]
	s := b.shard(&r.ID)
	s.mu.Lock()
	swapped := false
	if t := s.traces[r.ID]; t != nil {
		if i := slices.Index(t.wal, old); i >= 0 {
			t.wal[i], swapped = copied, true
		}
	}
	s.mu.Unlock()
	if swapped {
		b.cfg.Log.Release(old)
		b.checkpointMoved.Add(1)
	} else {
		b.cfg.Log.Release(copied)
	}
	return true
}
