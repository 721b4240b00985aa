package buffer

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailsift/tailsift/internal/otlpwire"
)

// The write-ahead log (Config.WriteAhead): Append writes each trace's spans
// of the batch as one record, and waits for the Disk to sync it, before it
// touches RAM; so a span Append accepted survives a crash. A record holds
// what recovery needs to rebuild the trace as it was:
//
//	varint first arrival | varint root arrival (0: no root span in it)
//	uvarint n | n x 8-byte group hash | per span: uvarint group (0..n-1), uvarint len, raw span
//
// Groups are written once per interned group, under their hash: the
// resource's hash and the scope part; resource parts once per interned
// resource, under theirs. They are never deleted: there is one per
// resource and scope, overwritten by each run, so they grow only with
// distinct resources. A trace's records are deleted when it is released:
// dropped, delivered by the exporter, or handed off.

// walScratch is one Append's working memory for the log, pooled.
type walScratch struct {
	recs         []uint64 // per run of the batch: its record, 0 if logged already
	keys, values [][]byte
	buf          []byte
	offs         []int
	groups       indexed[*Group] // of the run being written
	newGroups    indexed[*Group]
	newResources indexed[*Resource]
}

var walScratchPool = sync.Pool{New: func() any { return new(walScratch) }}

// writeAhead logs bt and sets sc.recs to the record number of each run (0
// for a run already logged).
func (b *Buffer) writeAhead(sc *walScratch, bt *Batch, now int64) error {
	sc.buf, sc.offs, sc.keys, sc.values = sc.buf[:0], sc.offs[:0], sc.keys[:0], sc.values[:0]
	recs := sc.recs[:0]
	defer func() {
		sc.recs = recs
		// The pooled scratch must not keep groups alive, failed or not.
		sc.groups.reset()
		sc.newGroups.reset()
		sc.newResources.reset()
	}()
	for _, run := range bt.Traces {
		if run.Logged != nil {
			recs = append(recs, 0)
			continue
		}
		rec := b.walSeq.Add(1)
		recs = append(recs, rec)
		spans := bt.Spans[run.Start:run.End]
		sc.groups.reset()
		root := int64(0)
		for i := range spans {
			if _, ok := sc.groups.find(spans[i].Group); !ok {
				sc.groups.add(spans[i].Group)
			}
			if spans[i].Root {
				root = cmp.Or(run.RootSeen, now)
			}
		}
		sc.offs = append(sc.offs, len(sc.buf))
		sc.buf = walKey(sc.buf, &run.ID, rec)
		sc.offs = append(sc.offs, len(sc.buf))
		sc.buf = protowire.AppendVarint(sc.buf, protowire.EncodeZigZag(cmp.Or(run.FirstSeen, now)))
		sc.buf = protowire.AppendVarint(sc.buf, protowire.EncodeZigZag(root))
		sc.buf = protowire.AppendVarint(sc.buf, uint64(len(sc.groups.list)))
		for _, g := range sc.groups.list {
			sc.buf = binary.BigEndian.AppendUint64(sc.buf, g.hash)
			if _, ok := sc.newGroups.find(g); !ok && !g.persisted.Load() {
				sc.newGroups.add(g)
				if _, ok := sc.newResources.find(g.res); !ok && !g.res.persisted.Load() {
					sc.newResources.add(g.res)
				}
			}
		}
		for i := range spans {
			s := &spans[i]
			gi, _ := sc.groups.find(s.Group)
			sc.buf = protowire.AppendVarint(sc.buf, uint64(gi))
			sc.buf = protowire.AppendVarint(sc.buf, uint64(len(s.Raw)))
			sc.buf = append(sc.buf, s.Raw...)
		}
	}
	for _, r := range sc.newResources.list {
		sc.offs = append(sc.offs, len(sc.buf))
		sc.buf = resourceKey(sc.buf, r.hash)
		sc.offs = append(sc.offs, len(sc.buf))
		sc.buf = append(sc.buf, r.part...)
	}
	for _, g := range sc.newGroups.list {
		sc.offs = append(sc.offs, len(sc.buf))
		sc.buf = groupKey(sc.buf, g.hash)
		sc.offs = append(sc.offs, len(sc.buf))
		sc.buf = binary.BigEndian.AppendUint64(sc.buf, g.res.hash)
		sc.buf = append(sc.buf, g.wire.Scope...)
	}
	if len(sc.offs) == 0 {
		return nil
	}
	sc.offs = append(sc.offs, len(sc.buf))
	for i := 0; i+2 < len(sc.offs); i += 2 {
		sc.keys = append(sc.keys, sc.buf[sc.offs[i]:sc.offs[i+1]])
		sc.values = append(sc.values, sc.buf[sc.offs[i+1]:sc.offs[i+2]])
	}
	if err := b.cfg.Disk.Write(sc.keys, sc.values, 0, true); err != nil {
		b.walFailures.Add(1)
		var ra interface{ RetryAfter() time.Duration }
		if errors.As(err, &ra) {
			return ErrFull
		}
		return fmt.Errorf("%w: write-ahead log: %w", ErrStorage, err)
	}
	for _, r := range sc.newResources.list {
		r.persisted.Store(true)
	}
	for _, g := range sc.newGroups.list {
		g.persisted.Store(true)
	}
	clear(sc.keys)
	clear(sc.values)
	b.walPuts.Add(1)
	b.walRecords.Add(int64(len(sc.keys)))
	b.walBytes.Add(int64(len(sc.buf)))
	return nil
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

// Forget deletes what the disk holds of a taken trace, once the trace
// needs it no more (dropped, delivered, handed off): its write-ahead
// records (spilled bytes are deleted by Load). Safe to call more than once.
func (b *Buffer) Forget(t *Trace) {
	b.ForgetRecords(&t.ID, t.wal)
	t.wal = nil
}

// ForgetRecords deletes write-ahead records of trace id, such as the
// records of recovered spans that follow a remembered drop decision.
func (b *Buffer) ForgetRecords(id *[16]byte, recs []uint64) {
	if b.cfg.Disk == nil || len(recs) == 0 {
		return
	}
	keys := make([][]byte, len(recs))
	buf := make([]byte, 0, len(recs)*walKeyLen)
	for i, r := range recs {
		buf = walKey(buf, id, r)
		keys[i] = buf[len(buf)-walKeyLen:]
	}
	b.cfg.Disk.Delete(keys...)
}

// Recovered is one trace read back from the write-ahead log.
type Recovered struct {
	ID                  [16]byte
	FirstSeen, RootSeen int64 // arrival times (RootSeen 0: no root span)
	Records             []uint64
	Spans               []RecoveredSpan
}

// RecoveredSpan is one span of a Recovered trace.
type RecoveredSpan struct {
	Group otlpwire.Group
	Raw   []byte
}

// Recover reads the write-ahead log and calls fn once per trace, in trace
// ID order; the Recovered and its slices are valid during the call only.
// Call it before the first Append: later record numbers continue after
// the largest found. A record that cannot be decoded is skipped and
// counted in the returned number.
func (b *Buffer) Recover(fn func(*Recovered) error) (corrupt int, err error) {
	if b.cfg.Disk == nil {
		return 0, nil
	}
	groups := map[uint64]otlpwire.Group{}
	resources := map[uint64][]byte{}
	lookup := func(h uint64) (otlpwire.Group, error) {
		if g, ok := groups[h]; ok {
			return g, nil
		}
		g, err := b.readGroup(h, resources)
		if err != nil {
			return g, fmt.Errorf("%w: group %x: %w", errCorruptRecord, h, err)
		}
		groups[h] = g
		return g, nil
	}
	var cur Recovered
	var have bool
	flush := func() error {
		if !have {
			return nil
		}
		have = false
		return fn(&cur)
	}
	var maxRec uint64
	err = b.cfg.Disk.Scan(WALPrefix, func(key, value []byte) error {
		if len(key) != walKeyLen {
			corrupt++
			return nil
		}
		var id [16]byte
		copy(id[:], key[1:17])
		rec := binary.BigEndian.Uint64(key[17:])
		maxRec = max(maxRec, rec)
		if have && id != cur.ID {
			if err := flush(); err != nil {
				return err
			}
		}
		if !have {
			clear(cur.Spans)
			cur = Recovered{ID: id, Records: cur.Records[:0], Spans: cur.Spans[:0]}
			have = true
		}
		// The value is Badger's only during this call; the trace's spans
		// are yielded after its last record.
		if err := decodeRecord(&cur, bytes.Clone(value), lookup); err != nil {
			corrupt++
			b.ForgetRecords(&id, []uint64{rec})
			return nil
		}
		cur.Records = append(cur.Records, rec)
		return nil
	})
	if err == nil {
		err = flush()
	}
	b.walSeq.Store(max(b.walSeq.Load(), maxRec))
	return corrupt, err
}

var errCorruptRecord = errors.New("corrupt write-ahead record")

// decodeRecord adds one record's spans and arrival times to r, looking
// group keys up by hash. The span bytes alias value.
func decodeRecord(r *Recovered, value []byte, group func(hash uint64) (otlpwire.Group, error)) error {
	first, n := protowire.ConsumeVarint(value)
	if n < 0 {
		return errCorruptRecord
	}
	value = value[n:]
	root, n := protowire.ConsumeVarint(value)
	if n < 0 {
		return errCorruptRecord
	}
	value = value[n:]
	ng, n := protowire.ConsumeVarint(value)
	if n < 0 || ng > uint64(len(value)-n)/8 {
		return errCorruptRecord
	}
	value = value[n:]
	keys := make([]otlpwire.Group, ng)
	for i := range keys {
		key, err := group(binary.BigEndian.Uint64(value[8*i:]))
		if err != nil {
			return err
		}
		keys[i] = key
	}
	value = value[8*ng:]
	start := len(r.Spans)
	for len(value) > 0 {
		g, n := protowire.ConsumeVarint(value)
		l, m := protowire.ConsumeVarint(value[max(n, 0):])
		if n < 0 || m < 0 || g >= ng || l > uint64(len(value)-n-m) {
			clear(r.Spans[start:])
			r.Spans = r.Spans[:start]
			return errCorruptRecord
		}
		r.Spans = append(r.Spans, RecoveredSpan{Group: keys[g], Raw: value[n+m : n+m+int(l)]})
		value = value[n+m+int(l):]
	}
	if f := protowire.DecodeZigZag(first); r.FirstSeen == 0 || f < r.FirstSeen {
		r.FirstSeen = f
	}
	if rs := protowire.DecodeZigZag(root); rs != 0 && (r.RootSeen == 0 || rs < r.RootSeen) {
		r.RootSeen = rs
	}
	return nil
}

// readGroup reads group h of the log's group table, and its resource part
// (cached in resources). A group written by an older version, as one key
// "uvarint(len R) R S" under the legacy prefix, is read too.
func (b *Buffer) readGroup(h uint64, resources map[uint64][]byte) (otlpwire.Group, error) {
	var kb [groupKeyLen]byte
	v, err := b.cfg.Disk.Get(groupKey(kb[:0], h), nil)
	if err != nil {
		legacy, lerr := b.cfg.Disk.Get(legacyGroupKey(kb[:0], h), nil)
		if lerr != nil {
			return otlpwire.Group{}, err
		}
		n, m := protowire.ConsumeVarint(legacy)
		if m < 0 || n > uint64(len(legacy)-m) {
			return otlpwire.Group{}, errCorruptRecord
		}
		return otlpwire.Group{Resource: legacy[m : m+int(n)], Scope: legacy[m+int(n):]}, nil
	}
	if len(v) < 8 {
		return otlpwire.Group{}, errCorruptRecord
	}
	rh := binary.BigEndian.Uint64(v)
	res, ok := resources[rh]
	if !ok {
		if res, err = b.cfg.Disk.Get(resourceKey(kb[:0], rh), nil); err != nil {
			return otlpwire.Group{}, fmt.Errorf("resource %x: %w", rh, err)
		}
		resources[rh] = res
	}
	return otlpwire.Group{Resource: res, Scope: v[8:]}, nil
}
