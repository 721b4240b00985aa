package decision

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailsift/tailsift/buffer"
	"github.com/tailsift/tailsift/internal/otlpwire"
)

// What the cluster needs from the engine when the ring changes: the
// buffered traces and remembered decisions of trace IDs this node no longer
// owns go to their new owner, and arrive there through ConsumeGrouped
// (with their Arrival) and AdoptDecisions.

// Record is a remembered decision, as handed to another node.
type Record struct {
	ID        [16]byte
	Kept      bool
	Threshold uint64      // kept: the sampling threshold, 0 for p=1
	Attrs     []Attribute // kept: root-span attributes; read-only
}

// A Record travels to another node encoded by AppendBinary, a protobuf
// message written and read with protowire (the cluster carries it as
// opaque bytes inside its hand-off message):
//
//	message Decision {
//	  bytes trace_id = 1;
//	  bool kept = 2;
//	  fixed64 threshold = 3;           // kept at p<1: the sampling threshold
//	  repeated Attribute attrs = 4;    // root-span attributes of kept traces
//	}
//	message Attribute { string key = 1; string value = 2; }
//
// Nodes of different versions meet during a rolling upgrade: fields are
// only ever added, and readers skip those they do not know.

// AppendBinary appends the record's encoding to b
// (encoding.BinaryAppender). It does not fail.
func (r *Record) AppendBinary(b []byte) ([]byte, error) {
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, r.ID[:])
	if r.Kept {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if r.Threshold != 0 {
		b = protowire.AppendTag(b, 3, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, r.Threshold)
	}
	for _, a := range r.Attrs {
		size := 2 + protowire.SizeBytes(len(a.Key)) + protowire.SizeBytes(len(a.Value)) // two one-byte tags
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, a.Key)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, a.Value)
	}
	return b, nil
}

// ErrMalformedRecord is the error of UnmarshalBinary for bytes that are
// not a decision record.
var ErrMalformedRecord = errors.New("malformed decision record")

// UnmarshalBinary reads a record written by AppendBinary, of this version
// or another (unknown fields are skipped), replacing r. It copies what it
// keeps: b may be reused afterwards.
func (r *Record) UnmarshalBinary(b []byte) error {
	*r = Record{}
	var hasID bool
	for f, err := range otlpwire.MessageFields(b) {
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMalformedRecord, err)
		}
		switch f.Num {
		case 1:
			if err = wantType(f, protowire.BytesType, "trace_id"); err == nil {
				if len(f.Bytes) != 16 {
					return fmt.Errorf("%w: trace_id has %d bytes, want 16", ErrMalformedRecord, len(f.Bytes))
				}
				r.ID, hasID = [16]byte(f.Bytes), true
			}
		case 2:
			if err = wantType(f, protowire.VarintType, "kept"); err == nil {
				r.Kept = f.Uint != 0
			}
		case 3:
			if err = wantType(f, protowire.Fixed64Type, "threshold"); err == nil {
				r.Threshold = f.Uint
			}
		case 4:
			if err = wantType(f, protowire.BytesType, "attrs"); err == nil {
				var a Attribute
				a, err = unmarshalAttribute(f.Bytes)
				r.Attrs = append(r.Attrs, a)
			}
		}
		if err != nil {
			return err
		}
	}
	if !hasID {
		return fmt.Errorf("%w: no trace_id", ErrMalformedRecord)
	}
	return nil
}

func unmarshalAttribute(b []byte) (Attribute, error) {
	var a Attribute
	for f, err := range otlpwire.MessageFields(b) {
		if err != nil {
			return a, fmt.Errorf("%w: %w", ErrMalformedRecord, err)
		}
		if f.Num != 1 && f.Num != 2 {
			continue
		}
		if err := wantType(f, protowire.BytesType, "attribute"); err != nil {
			return a, err
		}
		if f.Num == 1 {
			a.Key = string(f.Bytes)
		} else {
			a.Value = string(f.Bytes)
		}
	}
	return a, nil
}

// wantType checks a known field's wire type.
func wantType(f otlpwire.Field, want protowire.Type, what string) error {
	if f.Type != want {
		return fmt.Errorf("%w: %s has wire type %d", ErrMalformedRecord, what, f.Type)
	}
	return nil
}

// TakeMoved removes the buffered traces for which moved returns true, for
// hand-off, and counts their spans as handed off. The caller owns them: if
// they cannot be delivered it must give them back through ConsumeGrouped.
// It waits for a decision tick in progress, so a trace is either decided
// here or taken, never both.
func (e *Engine) TakeMoved(moved func(id *[16]byte) bool, dst []*buffer.Trace) []*buffer.Trace {
	e.decideMu.Lock()
	defer e.decideMu.Unlock()
	n := len(dst)
	dst = e.buf.TakeIf(moved, dst)
	var spans, lost int64
	kept := dst[:n]
	for _, t := range dst[n:] {
		// The new owner logs the spans if it has a write-ahead log; the
		// records here go now (a crash during the hand-off loses them).
		err := e.buf.Load(t)
		e.buf.Forget(t)
		if err != nil {
			lost += int64(t.SpanCount)
			continue
		}
		spans += int64(t.SpanCount)
		kept = append(kept, t)
	}
	clear(dst[len(kept):])
	e.count.handedOff.Add(spans)
	e.count.droppedStorage.Add(lost)
	return kept
}

// Decisions appends the remembered decisions of the trace IDs for which
// moved returns true.
func (e *Engine) Decisions(moved func(id *[16]byte) bool, dst []Record) []Record {
	e.kept.each(func(id *[16]byte, info keptInfo) {
		if moved(id) {
			dst = append(dst, Record{ID: *id, Kept: true, Threshold: info.threshold, Attrs: info.attrs})
		}
	})
	e.dropped.each(func(id *[16]byte, _ struct{}) {
		if moved(id) {
			dst = append(dst, Record{ID: *id})
		}
	})
	return dst
}

// AdoptDecisions remembers decisions made by another node, so late spans of
// those traces arriving here follow them. A trace that this node has
// already decided keeps its own decision.
func (e *Engine) AdoptDecisions(recs []Record) {
	for i := range recs {
		r := &recs[i]
		if r.Kept {
			if !e.dropped.contains(r.ID) {
				e.kept.addIfAbsent(r.ID, keptInfo{threshold: r.Threshold, attrs: r.Attrs})
			}
		} else if _, kept := e.kept.get(r.ID); !kept {
			e.dropped.addIfAbsent(r.ID, struct{}{})
		}
	}
}

// SetShare sets the fraction of the cluster's traffic this node sees; the
// policies' cluster-wide targets (adaptive, rate_limit) are scaled by it.
// It carries over to policy sets installed later.
func (e *Engine) SetShare(f float64) {
	e.policyMu.Lock()
	defer e.policyMu.Unlock()
	e.share = f
	e.policies.Load().set.SetShare(f)
}
