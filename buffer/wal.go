package buffer

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailsift/tailsift/internal/otlpwire"
	"github.com/tailsift/tailsift/internal/wal"
)

// The write-ahead log (Config.Log): Append writes each trace's spans of
// the batch as one record, and waits until the log has synced it, before
// it touches RAM; so a span Append accepted survives a crash or a power
// cut. Records of one segment of the log stand alone: the resource and
// group parts they use are defined in the same segment, before them, by
// numbers local to the segment:
//
//	resource: uvarint id | resource part
//	group:    uvarint id | uvarint resource id | scope part
//	spans:    trace ID | zigzag first arrival | zigzag root arrival (0: none)
//	          | per span: uvarint group id, uvarint len, raw span
//
// So a group's parts go with the records that use them: when the log
// deletes a segment nothing else refers to it. A trace's records are
// released (Forget) when it is dropped, delivered by the exporter, or
// handed off; the log deletes its oldest segments once nothing in them is
// live, and a checkpoint copies the few live records of an old segment
// forward so that one slow trace cannot pin the log.

// Record names one write-ahead record of a trace.
type Record = wal.Ref

const (
	recResource = 1
	recGroup    = 2
	recSpans    = 3
)

// walScratch is one Append's working memory for the log, pooled.
type walScratch struct {
	recs   []Record // per run of the batch: its record, 0 if logged already
	frames []byte   // per span: uvarint group id, uvarint len
	head   []byte
	parts  [][]byte
	defBuf []byte
	groups indexed[*Group] // of the run being written
}

var walScratchPool = sync.Pool{New: func() any { return new(walScratch) }}

func (sc *walScratch) reset() {
	clear(sc.parts)
	sc.parts = sc.parts[:0]
	sc.groups.reset() // the pooled scratch must not keep groups alive
}

// writeAhead logs bt and sets sc.recs to the record of each run (0 for a
// run already logged). rewrite is for checkpoints (wal.Log.Rewrite).
func (b *Buffer) writeAhead(sc *walScratch, bt *Batch, now int64, rewrite bool) error {
	sc.recs = sc.recs[:0]
	defer sc.reset()
	fill := func(w *wal.Writer) {
		for _, run := range bt.Traces {
			if run.Logged != nil {
				sc.recs = append(sc.recs, 0)
				continue
			}
			sc.recs = append(sc.recs, b.appendRun(w, sc, bt, &run, now))
		}
	}
	write := b.cfg.Log.Write
	if rewrite {
		write = b.cfg.Log.Rewrite
	}
	if err := write(fill); err != nil {
		b.walFailures.Add(1)
		if _, ok := retryAfter(err); ok {
			return err // full, behind or hung: the client retries
		}
		return fmt.Errorf("%w: write-ahead log: %w", ErrStorage, err)
	}
	b.walPuts.Add(1)
	return nil
}

func retryAfter(err error) (time.Duration, bool) {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter(), true
	}
	return 0, false
}

// appendRun writes one run's record, after the definitions of the groups
// it uses that its segment lacks (called by the log, under its lock).
func (b *Buffer) appendRun(w *wal.Writer, sc *walScratch, bt *Batch, run *BatchTrace, now int64) Record {
	spans := bt.Spans[run.Start:run.End]
	sc.groups.reset()
	size := 16 + 2*binary10
	root := int64(0)
	for i := range spans {
		if _, ok := sc.groups.find(spans[i].Group); !ok {
			g := spans[i].Group
			sc.groups.add(g)
			size += len(g.res.part) + len(g.wire.Scope) + 3*binary10
		}
		if spans[i].Root {
			root = cmp.Or(run.RootSeen, now)
		}
		size += 2*binary10 + len(spans[i].Raw)
	}
	// The definitions and the record must land in one segment.
	w.Fit(size)
	seg := w.Segment()
	for _, g := range sc.groups.list {
		b.defineGroup(w, sc, g, seg)
	}
	sc.head = append(sc.head[:0], run.ID[:]...)
	sc.head = protowire.AppendVarint(sc.head, protowire.EncodeZigZag(cmp.Or(run.FirstSeen, now)))
	sc.head = protowire.AppendVarint(sc.head, protowire.EncodeZigZag(root))
	sc.frames = sc.frames[:0]
	for i := range spans {
		sc.frames = protowire.AppendVarint(sc.frames, uint64(spans[i].Group.walDef.Load()&0xffffffff))
		sc.frames = protowire.AppendVarint(sc.frames, uint64(len(spans[i].Raw)))
	}
	// Parts alias sc.frames, which no longer grows.
	sc.parts = append(sc.parts[:0], sc.head)
	frames := sc.frames
	for i := range spans {
		_, n := protowire.ConsumeVarint(frames)
		_, m := protowire.ConsumeVarint(frames[n:])
		sc.parts = append(sc.parts, frames[:n+m], spans[i].Raw)
		frames = frames[n+m:]
	}
	return w.Append(recSpans, true, sc.parts...)
}

// binary10 is the most bytes a uvarint of a 64-bit number takes.
const binary10 = 10

