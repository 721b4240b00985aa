package decision

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
)

// sampleRecords are decisions as a node hands them off, each with its
// encoding as written into hand-off messages by earlier versions (when
// the cluster encoded records itself): a node of this version and one of
// an earlier version read each other's records.
var sampleRecords = []struct {
	rec  Record
	wire string
}{
	{Record{ID: [16]byte{3}, Kept: true, Threshold: 1 << 55, Attrs: []Attribute{{Key: AttrRule, Value: "errors"}}},
		"0a1003000000000000000000000000000000100119000000000000800022200a167461696c736966742e73616d706c696e672e72756c6512066572726f7273"},
	{Record{ID: [16]byte{4}}, "0a1004000000000000000000000000000000"},
	{Record{ID: [16]byte{5}, Kept: true}, "0a10050000000000000000000000000000001001"},
	{Record{ID: [16]byte{6}, Kept: true, Attrs: []Attribute{{Key: "a"}, {Value: "b"}}},
		"0a1006000000000000000000000000000000100122050a0161120022050a00120162"},
}

func TestRecordEncoding(t *testing.T) {
	for _, c := range sampleRecords {
		b, err := c.rec.AppendBinary([]byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(bytes.TrimPrefix(b, []byte("prefix"))); got != c.wire {
			t.Errorf("%+v encodes as\n%s, want\n%s", c.rec, got, c.wire)
		}
		wire, _ := hex.DecodeString(c.wire)
		var r Record
		if err := r.UnmarshalBinary(wire); err != nil {
			t.Fatalf("%s: %v", c.wire, err)
		}
		if !reflect.DeepEqual(r, c.rec) {
			t.Errorf("%s decodes as %+v, want %+v", c.wire, r, c.rec)
		}
		// Unknown fields (a newer sender's) are skipped.
		newer := append(bytes.Clone(wire), 0x28, 0x07, 0x32, 0x01, 0x00) // 5: varint 7, 6: bytes {0}
		if err := r.UnmarshalBinary(newer); err != nil || !reflect.DeepEqual(r, c.rec) {
			t.Errorf("with unknown fields: %+v, %v; want %+v", r, err, c.rec)
		}
	}
}

func TestRecordRejectsMalformed(t *testing.T) {
	id := append([]byte{0x0a, 0x10}, bytes.Repeat([]byte{1}, 16)...)
	for name, b := range map[string][]byte{
		"empty":                {},
		"truncated":            id[:10],
		"bad tag":              {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"short trace id":       {0x0a, 0x04, 1, 2, 3, 4},
		"trace id as varint":   {0x08, 0x01},
		"kept as bytes":        append(bytes.Clone(id), 0x12, 0x01, 0x01),
		"threshold as varint":  append(bytes.Clone(id), 0x18, 0x01),
		"attribute as varint":  append(bytes.Clone(id), 0x20, 0x01),
		"attribute truncated":  append(bytes.Clone(id), 0x22, 0x03, 0x0a, 0x05, 0x61),
		"attribute key varint": append(bytes.Clone(id), 0x22, 0x02, 0x08, 0x01),
	} {
		var r Record
		if err := r.UnmarshalBinary(b); !errors.Is(err, ErrMalformedRecord) {
			t.Errorf("%s: %v (%+v), want ErrMalformedRecord", name, err, r)
		}
	}
}

func FuzzRecordDecode(f *testing.F) {
	for _, c := range sampleRecords {
		wire, _ := hex.DecodeString(c.wire)
		f.Add(wire)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := r.UnmarshalBinary(b); err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes the same.
		again, _ := r.AppendBinary(nil)
		var r2 Record
		if err := r2.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("re-encoding changed the record: %+v, then %+v", r, r2)
		}
	})
}
