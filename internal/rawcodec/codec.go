package rawcodec

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Codec marshals *[]byte and []byte as themselves, and unmarshals into a
// *[]byte by appending to its [:0] (so a pooled slice is reused). Generated
// proto messages are handled as the default codec would, so the server's
// other services (health, reflection) keep working.
type Codec struct{}

// Name is "proto": to peers this is the ordinary protobuf codec.
func (Codec) Name() string { return "proto" }

// Marshal returns v's bytes without copying them.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *[]byte:
		return mem.BufferSlice{mem.SliceBuffer(*m)}, nil
	case []byte:
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	case proto.Message:
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return nil, fmt.Errorf("rawcodec: cannot marshal %T", v)
}

// Unmarshal copies the message bytes into *v (reusing its capacity).
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *[]byte:
		b := (*m)[:0]
		if n := data.Len(); cap(b) < n {
			b = make([]byte, 0, n)
		}
		for _, buf := range data {
			b = append(b, buf.ReadOnlyData()...)
		}
		*m = b
		return nil
	case proto.Message:
		return proto.Unmarshal(data.Materialize(), m)
	}
	return fmt.Errorf("rawcodec: cannot unmarshal into %T", v)
}