// defineGroup writes g's resource and group definitions into segment
// seg, unless written there already.
func (b *Buffer) defineGroup(w *wal.Writer, sc *walScratch, g *Group, seg uint32) {
	if g.walDef.Load()>>32 == uint64(seg) {
		return
	}
	r := g.res
	if r.walDef.Load()>>32 != uint64(seg) {
		id := w.NextID()
		sc.defBuf = protowire.AppendVarint(sc.defBuf[:0], uint64(id))
		w.Append(recResource, false, sc.defBuf, r.part)
		r.walDef.Store(uint64(seg)<<32 | uint64(id))
	}
	id := w.NextID()
	sc.defBuf = protowire.AppendVarint(sc.defBuf[:0], uint64(id))
	sc.defBuf = protowire.AppendVarint(sc.defBuf, r.walDef.Load()&0xffffffff)
	w.Append(recGroup, false, sc.defBuf, g.wire.Scope)
	g.walDef.Store(uint64(seg)<<32 | uint64(id))
}

// Delivered forgets the trace's records on disk (Buffer.Forget): the
// exporter calls it once it has sent the trace or counted it failed (sent
// is ignored: keeping the records of a failed trace would replay it after
// every restart).
func (t *Trace) Delivered(bool) {
	if t.owner != nil {
		t.owner.Forget(t)
	}
}

// Forget releases the write-ahead records of a taken trace, once it
// needs them no more (dropped, delivered, handed off). Safe to call more
// than once.
func (b *Buffer) Forget(t *Trace) {
	b.ForgetRecords(t.wal)
	t.wal = nil
}

// ForgetRecords releases write-ahead records, such as the records of
// recovered spans that follow a remembered drop decision.
func (b *Buffer) ForgetRecords(recs []Record) {
	if b.cfg.Log == nil || len(recs) == 0 {
		return
	}
	b.cfg.Log.Release(recs...) // a trace's records are never 0 (Append keeps 0 out)
}

// Recovered is one record read back from the write-ahead log: spans of
// one trace.
type Recovered struct {
	ID                  [16]byte
	FirstSeen, RootSeen int64    // arrival times (RootSeen 0: no root span)
	Records             []Record // that hold the spans; nil for a legacy record, logged again when appended
	Spans               []RecoveredSpan
}

// RecoveredSpan is one span of a Recovered trace.
type RecoveredSpan struct {
	Group otlpwire.Group
	Raw   []byte
}

// Recover reads the write-ahead log (Config.Log, or Config.Replay), and
// the records an older version kept in the Disk, and calls fn once per record, in the order written;
// the Recovered and its slices are valid during the call only. Call it
// once, before the first Append. A record that cannot be decoded is
// skipped and counted in the returned number.
func (b *Buffer) Recover(fn func(*Recovered) error) (corrupt int, err error) {
	if b.cfg.Legacy != nil {
		if corrupt, err = b.recoverLegacy(fn); err != nil {
			return corrupt, err
		}
	}
	log := cmp.Or(b.cfg.Log, b.cfg.Replay)
	if log == nil {
		return corrupt, nil
	}
	var (
		seg  uint32
		defs segmentDefs
		cur  Recovered
	)
	err = log.Replay(func(ref wal.Ref, typ byte, p []byte) error {
		if ref.Segment() != seg { // definitions are local to a segment
			seg = ref.Segment()
			defs.reset()
		}
		switch typ {
		case recResource, recGroup:
			if !defs.read(typ, p) {
				corrupt++
			}
		case recSpans:
			clear(cur.Spans)
			cur = Recovered{Records: append(cur.Records[:0], ref), Spans: cur.Spans[:0]}
			if !decodeSpans(&cur, p, defs.groups) {
				corrupt++
				log.Release(ref)
				return nil
			}
			return fn(&cur)
		default:
			corrupt++
		}
		return nil
	})
	return corrupt, err
}

// segmentDefs are the resource and group definitions read so far in one
// segment, by their ids.
type segmentDefs struct {
	resources map[uint64][]byte
	groups    map[uint64]otlpwire.Group
}

func (d *segmentDefs) reset() {
	clear(d.resources)
	clear(d.groups)
}

// read adds the definition in record p of type typ (recResource or
// recGroup), copying its parts; false if it does not read.
func (d *segmentDefs) read(typ byte, p []byte) bool {
	if d.resources == nil {
		d.resources, d.groups = map[uint64][]byte{}, map[uint64]otlpwire.Group{}
	}
	id, n := protowire.ConsumeVarint(p)
	if n < 0 {
		return false
	}
	if typ == recResource {
		d.resources[id] = slices.Clone(p[n:])
		return true
	}
	rid, m := protowire.ConsumeVarint(p[n:])
	res, ok := d.resources[rid]
	if m < 0 || !ok {
		return false
	}
	d.groups[id] = otlpwire.Group{Resource: res, Scope: slices.Clone(p[n+m:])}
	return true
}

// decodeSpans reads a spans record into r. The span bytes alias p.
func decodeSpans(r *Recovered, p []byte, groups map[uint64]otlpwire.Group) bool {
	if len(p) < 16 {
		return false
	}
	copy(r.ID[:], p)
	p = p[16:]
	first, n := protowire.ConsumeVarint(p)
	if n < 0 {
		return false
	}
	p = p[n:]
	root, n := protowire.ConsumeVarint(p)
	if n < 0 {
		return false
	}
	p = p[n:]
	r.FirstSeen, r.RootSeen = protowire.DecodeZigZag(first), protowire.DecodeZigZag(root)
	for len(p) > 0 {
		gid, n := protowire.ConsumeVarint(p)
		l, m := protowire.ConsumeVarint(p[max(n, 0):])
		g, ok := groups[gid]
		if n < 0 || m < 0 || !ok || l > uint64(len(p)-n-m) {
			return false
		}
		r.Spans = append(r.Spans, RecoveredSpan{Group: g, Raw: p[n+m : n+m+int(l)]})
		p = p[n+m+int(l):]
	}
	return true
}
