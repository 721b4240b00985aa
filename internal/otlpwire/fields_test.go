package otlpwire

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// collectFields ranges over MessageFields(b): the fields, and the error
// that ended it if any.
func collectFields(b []byte) ([]Field, error) {
	var fs []Field
	for f, err := range MessageFields(b) {
		if err != nil {
			return fs, err
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// appendFields encodes fs (no groups) as protowire writes them.
func appendFields(b []byte, fs []Field) []byte {
	for _, f := range fs {
		b = protowire.AppendTag(b, f.Num, f.Type)
		switch f.Type {
		case protowire.BytesType:
			b = protowire.AppendBytes(b, f.Bytes)
		case protowire.VarintType:
			b = protowire.AppendVarint(b, f.Uint)
		case protowire.Fixed64Type:
			b = protowire.AppendFixed64(b, f.Uint)
		case protowire.Fixed32Type:
			b = protowire.AppendFixed32(b, uint32(f.Uint))
		}
	}
	return b
}

func TestMessageFields(t *testing.T) {
	fields := []Field{
		{Num: 1, Type: protowire.BytesType, Bytes: []byte("abc")},
		{Num: 2, Type: protowire.VarintType, Uint: 300},
		{Num: 3, Type: protowire.Fixed64Type, Uint: 1 << 60},
		{Num: 4, Type: protowire.Fixed32Type, Uint: 1 << 31},
		{Num: 1000, Type: protowire.BytesType, Bytes: []byte{}},
	}
	msg := appendFields(nil, fields)
	got, err := collectFields(msg)
	if err != nil || !reflect.DeepEqual(got, fields) {
		t.Fatalf("MessageFields = %+v, %v; want %+v", got, err, fields)
	}
	// The sequence is reusable, and stops when the loop does.
	again, _ := collectFields(msg)
	if !reflect.DeepEqual(again, fields) {
		t.Fatalf("second range = %+v", again)
	}
	n := 0
	for range MessageFields(msg) {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("break after the first field: %d iterations", n)
	}

	// A group is skipped; the fields around it are yielded.
	group := protowire.AppendTag(nil, 9, protowire.StartGroupType)
	group = appendFields(group, fields[1:2])
	group = protowire.AppendTag(group, 9, protowire.EndGroupType)
	withGroup := appendFields(append(appendFields(nil, fields[:1]), group...), fields[2:3])
	got, err = collectFields(withGroup)
	if err != nil || !reflect.DeepEqual(got, []Field{fields[0], {Num: 9, Type: protowire.StartGroupType}, fields[2]}) {
		t.Fatalf("with a group: %+v, %v", got, err)
	}

	if fs, err := collectFields(nil); len(fs) != 0 || err != nil {
		t.Fatalf("empty message: %+v, %v", fs, err)
	}
}

func TestMessageFieldsMalformed(t *testing.T) {
	good := appendFields(nil, []Field{{Num: 1, Type: protowire.VarintType, Uint: 7}})
	for name, tail := range map[string][]byte{
		"field number 0":     {0x02, 0x00},
		"overlong tag":       {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"truncated bytes":    {0x12, 0x05, 'a'},
		"truncated varint":   {0x10, 0x80},
		"truncated fixed64":  {0x19, 1, 2, 3},
		"truncated fixed32":  {0x1d, 1},
		"unterminated group": {0x23, 0x08, 0x01},
		"stray end group":    {0x24},
		"reserved wire type": {0x0e},
	} {
		fs, err := collectFields(append(append([]byte(nil), good...), tail...))
		if err == nil {
			t.Errorf("%s: no error, fields %+v", name, fs)
			continue
		}
		if len(fs) != 1 || fs[0].Uint != 7 {
			t.Errorf("%s: fields before the error = %+v, want the good one", name, fs)
		}
	}
}

func TestMessageFieldsAllocs(t *testing.T) {
	msg := appendFields(nil, []Field{
		{Num: 1, Type: protowire.BytesType, Bytes: []byte("partial")},
		{Num: 2, Type: protowire.VarintType, Uint: 3},
	})
	var sum uint64
	if n := testing.AllocsPerRun(100, func() {
		for f, err := range MessageFields(msg) {
			if err != nil {
				return
			}
			sum += f.Uint + uint64(len(f.Bytes))
		}
	}); n != 0 {
		t.Errorf("ranging over MessageFields allocates %v times", n)
	}
}

// FuzzMessageFields: no input panics, and the fields of any message read
// without error encode to a message with the same fields.
func FuzzMessageFields(f *testing.F) {
	f.Add(appendFields(nil, []Field{{Num: 1, Type: protowire.BytesType, Bytes: []byte{0x08, 0x07}}, {Num: 2, Type: protowire.Fixed32Type, Uint: 9}}))
	f.Add([]byte{0x0b, 0x08, 0x01, 0x0c})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		fs, err := collectFields(in)
		if err != nil {
			return
		}
		var plain []Field
		for _, f := range fs {
			if f.Type != protowire.StartGroupType {
				plain = append(plain, f)
			}
		}
		back, err := collectFields(appendFields(nil, plain))
		if err != nil || len(back) != len(plain) {
			t.Fatalf("re-encoded fields read as %+v, %v; want %+v", back, err, plain)
		}
		for i := range back {
			if back[i].Num != plain[i].Num || back[i].Type != plain[i].Type || back[i].Uint != plain[i].Uint ||
				string(back[i].Bytes) != string(plain[i].Bytes) {
				t.Fatalf("field %d: %+v, want %+v", i, back[i], plain[i])
			}
		}
	})
}
