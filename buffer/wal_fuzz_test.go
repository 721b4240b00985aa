package buffer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/tailsift/tailsift/internal/otlpwire"
	"google.golang.org/protobuf/encoding/protowire"
)

// FuzzDecodeRecord: a write-ahead record read back from a damaged disk is
// decoded or refused, never a panic, and what it yields lies within it.
func FuzzDecodeRecord(f *testing.F) {
	known := map[uint64]otlpwire.Group{7: {Resource: []byte("service.name=a"), Scope: []byte("scope")}}
	lookup := func(h uint64) (otlpwire.Group, error) {
		if k, ok := known[h]; ok {
			return k, nil
		}
		return otlpwire.Group{}, errors.New("no such group")
	}
	good := protowire.AppendVarint(nil, protowire.EncodeZigZag(1000))
	good = protowire.AppendVarint(good, protowire.EncodeZigZag(1100))
	good = protowire.AppendVarint(good, 1)
	good = binary.BigEndian.AppendUint64(good, 7)
	for _, s := range []string{"span-one", "span-two"} {
		good = protowire.AppendVarint(good, 0)
		good = protowire.AppendVarint(good, uint64(len(s)))
		good = append(good, s...)
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, value []byte) {
		var r Recovered
		if err := decodeRecord(&r, value, lookup); err != nil {
			if len(r.Spans) != 0 {
				t.Fatalf("refused record left %d spans", len(r.Spans))
			}
			return
		}
		for _, s := range r.Spans {
			if !bytes.Contains(value, s.Raw) || !bytes.Equal(s.Group.Resource, known[7].Resource) || !bytes.Equal(s.Group.Scope, known[7].Scope) {
				t.Fatalf("span %q (group %q) not from the record", s.Raw, groupName(s.Group))
			}
		}
	})
}
