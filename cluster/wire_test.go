package cluster

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleHandoff() handoff {
	return handoff{
		traces: []byte{0x0a, 0x00},
		arrivals: []arrivalAge{
			{id: [16]byte{1}, firstAge: 12_000_000_000},
			{id: [16]byte{2}, firstAge: 3, rootAge: 2, hasRoot: true},
		},
		// Records are the engine's, opaque here (decision tests their
		// encoding): any bytes, even none, travel as they are.
		decisions: [][]byte{[]byte("record one"), {}, {0x0a, 0x10, 3}},
	}
}

func TestHandoffRoundTrip(t *testing.T) {
	in := sampleHandoff()
	var out handoff
	if err := out.decode(in.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestHandoffDecodeRejectsMalformed(t *testing.T) {
	h := sampleHandoff()
	good := h.appendTo(nil)
	for name, b := range map[string][]byte{
		"truncated":          good[:len(good)-3],
		"bad tag":            {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"traces as varint":   {0x08, 0x01},
		"short trace id":     {0x12, 0x04, 0x0a, 0x02, 0x01, 0x02},
		"arrival without id": {0x12, 0x02, 0x10, 0x05},
		"decision as varint": {0x18, 0x01},
		"negative age":       append([]byte{0x12, 0x1d, 0x0a, 0x10}, append(bytes.Repeat([]byte{1}, 16), 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)...),
	} {
		var h handoff
		if err := h.decode(b); err == nil {
			t.Errorf("%s: decoded without error: %+v", name, h)
		}
	}
}

func FuzzHandoffDecode(f *testing.F) {
	h := sampleHandoff()
	f.Add(h.appendTo(nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var h handoff
		if err := h.decode(b); err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes the same.
		var again handoff
		if err := again.decode(h.appendTo(nil)); err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if len(again.arrivals) != len(h.arrivals) || len(again.decisions) != len(h.decisions) || !bytes.Equal(again.traces, h.traces) {
			t.Fatalf("re-encoding changed the message")
		}
	})
}
