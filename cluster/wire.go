package cluster

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tailsift/tailsift/internal/otlpwire"
)

// A hand-off message moves buffered traces and remembered decisions to the
// node that owns their trace IDs now. It is a protobuf message written and
// read with protowire:
//
//	message Handoff {
//	  bytes traces = 1;                // an OTLP ExportTraceServiceRequest
//	  repeated Arrival arrivals = 2;   // one per trace in traces
//	  repeated bytes decisions = 3;    // decision records (Decision.Record), as the engine encodes them
//	}
//	message Arrival {
//	  bytes trace_id = 1;
//	  int64 first_seen_age_nanos = 2;  // how long ago, at the sender, the first span arrived
//	  int64 root_seen_age_nanos = 3;   // the same for the root span; absent if none
//	}
//
// Times travel as ages, not timestamps, so clock skew between nodes does
// not move decisions; the transfer time itself is not counted. The
// records are the engine's own messages (decision.Record's encoding);
// the cluster does not read them.

// handoff is a decoded hand-off message.
type handoff struct {
	traces    []byte // ExportTraceServiceRequest
	arrivals  []arrivalAge
	decisions [][]byte
}

type arrivalAge struct {
	id            [16]byte
	firstAge      int64
	rootAge       int64
	hasRoot       bool
	firstSeenNano int64 // set by the receiver from firstAge
}

func (h *handoff) appendTo(b []byte) []byte {
	if len(h.traces) > 0 {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, h.traces)
	}
	var msg []byte
	for _, a := range h.arrivals {
		msg = protowire.AppendTag(msg[:0], 1, protowire.BytesType)
		msg = protowire.AppendBytes(msg, a.id[:])
		msg = protowire.AppendTag(msg, 2, protowire.VarintType)
		msg = protowire.AppendVarint(msg, uint64(a.firstAge))
		if a.hasRoot {
			msg = protowire.AppendTag(msg, 3, protowire.VarintType)
			msg = protowire.AppendVarint(msg, uint64(a.rootAge))
		}
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, msg)
	}
	for _, d := range h.decisions {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, d)
	}
	return b
}

var errMalformed = errors.New("malformed hand-off message")

// malformed wraps a wire error of otlpwire.MessageFields.
func malformed(err error) error { return fmt.Errorf("%w: %w", errMalformed, err) }

// want checks a known field's wire type.
func want(f otlpwire.Field, expected protowire.Type, what string) error {
	if f.Type != expected {
		return fmt.Errorf("%w: %s has wire type %d", errMalformed, what, f.Type)
	}
	return nil
}

func traceID(v []byte, what string) ([16]byte, error) {
	var id [16]byte
	if len(v) != 16 {
		return id, fmt.Errorf("%w: %s trace_id has %d bytes, want 16", errMalformed, what, len(v))
	}
	copy(id[:], v)
	return id, nil
}

// decode parses a hand-off message. The result references b. Unknown
// fields are skipped, for newer senders.
func (h *handoff) decode(b []byte) error {
	*h = handoff{}
	for f, err := range otlpwire.MessageFields(b) {
		if err != nil {
			return malformed(err)
		}
		switch f.Num {
		case 1:
			if err := want(f, protowire.BytesType, "traces"); err != nil {
				return err
			}
			h.traces = f.Bytes
		case 2:
			if err := want(f, protowire.BytesType, "arrival"); err != nil {
				return err
			}
			a, err := decodeArrival(f.Bytes)
			if err != nil {
				return err
			}
			h.arrivals = append(h.arrivals, a)
		case 3:
			if err := want(f, protowire.BytesType, "decision"); err != nil {
				return err
			}
			h.decisions = append(h.decisions, f.Bytes)
		}
	}
	return nil
}

func decodeArrival(b []byte) (arrivalAge, error) {
	var a arrivalAge
	var hasID bool
	for f, err := range otlpwire.MessageFields(b) {
		if err != nil {
			return a, malformed(err)
		}
		switch f.Num {
		case 1:
			if err = want(f, protowire.BytesType, "arrival.trace_id"); err == nil {
				a.id, err = traceID(f.Bytes, "arrival")
				hasID = true
			}
		case 2:
			if err = want(f, protowire.VarintType, "arrival.first_seen_age_nanos"); err == nil {
				a.firstAge = int64(f.Uint)
			}
		case 3:
			if err = want(f, protowire.VarintType, "arrival.root_seen_age_nanos"); err == nil {
				a.rootAge, a.hasRoot = int64(f.Uint), true
			}
		}
		if err != nil {
			return a, err
		}
	}
	switch {
	case !hasID:
		return a, fmt.Errorf("%w: arrival without trace_id", errMalformed)
	case a.firstAge < 0 || a.rootAge < 0:
		return a, fmt.Errorf("%w: negative age", errMalformed)
	}
	return a, nil
}
