package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailsift/tailsift/internal/otlpwire"
)

// Versions before the segment log kept the write-ahead log in the Disk:
//
//	'w' | trace ID | record seq -> varint first arrival | varint root arrival
//	  | uvarint n | n x 8-byte group hash | per span: uvarint group, uvarint len, raw span
//	'G' | group hash -> resource hash | scope part;  'r' | resource hash -> resource part
//	('g' | group hash -> uvarint(len R) R S, older still)
//
// recoverLegacy reads such records once, after an upgrade; their spans
// are logged again when appended (Recovered.Records is nil), and the node
// then drops the old keys (LegacyPrefixes).

// LegacyPrefixes are the Disk key prefixes of the old write-ahead log.
var LegacyPrefixes = [][]byte{{walPrefix}, {groupPrefix}, {resourcePrefix}, {legacyGroupPrefix}}

// recoverLegacy calls fn once per trace of the old log, in trace ID
// order.
func (b *Buffer) recoverLegacy(fn func(*Recovered) error) (corrupt int, err error) {
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
	err = b.cfg.Legacy.Scan(WALPrefix, func(key, value []byte) error {
		if len(key) != walKeyLen {
			corrupt++
			return nil
		}
		var id [16]byte
		copy(id[:], key[1:17])
		if have && id != cur.ID {
			if err := flush(); err != nil {
				return err
			}
		}
		if !have {
			clear(cur.Spans)
			cur = Recovered{ID: id, Spans: cur.Spans[:0]}
			have = true
		}
		// The value is Badger's only during this call; the trace's spans
		// are yielded after its last record.
		if err := decodeRecord(&cur, bytes.Clone(value), lookup); err != nil {
			corrupt++
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
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
	v, err := b.cfg.Legacy.Get(groupKey(kb[:0], h), nil)
	if err != nil {
		legacy, lerr := b.cfg.Legacy.Get(legacyGroupKey(kb[:0], h), nil)
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
		if res, err = b.cfg.Legacy.Get(resourceKey(kb[:0], rh), nil); err != nil {
			return otlpwire.Group{}, fmt.Errorf("resource %x: %w", rh, err)
		}
		resources[rh] = res
	}
	return otlpwire.Group{Resource: res, Scope: v[8:]}, nil
}
